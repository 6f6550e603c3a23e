"""Crop seasons: the surface state of every parcel on every epoch date, and its reflectance."""

from __future__ import annotations

from datetime import date, timedelta
from enum import IntEnum

import numpy as np

from simulator.landscape import Parcel


class SurfaceState(IntEnum):
    flooded = 0
    paddy_young = 1
    green_crop = 2
    mature_rice = 3
    stubble = 4
    ploughed = 5
    bare_soil = 6
    seedling = 7
    leafy_green = 8
    brassica = 9
    tea = 10
    tea_flush = 11
    orchard_leaf = 12
    orchard_bare = 13
    grass_green = 14
    grass_dry = 15
    film = 16
    film_off = 17
    graded = 18
    rapeseed_flower = 19


# Surface reflectance (blue, green, red, NIR), fraction; typical of Sentinel-2/GF-2 spectra.
SPECTRA = np.array(
    [
        [0.070, 0.080, 0.060, 0.050],
        [0.055, 0.080, 0.062, 0.170],
        [0.035, 0.075, 0.045, 0.420],
        [0.060, 0.100, 0.125, 0.300],
        [0.080, 0.100, 0.130, 0.220],
        [0.060, 0.075, 0.095, 0.140],
        [0.100, 0.130, 0.170, 0.230],
        [0.070, 0.100, 0.110, 0.240],
        [0.040, 0.090, 0.050, 0.380],
        [0.060, 0.100, 0.075, 0.330],
        [0.030, 0.060, 0.040, 0.300],
        [0.040, 0.090, 0.050, 0.360],
        [0.035, 0.065, 0.040, 0.360],
        [0.070, 0.090, 0.100, 0.200],
        [0.040, 0.080, 0.060, 0.300],
        [0.080, 0.100, 0.120, 0.210],
        [0.280, 0.300, 0.310, 0.350],
        [0.090, 0.110, 0.140, 0.200],
        [0.120, 0.140, 0.180, 0.210],
        [0.050, 0.120, 0.130, 0.350],
    ],
    dtype=np.float32,
)
# How strongly the crop's row/bed/tunnel pattern shows in each state (fraction of brightness).
_ROWS = {"paddy_young": 0.25, "ploughed": 0.18, "seedling": 0.30, "leafy_green": 0.15}
_ROWS |= {"brassica": 0.15, "tea": 0.35, "tea_flush": 0.30, "orchard_leaf": 0.45}
_ROWS |= {"orchard_bare": 0.20, "film": 0.30, "film_off": 0.25, "stubble": 0.10}
ROW_CONTRAST = np.array([_ROWS.get(s.name, 0.05) for s in SurfaceState], dtype=np.float32)
ROW_CONTRAST[SurfaceState.flooded] = 0.0

# Benign change named by the state a parcel moves into (the previous state matters for harvest).
_HARVESTED_FROM = {SurfaceState.mature_rice, SurfaceState.green_crop, SurfaceState.leafy_green}
_HARVESTED_FROM |= {SurfaceState.brassica}


def epoch_dates(year: int, count: int, years: int = 1) -> list[date]:
    """`count` dates spread evenly over `years` calendar years from `year`, the first in
    mid-January."""
    step = 365.0 * years / count
    start = date(year, 1, 15)
    return [start + timedelta(days=round(i * step)) for i in range(count)]


def _paddy(doy: float, winter_crop: bool) -> SurfaceState:
    if doy < 75:
        return SurfaceState.grass_green if winter_crop else SurfaceState.stubble
    if doy < 110:
        return SurfaceState.rapeseed_flower if winter_crop else SurfaceState.stubble
    stages = [
        (140, SurfaceState.bare_soil if not winter_crop else SurfaceState.stubble),
        (155, SurfaceState.ploughed),
        (172, SurfaceState.flooded),
        (195, SurfaceState.paddy_young),
        (258, SurfaceState.green_crop),
        (300, SurfaceState.mature_rice),
    ]
    for end, state in stages:
        if doy < end:
            return state
    return SurfaceState.stubble


def _vegetable(doy: float, cycle_days: float, variety: int) -> tuple[SurfaceState, int]:
    cycle, day = divmod(doy, cycle_days)
    grown = SurfaceState.leafy_green if (variety + int(cycle)) % 2 == 0 else SurfaceState.brassica
    stages = [(0.1, SurfaceState.ploughed), (0.35, SurfaceState.seedling), (0.88, grown)]
    for end, state in stages:
        if day < end * cycle_days:
            return state, int(cycle)
    return SurfaceState.bare_soil, int(cycle)


def parcel_states(
    parcels: tuple[Parcel, ...], dates: list[date], rng: np.random.Generator
) -> np.ndarray:
    """Surface state of every parcel on every date.

    Returns
    -------
    ndarray of shape (n_parcels, n_epochs), int16 of `SurfaceState` values
    """
    states = np.zeros((len(parcels), len(dates)), dtype=np.int16)
    for i, parcel in enumerate(parcels):
        winter_crop = rng.random() < 0.3
        cycle_days, variety = rng.uniform(60, 95), int(rng.integers(0, 2))
        veg_phase = rng.uniform(0, 365)
        film_off_start = rng.uniform(60, 330) if rng.random() < 0.4 else None
        for j, day in enumerate(dates):
            doy = day.timetuple().tm_yday + parcel.phase_days
            # Vegetable cycles run on through the new year; seasonal crops restart with it.
            run_days = doy + 365 * (day.year - dates[0].year)
            states[i, j] = _state_of(
                parcel.crop,
                doy,
                run_days,
                winter_crop,
                cycle_days,
                variety,
                veg_phase,
                film_off_start,
            )
    return states


def _state_of(
    crop: str,
    doy: float,
    run_days: float,
    winter_crop: bool,
    cycle_days: float,
    variety: int,
    veg_phase: float,
    film_off_start: float | None,
) -> SurfaceState:
    if crop == "paddy":
        return _paddy(doy % 366, winter_crop)
    if crop == "vegetable":
        return _vegetable(run_days + veg_phase, cycle_days, variety)[0]
    if crop == "tea":
        return SurfaceState.tea_flush if 85 <= doy < 130 else SurfaceState.tea
    if crop == "orchard":
        return SurfaceState.orchard_leaf if 95 <= doy < 320 else SurfaceState.orchard_bare
    if crop == "fallow":
        return SurfaceState.grass_green if 100 <= doy < 290 else SurfaceState.grass_dry
    if film_off_start is not None and film_off_start <= doy < film_off_start + 35:
        return SurfaceState.film_off
    return SurfaceState.film


def benign_change_type(before: int, after: int) -> str | None:
    """The farming activity that explains a parcel moving from `before` to `after`, if any."""
    b, a = SurfaceState(before), SurfaceState(after)
    if a == b:
        return None
    if a == SurfaceState.graded:
        return "land_consolidation"
    if a == SurfaceState.flooded:
        return "paddy_flooding"
    if a == SurfaceState.ploughed:
        return "ploughing"
    if SurfaceState.film_off in (a, b) and SurfaceState.film in (a, b):
        return "greenhouse_recovering"
    if {a, b} == {SurfaceState.leafy_green, SurfaceState.brassica}:
        return "crop_rotation"
    if b in (SurfaceState.leafy_green, SurfaceState.brassica) and a == SurfaceState.seedling:
        return "crop_rotation"  # harvested and the next crop sown between two passes
    if b in _HARVESTED_FROM and a in (SurfaceState.stubble, SurfaceState.bare_soil):
        return "harvest"
    return None
