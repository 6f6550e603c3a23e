"""Raster and dataset file I/O of `detection/`: everything else in it takes arrays.

`raster`: hardened reading of GeoTIFF/COG, PNG, JPEG, BMP and ENVI into a `Raster`, mask writing.
`bands`: band roles (blue, nir, ...) from descriptions, names and wavelengths.
`datasets`: labelled change-detection pairs in the A/ B/ label/ layout.
`snapshot`: hardened decoding of camera snapshot JPEGs, at reduced resolution.
"""

from detection.io.bands import band_role_from_name, band_role_from_wavelength
from detection.io.datasets import (
    DatasetFiles,
    LabelEncoding,
    LabelledPair,
    PairFiles,
    find_datasets,
    load_pair,
    read_prediction,
)
from detection.io.raster import (
    Raster,
    ReadLimits,
    read_raster,
    reproject_onto,
    write_mask_png,
)

__all__ = [
    "DatasetFiles",
    "LabelEncoding",
    "LabelledPair",
    "PairFiles",
    "Raster",
    "ReadLimits",
    "band_role_from_name",
    "band_role_from_wavelength",
    "find_datasets",
    "load_pair",
    "read_prediction",
    "read_raster",
    "reproject_onto",
    "write_mask_png",
]
