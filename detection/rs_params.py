"""Parameters of the remote-sensing change detector, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass

#: Square metres in one mu (亩), the unit field chiefs and statistics use.
M2_PER_MU = 2000.0 / 3.0


@dataclass(frozen=True)
class RasterDetectorParams:
    """Everything the raster-pair detector can be tuned by.

    Attributes
    ----------
    min_mapping_unit_m2 : float
        Smallest change object reported, in square metres (default 50).
    pixel_size_m : float
        Ground size of one pixel in metres, used only when the image has no georeferencing.
    max_shift_px : float
        Largest residual misregistration corrected, in pixels; a larger estimate is distrusted.
    min_shift_px : float
        Estimated shifts below this, in pixels, are left uncorrected (resampling blurs).
    invariant_probability : float
        IR-MAD no-change probability above which a pixel is pseudo-invariant (fraction).
    irmad_iterations : int
        Reweighting rounds of IR-MAD.
    sample_pixels : int
        Pixels drawn on a fixed regular lattice for global statistics (normalisation,
        thresholds); the lattice does not depend on tiling, so neither do the results.
    noise_floor_fraction : float
        Lower bound of each band's noise scale, as a fraction of that band's robust spread
        (inter-percentile 2–98 range): keeps quantisation noise from being called change.
    scales_px : tuple of float
        Gaussian smoothing sigmas in pixels; change evidence is combined over these scales.
    texture_weight : float
        Weight of the change of local edge strength in the score (fraction of the spectral term).
    threshold_method : str
        "otsu": Otsu's threshold on the score sample (never below the floor); "noise": the
        floor raised by the sample's robust spread (median + `noise_sigmas` × MAD), which
        does not rise when much of the scene is (benign) change.
    noise_sigmas : float
        Robust standard deviations above the median score for the "noise" method.
    threshold_floor : float
        Minimum decision threshold on the score, in noise units: nothing below it is change,
        whatever the adaptive threshold says.
    hysteresis_low_fraction : float
        Weak-change threshold as a fraction of the strong threshold.
    hysteresis_reach_px : int
        How far (in pixels, through weak pixels) strong change may grow.
    opening_radius_px : int
        Radius of the morphological opening that removes speckle, in pixels.
    closing_radius_px : int
        Radius of the morphological closing that fills pinholes, in pixels.
    tile_px : int
        Edge of the square tiles processed at a time, in pixels (bounds memory).
    ndvi_drop : float
        NDVI decrease that counts as loss of vegetation (index units).
    water_ndwi : float
        NDWI above which a pixel is open water (index units).
    parcel_fraction_farming : float
        When farmland parcels are given: change covering at least this fraction of its
        parcel is farm work (farming acts on whole parcels; violations on part of one).
    standout_sigmas : float
        When farmland parcels are given: a pixel whose smoothed log ratio after/before
        differs from its parcel's median by this many robust deviations (pooled over all
        parcels) stands out from the parcel, i.e. is a suspected violation.
    standout_min_log_ratio : float
        Smallest difference from the parcel median (natural-log ratio, RMS over bands) that
        can stand out, whatever the noise (0.2 is about 22 % relative change).
    invalid_buffer_m : float
        Pixels within this distance (metres) of nodata or cloud are not compared either:
        cloud masks miss the thin, bright fringe of a cloud and the soft edge of its shadow.
    """

    min_mapping_unit_m2: float = 50.0
    pixel_size_m: float = 1.0
    max_shift_px: float = 3.0
    min_shift_px: float = 0.3
    invariant_probability: float = 0.9
    irmad_iterations: int = 8
    sample_pixels: int = 65_536
    noise_floor_fraction: float = 0.03
    scales_px: tuple[float, ...] = (1.0, 2.0, 4.0)
    texture_weight: float = 0.5
    threshold_method: str = "otsu"
    noise_sigmas: float = 6.0
    threshold_floor: float = 1.0
    hysteresis_low_fraction: float = 0.6
    hysteresis_reach_px: int = 8
    opening_radius_px: int = 1
    closing_radius_px: int = 1
    tile_px: int = 1024
    ndvi_drop: float = 0.2
    water_ndwi: float = 0.1
    parcel_fraction_farming: float = 0.3
    standout_sigmas: float = 6.0
    standout_min_log_ratio: float = 0.2
    invalid_buffer_m: float = 15.0

    def __post_init__(self) -> None:
        if self.min_mapping_unit_m2 < 0 or self.pixel_size_m <= 0:
            raise ValueError(
                "min_mapping_unit_m2 must be >= 0 and pixel_size_m > 0 "
                f"(got {self.min_mapping_unit_m2}, {self.pixel_size_m})"
            )
        if not self.scales_px or min(self.scales_px) <= 0:
            raise ValueError(f"scales_px needs positive sigmas, got {self.scales_px}")
        if self.threshold_method not in ("otsu", "noise"):
            raise ValueError(
                f"threshold_method must be 'otsu' or 'noise', got {self.threshold_method!r}"
            )
        if self.standout_sigmas <= 0 or self.standout_min_log_ratio < 0:
            raise ValueError(
                "standout_sigmas must be > 0 and standout_min_log_ratio >= 0 "
                f"(got {self.standout_sigmas}, {self.standout_min_log_ratio})"
            )
        if self.invalid_buffer_m < 0:
            raise ValueError(f"invalid_buffer_m must be >= 0, got {self.invalid_buffer_m}")
        if self.tile_px < 64:
            raise ValueError(f"tile_px must be at least 64 pixels, got {self.tile_px}")
