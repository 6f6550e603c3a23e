"""Band roles ("blue", "nir", ...) from what files say about their bands."""

from __future__ import annotations

import re

BAND_ROLES = ("coastal", "blue", "green", "red", "rededge", "nir", "swir1", "swir2", "alpha")

_ROLE_ALIASES: dict[str, str] = {
    **{role: role for role in BAND_ROLES},
    "red_edge": "rededge",
    "near_infrared": "nir",
    "near-infrared": "nir",
    "swir_1": "swir1",
    "swir_2": "swir2",
    # Sentinel-2 band names, as in OSCD's per-band files.
    "b01": "coastal",
    "b02": "blue",
    "b03": "green",
    "b04": "red",
    "b05": "rededge",
    "b06": "rededge",
    "b07": "rededge",
    "b08": "nir",
    "b8a": "nir",
    "b11": "swir1",
    "b12": "swir2",
}

# Band centre wavelengths in micrometres (Landsat TM/ETM+ and Sentinel-2 ranges).
_ROLE_BY_WAVELENGTH_UM = (
    (0.40, 0.45, "coastal"),
    (0.45, 0.52, "blue"),
    (0.52, 0.61, "green"),
    (0.61, 0.69, "red"),
    (0.69, 0.76, "rededge"),
    (0.76, 0.96, "nir"),
    (1.50, 1.80, "swir1"),
    (2.00, 2.40, "swir2"),
)


def band_role_from_name(name: str | None) -> str | None:
    """The role ("blue", "nir", ...) a band description or file stem names, else None.

    Recognises plain role names, Sentinel-2 band names ("B02") and ENVI descriptions
    that end in a wavelength such as "(0.482500 Micrometers)".
    """
    if not name:
        return None
    key = name.strip().lower()
    if key in _ROLE_ALIASES:
        return _ROLE_ALIASES[key]
    wavelength = re.search(r"\(([0-9.]+)\s*micrometers\)", key)
    if wavelength:
        return band_role_from_wavelength(float(wavelength.group(1)))
    return None


def band_role_from_wavelength(micrometres: float) -> str | None:
    """The role of a band centred at `micrometres`, or None outside the known windows."""
    for low, high, role in _ROLE_BY_WAVELENGTH_UM:
        if low <= micrometres < high:
            return role
    return None
