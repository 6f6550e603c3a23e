"""`tianxun detect BEFORE AFTER -o OUT` and `tianxun detector train`: the raster-pair detector."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import rasterio
import typer
from pyproj import Transformer
from rasterio.windows import Window
from shapely import transform as transform_coordinates
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from detection import train
from detection.errors import DetectionError, InvalidRasterError
from detection.io import (
    Raster,
    band_role_from_name,
    find_datasets,
    load_pair,
    read_raster,
    write_mask_png,
)
from detection.io.planar import StoredRaster
from detection.io.raster import DRIVER_BY_SUFFIX, ReadLimits
from detection.io.windowed import ValidWindows, WindowedRaster, open_raster
from detection.raster_pair import ChangeResult, detect_changes
from detection.rs_params import RasterDetectorParams

detector_app = typer.Typer(no_args_is_help=True, help="The remote-sensing change detector.")
MASK_SUFFIXES = (".tif", ".tiff", ".png")
MASK_STRIP_ROWS = 1024


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
    app.add_typer(detector_app, name="detector")


def read_date(
    path: Path, *, limits: ReadLimits | None = None
) -> Raster | StoredRaster | WindowedRaster:
    """One date: a raster file, or a folder with one single-band GeoTIFF per band (OSCD).

    A GeoTIFF is kept in its stored sample type (the detector converts window by window);
    one too large to read whole (over `limits`) is opened for windowed reading.
    """
    if not path.is_dir():
        return open_raster(path, limits=limits, planar=True)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in DRIVER_BY_SUFFIX)
    if not files:
        raise InvalidRasterError(f"{path} holds no raster files; put one GeoTIFF per band in it")
    rasters = [read_raster(p) for p in files]
    if len({r.shape for r in rasters}) > 1 or any(r.array.shape[2] != 1 for r in rasters):
        raise InvalidRasterError(
            f"the band files in {path} differ in size or are not single-band; "
            "put one band per file, all on one grid"
        )
    first = rasters[0]
    return Raster(
        array=np.concatenate([r.array for r in rasters], axis=2),
        nodata=np.logical_or.reduce([r.nodata for r in rasters]),
        transform=first.transform,
        crs=first.crs,
        band_roles=tuple(band_role_from_name(p.stem) for p in files),
        source_dtype=first.source_dtype,
    )


def _check_source_dtype(name: str, raster: Raster | StoredRaster | WindowedRaster) -> None:
    if raster.source_dtype in ("float64", "int32", "uint32", "int64", "complex64"):
        raise InvalidRasterError(
            f"{name} stores {raster.source_dtype} samples; the detector takes uint8, uint16, "
            "int16 or float32: convert it (e.g. gdal_translate -ot Float32 or -ot UInt16)"
        )


def cloud_free_mask(path: Path | None, like: Raster | StoredRaster) -> np.ndarray:
    if path is None:
        return ~like.nodata
    cloud = read_raster(path).array[:, :, 0]
    if cloud.shape != like.shape:
        raise InvalidRasterError(
            f"cloud mask {path.name} is {cloud.shape[0]}×{cloud.shape[1]} but its image is "
            f"{like.shape[0]}×{like.shape[1]}; the mask must share the image grid"
        )
    return ~like.nodata & (cloud == 0)


def _validity(
    cloud: Path | None, like: Raster | StoredRaster | WindowedRaster
) -> np.ndarray | ValidWindows | None:
    """The cloud-free mask, or None when every pixel has data and there is no cloud mask:
    the detector then reads no mask per window (same result, less memory and time)."""
    if isinstance(like, WindowedRaster):
        return _windowed_validity(cloud, like)
    if cloud is None and not like.nodata.any():
        return None
    return cloud_free_mask(cloud, like)


def _windowed_validity(cloud: Path | None, like: WindowedRaster) -> ValidWindows | None:
    if cloud is None:
        return None if like.nodata is None else ValidWindows(like, None)
    mask = open_raster(cloud, windowed=True)
    if mask.shape != like.shape or not isinstance(mask, WindowedRaster):
        raise InvalidRasterError(
            f"cloud mask {cloud.name} is {mask.shape[0]}×{mask.shape[1]} but its image is "
            f"{like.shape[0]}×{like.shape[1]}; the mask must be a GeoTIFF on the image grid"
        )
    return ValidWindows(like, mask.array)


def read_farmland(path: Path, crs: str | None) -> list[BaseGeometry]:
    """Farmland polygons from a GeoJSON file (RFC 7946 lon/lat), in the image CRS."""
    try:
        features = json.loads(path.read_text())["features"]
        geometries = [shape(feature["geometry"]) for feature in features]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DetectionError(
            f"{path} is not a GeoJSON FeatureCollection of polygons ({error}); "
            "export the farmland layer as GeoJSON"
        ) from error
    if crs is None:
        return geometries
    to_image = Transformer.from_crs("OGC:CRS84", crs, always_xy=True)
    return [transform_coordinates(g, to_image.transform, interleaved=False) for g in geometries]


def mask_and_objects_paths(out: Path, georeferenced: bool) -> tuple[Path, Path]:
    """Where the mask and the objects go: OUT.tif/.png (as given) and OUT.geojson."""
    if out.suffix.lower() in MASK_SUFFIXES:
        return out, out.with_suffix(".geojson")
    suffix = ".tif" if georeferenced else ".png"
    return out.with_name(out.name + suffix), out.with_name(out.name + ".geojson")


def _write_atomically(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(handle)
    try:
        write(temporary)
        # mkstemp makes the file private; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_mask_geotiff(
    path: Path,
    mask: np.ndarray,
    like: Raster | StoredRaster | WindowedRaster,
    *,
    threads: int = 1,
) -> None:
    """The change mask as a DEFLATE GeoTIFF on the before grid (255 = change), its blocks
    compressed on `threads` threads."""
    profile = {
        "driver": "GTiff",
        "width": mask.shape[1],
        "height": mask.shape[0],
        "count": 1,
        "dtype": "uint8",
        "crs": like.crs,
        "transform": like.transform,
        "compress": "deflate",
        "tiled": True,
        "nodata": None,
        "num_threads": threads,
    }

    def write(target: str) -> None:
        with rasterio.open(target, "w", **profile) as dst:
            # In strips, so a large mask is never copied whole.
            for top in range(0, mask.shape[0], MASK_STRIP_ROWS):
                strip = mask[top : top + MASK_STRIP_ROWS]
                window = Window(0, top, mask.shape[1], strip.shape[0])
                dst.write(strip.astype(np.uint8) * np.uint8(255), 1, window=window)

    _write_atomically(path, write)


def objects_geojson(result: ChangeResult, crs: str | None) -> dict[str, Any]:
    """Objects as an RFC 7946 FeatureCollection (lon/lat; pixel x/y without a CRS)."""
    to_lonlat = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True) if crs else None
    features = []
    for index, found in enumerate(result.objects):
        geometry = found.geometry
        if to_lonlat is not None:
            geometry = transform_coordinates(geometry, to_lonlat.transform, interleaved=False)
        properties = {
            "object_index": index,
            "change_type": found.change_type,
            "benign": found.benign,
            "confidence": round(found.confidence, 3),
            "area_m2": round(found.area_m2, 2),
            "area_mu": round(found.area_mu, 4),
            "pixels": found.pixels,
            "indices_before": dict(found.indices_before),
            "indices_after": dict(found.indices_after),
            "parcel_fraction": found.parcel_fraction,
        }
        features.append(
            {"type": "Feature", "geometry": mapping(geometry), "properties": properties}
        )
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if crs is None:
        collection["coordinates"] = "pixel (x = column, y = row) of the before image"
    return collection


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, which containers may narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def detect(
    before: Annotated[Path, typer.Argument(help="Before image: a raster file or a band folder.")],
    after: Annotated[Path, typer.Argument(help="After image, same place and bands.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output path of the mask.")],
    model: Annotated[
        Path | None, typer.Option(help="A model file from `tianxun detector train`.")
    ] = None,
    farmland: Annotated[
        Path | None, typer.Option(help="GeoJSON farmland polygons: change outside is dropped.")
    ] = None,
    before_cloud: Annotated[
        Path | None, typer.Option(help="Cloud/nodata mask of BEFORE (non-zero = cloud).")
    ] = None,
    after_cloud: Annotated[
        Path | None, typer.Option(help="Cloud/nodata mask of AFTER (non-zero = cloud).")
    ] = None,
    min_mapping_unit: Annotated[
        float, typer.Option(help="Smallest change reported, m².")
    ] = RasterDetectorParams.min_mapping_unit_m2,
    pixel_size: Annotated[
        float, typer.Option(help="Pixel size in metres of images without georeferencing.")
    ] = RasterDetectorParams.pixel_size_m,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Tiles processed at once (default: the CPUs this process has)."),
    ] = None,
) -> None:
    """Detect change from BEFORE to AFTER: writes the mask on the BEFORE grid and OUT.geojson."""
    try:
        summary = run_detect(
            before,
            after,
            out,
            model=model,
            farmland=farmland,
            before_cloud=before_cloud,
            after_cloud=after_cloud,
            params=RasterDetectorParams(
                min_mapping_unit_m2=min_mapping_unit, pixel_size_m=pixel_size
            ),
            threads=threads or usable_cpus(),
        )
    except (DetectionError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(json.dumps(summary))


def run_detect(
    before_path: Path,
    after_path: Path,
    out: Path,
    *,
    model: Path | None,
    farmland: Path | None,
    before_cloud: Path | None,
    after_cloud: Path | None,
    params: RasterDetectorParams,
    limits: ReadLimits | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Read, detect, write; returns a summary of what was written.

    `limits` bounds what is read whole; larger GeoTIFFs are read window by window. `threads`
    process tiles side by side and decode the blocks of files read whole (the result is the
    same).
    """
    with rasterio.Env(GDAL_NUM_THREADS=str(threads)):
        before = read_date(before_path, limits=limits)
        after = read_date(after_path, limits=limits)
    _check_source_dtype(str(before_path), before)
    _check_source_dtype(str(after_path), after)
    scorer = train.RasterChangeModel.from_bytes(model.read_bytes()) if model else None
    result = detect_changes(
        before.array,
        after.array,
        params=params,
        farmland=read_farmland(farmland, before.crs) if farmland else None,
        before_valid=_validity(before_cloud, before),
        after_valid=_validity(after_cloud, after),
        transform=before.transform,
        crs=before.crs,
        after_transform=after.transform,
        after_crs=after.crs,
        band_roles=before.band_roles,
        model=scorer,
        threads=threads,
    )
    mask_path, objects_path = mask_and_objects_paths(out, before.transform is not None)
    if mask_path.suffix.lower() == ".png":
        write_mask_png(mask_path, result.mask)
    else:
        write_mask_geotiff(mask_path, result.mask, before, threads=threads)
    collection = objects_geojson(result, before.crs)
    _write_atomically(objects_path, lambda target: Path(target).write_text(json.dumps(collection)))
    return {
        "mask": str(mask_path),
        "objects": str(objects_path),
        "changed_pixels": int(result.mask.sum()),
        "objects_found": len(result.objects),
        "suspected": sum(not o.benign for o in result.objects),
        "threshold": round(result.threshold, 3),
        "shift_px": result.shift_px,
    }


@detector_app.command("train")
def train_command(
    dataset_root: Annotated[Path, typer.Argument(help="Labelled pairs: A/ B/ label/ folders.")],
    out: Annotated[Path, typer.Option("--out", help="Model file to write.")],
    exclude: Annotated[
        list[str] | None, typer.Option(help="Pair or dataset names to leave out (repeatable).")
    ] = None,
    pixels_per_pair: Annotated[
        int, typer.Option(min=100, help="Labelled pixels drawn from each pair to train on.")
    ] = train.PIXELS_PER_PAIR,
) -> None:
    """Train the optional pixel classifier on labelled pairs and save it as a versioned file."""
    try:
        pairs = labelled_pairs(dataset_root, exclude=set(exclude or ()))
        fitted = train.fit_model(pairs, pixels_per_pair=pixels_per_pair)
    except DetectionError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    _write_atomically(out, lambda target: Path(target).write_bytes(fitted.to_bytes()))
    typer.echo(
        json.dumps(
            {
                "model": str(out),
                "format": train.MODEL_FORMAT,
                "trained_on": list(fitted.trained_on),
                "threshold": fitted.strong,
            }
        )
    )


def labelled_pairs(root: Path, *, exclude: set[str]) -> Iterator[tuple[str, train.TrainingPair]]:
    """Labelled pairs under `root`, read one at a time, minus excluded pairs or datasets."""
    for dataset in find_datasets(root):
        if dataset.name in exclude:
            continue
        for files in dataset.pairs:
            if files.name in exclude or f"{dataset.name}/{files.name}" in exclude:
                continue
            pair = load_pair(files)
            yield (
                f"{dataset.name}/{pair.name}",
                train.TrainingPair(
                    before=pair.before,
                    after=pair.after,
                    valid=pair.valid,
                    change=pair.change,
                    labelled=pair.labelled,
                    band_roles=pair.band_roles,
                ),
            )
