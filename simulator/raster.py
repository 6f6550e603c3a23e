"""Remote-sensing tiles: the surface seen through sun, haze, clouds, noise and misregistration."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from simulator.noise import rng_for, smooth_field, subpixel_shift
from simulator.surface import render_surface, truth_mask
from simulator.world import World

# Additive path radiance of a thick haze, reflectance units (blue scatters most).
_PATH_RADIANCE = np.array([0.070, 0.050, 0.032, 0.015], dtype=np.float32)[:, None, None]
_COARSE = 4  # sun, haze and clouds are smooth: simulate them at a quarter of the resolution
_CLOUD_REFL = np.array([0.46, 0.47, 0.48, 0.52], dtype=np.float32)
NODATA = 0
CLOUD_NODATA = 255


@dataclass(frozen=True)
class Acquisition:
    """Conditions of one satellite pass."""

    sun_elevation_deg: float
    sun_azimuth_deg: float
    gain: float  # illumination relative to a high summer sun
    haze: float  # 0 clear .. 1 thick
    cloud_fraction: float
    cloud_height_m: float
    shift_px: tuple[float, float]  # (rows, cols) misregistration against the nominal grid
    swath_edge: bool  # the scene edge crosses this tile: a corner is nodata


@dataclass(frozen=True, eq=False)
class TileRender:
    """One epoch's tile on the world grid.

    Attributes
    ----------
    data : ndarray of shape (4, rows, cols), uint16
        Blue, green, red, NIR reflectance × 10000; 0 = nodata.
    cloud : ndarray of shape (rows, cols), uint8
        1 = cloud or cloud shadow, 0 = clear, 255 = nodata.
    truth : ndarray of shape (rows, cols), uint8
        Violations present: 1 = violation, 2 = look-alike inside approved land (legal).
    """

    epoch: int
    data: np.ndarray
    cloud: np.ndarray
    truth: np.ndarray
    acquisition: Acquisition


def acquisition(world: World, epoch: int) -> Acquisition:
    """Draw the pass conditions of `epoch` (a mid-morning sun-synchronous overpass)."""
    rng = rng_for(world.params.seed, "acquisition", epoch)
    doy = world.dates[epoch].timetuple().tm_yday
    declination = 23.44 * math.sin(2 * math.pi * (doy - 81) / 365)
    noon = 90 - world.params.center_lat + declination
    elevation = noon - 12.0  # about 10:30 local time
    cloudy = rng.random() < 0.7
    return Acquisition(
        sun_elevation_deg=elevation,
        sun_azimuth_deg=140.0 + rng.uniform(-5, 5),
        gain=math.sin(math.radians(elevation))
        / math.sin(math.radians(72))
        * rng.uniform(0.95, 1.05),
        haze=float(rng.beta(1.5, 4.0)),
        cloud_fraction=float(rng.uniform(0.02, world.params.max_cloud_fraction)) if cloudy else 0.0,
        cloud_height_m=float(rng.uniform(400, 900)),
        shift_px=(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.6, 0.6))),
        swath_edge=rng.random() < 0.2,
    )


def _coarse_shape(world: World) -> tuple[int, int]:
    return (
        math.ceil(world.grid.height / _COARSE),
        math.ceil(world.grid.width / _COARSE),
    )


def _clouds(world: World, epoch: int, acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """Cloud opacity and cloud-shadow strength on the coarse grid, each 0..1."""
    small = _coarse_shape(world)
    if acq.cloud_fraction <= 0:
        zeros = np.zeros(small, np.float32)
        return zeros, zeros
    rng = rng_for(world.params.seed, "clouds", epoch)
    ps = world.grid.pixel_size_m * _COARSE
    reach = acq.cloud_height_m / math.tan(math.radians(acq.sun_elevation_deg))
    az = math.radians(acq.sun_azimuth_deg)
    # Shadows fall away from the sun: north-west of the cloud under a south-eastern sun.
    d_col, d_row = -math.sin(az) * reach / ps, math.cos(az) * reach / ps
    pad_r, pad_c = int(abs(d_row)) + 2, int(abs(d_col)) + 2
    padded = (small[0] + 2 * pad_r, small[1] + 2 * pad_c)
    field = smooth_field(rng, padded, scale_px=400 / ps, octaves=4)
    threshold = float(np.quantile(field, 1 - acq.cloud_fraction))
    opacity = np.clip((field - threshold) / 0.5, 0, 1) ** 0.7
    here = opacity[pad_r : pad_r + small[0], pad_c : pad_c + small[1]]
    r0, c0 = pad_r - round(d_row), pad_c - round(d_col)
    return here, opacity[r0 : r0 + small[0], c0 : c0 + small[1]]


def _upsample(world: World, coarse: np.ndarray) -> np.ndarray:
    size = (world.grid.width, world.grid.height)
    image = Image.fromarray(np.ascontiguousarray(coarse, dtype=np.float32))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR))


@functools.lru_cache(maxsize=2)
def _noise_bank(world: World) -> np.ndarray:
    """Unit Gaussian noise, drawn once per world; each band of each epoch reads a random window."""
    rng = rng_for(world.params.seed, "noise-bank")
    return rng.standard_normal((world.grid.height + 64, world.grid.width + 64), dtype=np.float32)


def _swath_nodata(world: World, epoch: int) -> np.ndarray:
    rng = rng_for(world.params.seed, "swath", epoch)
    rows, cols = world.grid.height, world.grid.width
    r, c = np.ogrid[:rows, :cols]
    corner = rng.uniform(0.15, 0.35) * (rows + cols)
    return (r + c) < corner if rng.random() < 0.5 else (rows - r + c) < corner


def render_tile(world: World, epoch: int, surface: np.ndarray | None = None) -> TileRender:
    """Render the remote-sensing tile of `epoch`.

    Parameters
    ----------
    world : World
    epoch : int
        Index into `world.dates`.
    surface : ndarray of shape (4, rows, cols), optional
        Surface reflectance from `render_surface`, when already computed.

    Notes
    -----
    Sun, haze, clouds and shadows vary smoothly, so they are combined on a coarse grid into one
    multiplicative and two additive fields (toa = surface × gain + path × haze + cloud × opacity)
    and upsampled once; this keeps a 4 Mpx tile well under a second.
    """
    acq = acquisition(world, epoch)
    surface = render_surface(world, epoch) if surface is None else surface
    rng = rng_for(world.params.seed, "sensor", epoch)
    small = _coarse_shape(world)
    haze = acq.haze * (1 + 0.35 * smooth_field(rng, small, scale_px=300 / _COARSE, octaves=2))
    cloud, shadow = _clouds(world, epoch, acq)
    clear = (1 - cloud) * (1 - 0.6 * shadow)
    gain = _upsample(world, acq.gain * (1 - 0.3 * haze) * clear * 10000)
    path = _upsample(world, haze * (1 - cloud) * 10000)
    cover = _upsample(world, cloud * (0.9 + 0.1 * haze) * 10000)
    bank = _noise_bank(world)
    rows, cols = surface.shape[1:]
    toa = np.empty_like(surface)
    for band in range(4):
        out = toa[band]
        np.multiply(surface[band], gain, out=out)
        out += _PATH_RADIANCE[band, 0, 0] * path
        out += _CLOUD_REFL[band] * cover
        r0, c0 = rng.integers(0, 64, size=2)
        out += bank[r0 : r0 + rows, c0 : c0 + cols] * (20 + 0.01 * out)
    toa = subpixel_shift(toa, d_row=acq.shift_px[0], d_col=acq.shift_px[1])
    np.clip(toa, 1, 10000, out=toa)
    toa += 0.5
    data = toa.astype(np.uint16)
    cloud_mask = (_upsample(world, np.maximum(cloud, shadow)) > 0.15).astype(np.uint8)
    if acq.swath_edge:
        outside = _swath_nodata(world, epoch)
        data[:, outside] = NODATA
        cloud_mask[outside] = CLOUD_NODATA
    return TileRender(epoch, data, cloud_mask, truth_mask(world, epoch), acq)
