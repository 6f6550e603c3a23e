"""Labelled change-detection pairs on disk: the A/ B/ label/ layout, found and loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from rasterio.transform import Affine

from detection.errors import DetectionError, InvalidRasterError
from detection.io.bands import band_role_from_name
from detection.io.raster import (
    DRIVER_BY_SUFFIX,
    Raster,
    ReadLimits,
    read_raster,
    reproject_onto,
)

BEFORE, AFTER, LABEL, LABEL_UNCHANGED = "A", "B", "label", "label_unchanged"
PREDICTION_SUFFIXES = (".tif", ".png")
#: OSCD's change-map file inside a per-pair label folder.
OSCD_CHANGE_MAP = "cm.tif"


class LabelEncoding(StrEnum):
    """How a label file marks change.

    BINARY: 0/255 masks, change where > 127 (0/1 masks: change where 1).
    OSCD: 1 = no change, 2 = change, anything else unlabelled.
    """

    BINARY = "binary"
    OSCD = "oscd"


@dataclass(frozen=True)
class PairFiles:
    """The files of one labelled pair; `before`/`after` hold one file, or one per band."""

    dataset: str
    name: str
    before: tuple[Path, ...]
    after: tuple[Path, ...]
    label: Path
    label_unchanged: Path | None
    label_encoding: LabelEncoding


@dataclass(frozen=True)
class DatasetFiles:
    """A dataset folder and its pairs, sorted by name."""

    name: str
    root: Path
    pairs: tuple[PairFiles, ...]


@dataclass(frozen=True, eq=False)
class LabelledPair:
    """Two dates on one pixel grid with their reference change mask.

    Attributes
    ----------
    before, after : ndarray of shape (rows, cols, bands), float32
        Stored sample values (DN or reflectance as in the files).
    valid : ndarray of shape (rows, cols), bool
        True where both dates have data.
    change : ndarray of shape (rows, cols), bool
        Reference change.
    labelled : ndarray of shape (rows, cols), bool
        Pixels with a reference label (change or no change); score only these.
    """

    dataset: str
    name: str
    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    change: np.ndarray
    labelled: np.ndarray
    transform: Affine | None
    crs: str | None
    band_roles: tuple[str | None, ...]


def _is_raster_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in DRIVER_BY_SUFFIX


def _is_dataset(folder: Path) -> bool:
    return all((folder / part).is_dir() for part in (BEFORE, AFTER, LABEL))


def _single_raster(folder: Path, stem: str) -> Path | None:
    matches = sorted(p for p in folder.iterdir() if p.stem == stem and _is_raster_file(p))
    return matches[0] if matches else None


def _band_files(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir() if _is_raster_file(p)))


def _pair_label(label_root: Path, name: str) -> tuple[Path | None, LabelEncoding]:
    folder = label_root / name
    if folder.is_dir():
        if (folder / OSCD_CHANGE_MAP).is_file():
            return folder / OSCD_CHANGE_MAP, LabelEncoding.OSCD
        files = _band_files(folder)
        return (files[0] if len(files) == 1 else None), LabelEncoding.BINARY
    return _single_raster(label_root, name), LabelEncoding.BINARY


def _pair_files(root: Path, entry: Path, problems: list[str]) -> PairFiles | None:
    per_band = entry.is_dir()
    name = entry.name if per_band else entry.stem
    if per_band:
        before = _band_files(entry)
        after_folder = root / AFTER / name
        after = tuple(after_folder / p.name for p in before)
    else:
        before = (entry,)
        after = (root / AFTER / entry.name,)
    missing = [str(p.relative_to(root)) for p in after if not p.is_file()]
    label, encoding = _pair_label(root / LABEL, name)
    if label is None:
        missing.append(f"{LABEL}/{name}.<png|tif|bmp|...>")
    unchanged = None
    if (root / LABEL_UNCHANGED).is_dir():
        unchanged = _single_raster(root / LABEL_UNCHANGED, name)
        if unchanged is None:
            missing.append(f"{LABEL_UNCHANGED}/{name}.<png|tif|bmp|...>")
    if not before:
        missing.append(f"{BEFORE}/{name}/<band>.tif")
    if missing:
        problems.append(f"pair {name!r} lacks {', '.join(missing)}")
        return None
    assert label is not None
    return PairFiles(root.name, name, before, after, label, unchanged, encoding)


def _dataset_files(root: Path) -> DatasetFiles:
    problems: list[str] = []
    entries = sorted(p for p in (root / BEFORE).iterdir() if p.is_dir() or _is_raster_file(p))
    pairs = [pair for entry in entries if (pair := _pair_files(root, entry, problems))]
    if problems:
        raise DetectionError(
            f"dataset {root.name!r} at {root} is incomplete: {'; '.join(problems)}. "
            "Every A/ entry needs the same name in B/ and label/."
        )
    if not pairs:
        raise DetectionError(f"dataset {root.name!r} at {root} has no pairs in {BEFORE}/")
    return DatasetFiles(root.name, root, tuple(pairs))


def find_datasets(root: str | os.PathLike[str]) -> tuple[DatasetFiles, ...]:
    """The datasets at `root`: `root` itself if it holds A/ B/ label/, else its sub-folders that do.

    Raises
    ------
    DetectionError
        No dataset found, or a dataset whose A/ entries lack their B/ or label/ counterpart.
    """
    root = Path(root)
    if not root.is_dir():
        raise DetectionError(f"{root} is not a folder; pass a dataset folder or a folder of them")
    if _is_dataset(root):
        return (_dataset_files(root),)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _is_dataset(p))
    if not folders:
        raise DetectionError(
            f"no dataset under {root}: expected A/, B/ and label/ folders in it or in its "
            "sub-folders"
        )
    return tuple(_dataset_files(folder) for folder in folders)


def _read_date(files: tuple[Path, ...], limits: ReadLimits) -> Raster:
    rasters = [read_raster(p, limits=limits) for p in files]
    if len(rasters) == 1:
        raster = rasters[0]
    else:
        shapes = {r.shape for r in rasters}
        if len(shapes) > 1 or any(r.array.shape[2] != 1 for r in rasters):
            raise InvalidRasterError(
                f"band files in {files[0].parent} differ in shape {sorted(shapes)} or are not "
                "single-band; put one band per file on one grid"
            )
        raster = Raster(
            array=np.concatenate([r.array for r in rasters], axis=2),
            nodata=np.logical_or.reduce([r.nodata for r in rasters]),
            transform=rasters[0].transform,
            crs=rasters[0].crs,
            band_roles=tuple(
                band_role_from_name(p.stem) or r.band_roles[0]
                for p, r in zip(files, rasters, strict=True)
            ),
            source_dtype=rasters[0].source_dtype,
        )
    return _without_alpha(raster)


def _without_alpha(raster: Raster) -> Raster:
    if "alpha" not in raster.band_roles:
        return raster
    keep = [i for i, role in enumerate(raster.band_roles) if role != "alpha"]
    alpha = raster.array[:, :, raster.band_roles.index("alpha")]
    return Raster(
        array=np.ascontiguousarray(raster.array[:, :, keep]),
        nodata=raster.nodata | (alpha == 0),
        transform=raster.transform,
        crs=raster.crs,
        band_roles=tuple(raster.band_roles[i] for i in keep),
        source_dtype=raster.source_dtype,
    )


def _binary(values: np.ndarray) -> np.ndarray:
    # 0/1 masks would all read as "no change" under > 127.
    return values == 1 if values.max(initial=0) <= 1 else values > 127


def _read_label(
    pair: PairFiles, shape: tuple[int, int], limits: ReadLimits
) -> tuple[np.ndarray, np.ndarray]:
    """(change, labelled) masks of shape (rows, cols) in the pair's encoding."""
    values = read_raster(pair.label, limits=limits).array[:, :, 0]
    if values.shape != shape:
        raise InvalidRasterError(
            f"{pair.label} is {values.shape[0]}×{values.shape[1]} but the image of pair "
            f"{pair.name!r} is {shape[0]}×{shape[1]}; labels must share the image grid"
        )
    if pair.label_encoding is LabelEncoding.OSCD:
        return values == 2, (values == 1) | (values == 2)
    change = _binary(values)
    if pair.label_unchanged is None:
        return change, np.ones(shape, dtype=bool)
    unchanged = _binary(read_raster(pair.label_unchanged, limits=limits).array[:, :, 0])
    if unchanged.shape != shape:
        raise InvalidRasterError(
            f"{pair.label_unchanged} does not share the {shape[0]}×{shape[1]} image grid"
        )
    return change, change | unchanged


def load_pair(pair: PairFiles, *, limits: ReadLimits | None = None) -> LabelledPair:
    """Read both dates and the label of `pair` onto the grid of its before image.

    An after image on a different grid is resampled onto the before grid when both are
    georeferenced (OSCD's slightly smaller B images); otherwise the pair is refused.
    """
    limits = limits or ReadLimits()
    before = _read_date(pair.before, limits)
    after = _read_date(pair.after, limits)
    if after.shape != before.shape:
        after = reproject_onto(after, before)
    if after.array.shape[2] != before.array.shape[2]:
        raise InvalidRasterError(
            f"pair {pair.name!r}: before has {before.array.shape[2]} bands, after has "
            f"{after.array.shape[2]}; both dates need the same bands"
        )
    change, labelled = _read_label(pair, before.shape, limits)
    return LabelledPair(
        dataset=pair.dataset,
        name=pair.name,
        before=before.array,
        after=after.array,
        valid=~(before.nodata | after.nodata),
        change=change,
        labelled=labelled,
        transform=before.transform,
        crs=before.crs,
        band_roles=before.band_roles,
    )


def read_prediction(
    directory: str | os.PathLike[str],
    pair: PairFiles,
    *,
    shape: tuple[int, int],
    limits: ReadLimits | None = None,
) -> np.ndarray:
    """A predicted change mask `directory/<dataset>/<pair>.tif` or `.png`; non-zero = change.

    Returns
    -------
    ndarray of shape (rows, cols), bool
    """
    folder = Path(directory) / pair.dataset
    candidates = [folder / f"{pair.name}{suffix}" for suffix in PREDICTION_SUFFIXES]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise DetectionError(
            f"no prediction for pair {pair.name!r}: expected "
            f"{' or '.join(str(p) for p in candidates)}"
        )
    raster = read_raster(found, limits=limits)
    if raster.shape != shape:
        raise InvalidRasterError(
            f"{found} is {raster.shape[0]}×{raster.shape[1]} but pair {pair.name!r} is "
            f"{shape[0]}×{shape[1]}; predict on the before image's grid"
        )
    mask: np.ndarray = raster.array[:, :, 0] != 0
    return mask
