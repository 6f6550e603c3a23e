"""Hardened raster reading and discovery of labelled pairs, on files made in tmp_path."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import DatasetReader
from rasterio.transform import Affine

from detection.errors import DetectionError, InvalidRasterError
from detection.io import (
    ReadLimits,
    find_datasets,
    load_pair,
    read_raster,
    write_mask_png,
)

RNG = np.random.default_rng(7)


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """North-up transform with its upper-left corner at (west, north), in map units."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


def write_raster(path: Path, bands: np.ndarray, *, driver: str = "GTiff", **profile) -> Path:
    """Write (bands, rows, cols) to `path`; extra keywords go to the rasterio profile."""
    count, rows, cols = bands.shape
    options = {"driver": driver, "width": cols, "height": rows, "count": count}
    options["dtype"] = bands.dtype.name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain images on purpose
        with rasterio.open(path, "w", **(options | profile)) as dst:
            dst.write(bands)
    return path


def test_geotiff_reads_with_georeferencing_roles_and_nan_as_nodata(tmp_path: Path) -> None:
    bands = RNG.uniform(0, 1, size=(4, 5, 6)).astype("float32")
    bands[2, 1, 3] = np.nan
    bands[0, 4, 0] = np.inf
    transform = from_origin(500000, 3300000, 10, 10)
    path = tmp_path / "scene.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=6, height=5, count=4, dtype="float32",
        crs="EPSG:32650", transform=transform,
    ) as dst:  # fmt: skip
        dst.write(bands)
        dst.descriptions = ("Blue", "green", "red", "NIR")
    raster = read_raster(path)
    assert raster.array.shape == (5, 6, 4)
    assert raster.crs == "EPSG:32650"
    assert raster.transform == transform
    assert raster.band_roles == ("blue", "green", "red", "nir")
    assert raster.nodata[1, 3] and raster.nodata[4, 0] and raster.nodata.sum() == 2
    assert np.isfinite(raster.array).all()
    good = ~raster.nodata
    np.testing.assert_array_equal(raster.array[good], np.moveaxis(bands, 0, -1)[good])


def test_declared_nodata_value_is_masked(tmp_path: Path) -> None:
    bands = np.full((1, 3, 3), 7, dtype="uint16")
    bands[0, 0, 0] = 0
    raster = read_raster(write_raster(tmp_path / "n.tif", bands, nodata=0))
    assert raster.nodata.tolist() == [[True, False, False], [False] * 3, [False] * 3]
    assert raster.source_dtype == "uint16"


def test_integer_bands_read_pixel_interleaved_with_nodata_zeroed(tmp_path: Path) -> None:
    bands = RNG.integers(1, 4000, size=(4, 6, 5)).astype("uint16")
    bands[1, 2, 3] = 9999
    raster = read_raster(write_raster(tmp_path / "u.tif", bands, nodata=9999))
    assert raster.array.dtype == np.float32 and raster.array.flags.c_contiguous
    assert np.argwhere(raster.nodata).tolist() == [[2, 3]]
    assert raster.array[2, 3].tolist() == [0.0] * 4
    expected = np.moveaxis(bands, 0, -1).astype(np.float32)
    np.testing.assert_array_equal(raster.array[~raster.nodata], expected[~raster.nodata])


def test_png_reads_as_rgb_without_georeferencing(tmp_path: Path) -> None:
    bands = RNG.integers(0, 256, size=(3, 8, 9), dtype="uint8")
    raster = read_raster(write_raster(tmp_path / "photo.png", bands, driver="PNG"))
    np.testing.assert_array_equal(raster.array, np.moveaxis(bands, 0, -1))
    assert raster.band_roles == ("red", "green", "blue")
    assert raster.transform is None and raster.crs is None


def test_bmp_reads_single_band(tmp_path: Path) -> None:
    bands = np.zeros((1, 4, 4), dtype="uint8")
    bands[0, 1:3, 1:3] = 255
    raster = read_raster(write_raster(tmp_path / "mask.bmp", bands, driver="BMP"))
    assert raster.array[:, :, 0].tolist() == bands[0].tolist()


def test_envi_reads_with_wavelength_roles(tmp_path: Path) -> None:
    bands = RNG.integers(0, 256, size=(2, 6, 5), dtype="uint8")
    path = write_raster(
        tmp_path / "landsat.img", bands, driver="ENVI",
        crs="EPSG:32651", transform=from_origin(203325, 3604935, 30, 30),
    )  # fmt: skip
    header = path.with_suffix(".hdr")
    header.write_text(header.read_text() + "wavelength units = Micrometers\n"
                      "wavelength = {0.4825, 0.825}\n")  # fmt: skip
    raster = read_raster(path)
    np.testing.assert_array_equal(raster.array, np.moveaxis(bands, 0, -1))
    assert raster.crs == "EPSG:32651"
    assert raster.band_roles == ("blue", "nir")


def test_vrt_renamed_tif_is_refused(tmp_path: Path) -> None:
    secret = write_raster(tmp_path / "secret.tif", np.ones((1, 2, 2), dtype="uint8"))
    disguised = tmp_path / "upload.tif"
    disguised.write_text(
        '<VRTDataset rasterXSize="2" rasterYSize="2"><VRTRasterBand dataType="Byte" band="1">'
        f"<SimpleSource><SourceFilename>{secret}</SourceFilename><SourceBand>1</SourceBand>"
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    with pytest.raises(InvalidRasterError, match="VRT"):
        read_raster(disguised)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_huge_declared_size_is_refused_before_any_pixel_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=100_000, height=100_000, count=4, dtype="uint8",
        tiled=True, compress="deflate", sparse_ok=True, bigtiff="yes",
    ):  # fmt: skip
        pass  # nothing written: a header and empty tile tables only
    assert path.stat().st_size < 10 * 1024**2

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels were read before the size check")

    monkeypatch.setattr(DatasetReader, "read", no_reading)
    with pytest.raises(InvalidRasterError, match=r"100000 × 100000 pixels × 4 bands"):
        read_raster(path)


def test_compression_ratio_limit_refuses_a_small_file_that_expands_hugely(
    tmp_path: Path,
) -> None:
    path = write_raster(
        tmp_path / "zeros.tif", np.zeros((1, 512, 512), "uint8"), compress="deflate"
    )
    strict = ReadLimits(max_compression_ratio=10, ratio_floor_bytes=0)
    with pytest.raises(InvalidRasterError, match="decompression bomb"):
        read_raster(path, limits=strict)
    assert read_raster(path).array.shape == (512, 512, 1)


@pytest.mark.parametrize("suffix, driver", [(".tif", "GTiff"), (".png", "PNG")])
def test_truncated_file_is_reported(tmp_path: Path, suffix: str, driver: str) -> None:
    bands = RNG.integers(0, 256, size=(3, 200, 200), dtype="uint8")
    path = write_raster(tmp_path / f"cut{suffix}", bands, driver=driver)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InvalidRasterError, match="truncated"):
        read_raster(path)


def test_truncated_envi_is_reported_instead_of_padded_with_zeros(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "cut.img", np.ones((2, 10, 10), "uint8"), driver="ENVI")
    path.write_bytes(path.read_bytes()[:150])
    with pytest.raises(InvalidRasterError, match=r"truncated.*200 bytes.*150"):
        read_raster(path)


def test_unsupported_suffix_is_refused_with_the_supported_list(tmp_path: Path) -> None:
    path = tmp_path / "scene.vrt"
    path.write_text("<VRTDataset/>")
    with pytest.raises(InvalidRasterError, match=r"unsupported file type '\.vrt'.*\.tif"):
        read_raster(path)


def test_mask_png_round_trips(tmp_path: Path) -> None:
    change = RNG.random((7, 9)) > 0.5
    write_mask_png(tmp_path / "out" / "pair.png", change)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pair.png"]
    values = read_raster(tmp_path / "out" / "pair.png").array[:, :, 0]
    np.testing.assert_array_equal(values == 255, change)


# --- labelled pairs -------------------------------------------------------------------------


def make_flat_dataset(root: Path, *, label_values: tuple[int, int] = (0, 255)) -> Path:
    for part in ("A", "B", "label"):
        (root / part).mkdir(parents=True)
    image = RNG.integers(0, 256, size=(3, 6, 6), dtype="uint8")
    label = np.full((1, 6, 6), label_values[0], dtype="uint8")
    label[0, :2, :3] = label_values[1]
    write_raster(root / "A" / "p1.png", image, driver="PNG")
    write_raster(root / "B" / "p1.png", image[::-1].copy(), driver="PNG")
    write_raster(root / "label" / "p1.png", label, driver="PNG")
    return root


def test_flat_dataset_pairs_load_with_binary_labels(tmp_path: Path) -> None:
    (dataset,) = find_datasets(make_flat_dataset(tmp_path / "rgb"))
    assert dataset.name == "rgb" and [p.name for p in dataset.pairs] == ["p1"]
    pair = load_pair(dataset.pairs[0])
    assert pair.before.shape == pair.after.shape == (6, 6, 3)
    assert pair.change.sum() == 6 and pair.labelled.all()


def test_zero_one_labels_are_not_read_as_all_unchanged(tmp_path: Path) -> None:
    (dataset,) = find_datasets(make_flat_dataset(tmp_path / "binary", label_values=(0, 1)))
    assert load_pair(dataset.pairs[0]).change.sum() == 6


def test_a_folder_of_datasets_is_found_in_name_order(tmp_path: Path) -> None:
    make_flat_dataset(tmp_path / "zeta")
    make_flat_dataset(tmp_path / "alpha")
    (tmp_path / "notes").mkdir()
    assert [d.name for d in find_datasets(tmp_path)] == ["alpha", "zeta"]


def test_missing_label_names_the_pair(tmp_path: Path) -> None:
    root = make_flat_dataset(tmp_path / "rgb")
    (root / "label" / "p1.png").unlink()
    with pytest.raises(DetectionError, match=r"pair 'p1' lacks label/p1"):
        find_datasets(root)


def test_partial_labels_score_only_the_reference_samples(tmp_path: Path) -> None:
    root = make_flat_dataset(tmp_path / "landsat")
    (root / "label_unchanged").mkdir()
    unchanged = np.zeros((1, 6, 6), dtype="uint8")
    unchanged[0, 4:, :] = 255
    write_raster(root / "label_unchanged" / "p1.bmp", unchanged, driver="BMP")
    pair = load_pair(find_datasets(root)[0].pairs[0])
    assert pair.labelled.sum() == 6 + 12
    assert not pair.labelled[2:4].any()


def write_oscd_city(root: Path, city: str) -> None:
    """Per-band GeoTIFFs; B on a coarser grid over the same extent, like OSCD's odd cities."""
    for date, (rows, cols, size) in {"A": (8, 10, 10.0), "B": (4, 5, 20.0)}.items():
        (root / date / city).mkdir(parents=True)
        for band in ("B02", "B03", "B04", "B08"):
            values = np.full((1, rows, cols), 1000, dtype="uint16")
            write_raster(
                root / date / city / f"{band}.tif", values,
                crs="EPSG:32631", transform=from_origin(600000, 5000000, size, size),
            )  # fmt: skip
    (root / "label" / city).mkdir(parents=True)
    label = np.ones((1, 8, 10), dtype="uint8")
    label[0, 0, :4] = 2
    write_raster(root / "label" / city / "cm.tif", label)


def test_per_band_city_folders_stack_bands_and_resample_b_onto_a(tmp_path: Path) -> None:
    write_oscd_city(tmp_path / "oscd", "paris")
    (dataset,) = find_datasets(tmp_path / "oscd")
    pair = load_pair(dataset.pairs[0])
    assert pair.name == "paris"
    assert pair.before.shape == pair.after.shape == (8, 10, 4)
    assert pair.band_roles == ("blue", "green", "red", "nir")
    np.testing.assert_allclose(pair.after[pair.valid], 1000)
    # cm.tif: 2 = change, 1 = no change.
    assert pair.change.sum() == 4 and pair.labelled.all()


def test_every_shared_dataset_reads_on_its_image_grid(shared_cd: Path) -> None:
    datasets = {d.name: d for d in find_datasets(shared_cd)}
    assert len(datasets) >= 7
    for dataset in datasets.values():
        for files in dataset.pairs:
            pair = load_pair(files)
            assert pair.before.shape == pair.after.shape, files.name
            assert pair.change.shape == pair.before.shape[:2], files.name
            assert pair.change[pair.labelled].any() or files.name.startswith("train_386")
    taizhou = load_pair(next(p for p in datasets["landsat_taizhou_nanjing"].pairs))
    # Reference samples counted in the dataset's SOURCE.md: 4,227 changed + 17,163 unchanged.
    assert (taizhou.change.sum(), taizhou.labelled.sum()) == (4227, 4227 + 17163)
    assert taizhou.band_roles == ("blue", "green", "red", "nir", "swir1", "swir2")
    saclay = load_pair(next(p for p in datasets["oscd"].pairs if p.name == "saclay_e"))
    assert saclay.after.shape == (639, 688, 4) and saclay.valid.all()


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares an 8-bit RGB image of the given size and holds no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def test_png_declaring_a_huge_image_is_refused_from_its_header(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(InvalidRasterError, match=r"too large.*10000000000 pixels"):
        read_raster(path)


def test_png_over_our_byte_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "big.png", 3000, 2000)
    with pytest.raises(InvalidRasterError, match=r"3000 × 2000 pixels × 3 bands"):
        read_raster(path, limits=ReadLimits(max_decoded_bytes=1024**2))
