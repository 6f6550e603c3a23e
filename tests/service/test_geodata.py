"""Vector files are read into valid lon/lat polygons, or refused with a message that says why."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from pyogrio import raw
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

import service.geodata
from service.geodata import GeodataError, SourceFeature, file_checksum, iter_features, open_vector
from service.layers.subdivision import SubdivisionParams, subdivide

# A 100 m × 100 m-ish field in Hangzhou, in lon/lat.
FIELD = box(120.100, 30.200, 120.101, 30.201)
# A bow tie: its two triangles meet at (120.1005, 30.2005), so the ring crosses itself.
BOW_TIE = Polygon([(120.100, 30.200), (120.101, 30.201), (120.101, 30.200), (120.100, 30.201)])
DRIVERS = {".geojson": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile"}


@pytest.fixture(autouse=True, params=["arrow stream", "skipping batches"])
def batch_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reading test runs through both ways of reading a file in batches."""
    arrow = request.param == "arrow stream"
    if arrow and not service.geodata.ARROW_STREAM:
        pytest.skip("pyarrow is not installed")
    monkeypatch.setattr(service.geodata, "ARROW_STREAM", arrow)


def write_polygons(
    path: Path,
    geoms: Sequence[BaseGeometry],
    *,
    crs: str | None = "EPSG:4326",
    properties: dict[str, Sequence[Any]] | None = None,
) -> Path:
    """Write `geoms` (already in `crs`) with one column per `properties` entry."""
    properties = properties or {"name": [f"plot {i}" for i in range(len(geoms))]}
    fields = list(properties)
    columns = [np.asarray(values) for values in properties.values()]
    raw.write(
        path,
        shapely.to_wkb(np.asarray(geoms, dtype=object)),
        columns,
        fields,
        driver=DRIVERS[path.suffix],
        geometry_type="Unknown" if path.suffix == ".geojson" else "MultiPolygon",
        crs=crs,
        promote_to_multi=path.suffix != ".geojson",
    )
    return path


def write_geojson(path: Path, features: list[dict[str, Any]]) -> Path:
    """A GeoJSON written by hand, so it can hold what GDAL would not write (no CRS member)."""
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def feature(geom: BaseGeometry, **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": shapely.geometry.mapping(geom)}


def projected(geom: BaseGeometry, epsg: int) -> BaseGeometry:
    transformer = Transformer.from_crs(4326, epsg, always_xy=True)
    return shapely.transform(geom, transformer.transform, interleaved=False)


def read_all(path: Path, **kwargs: Any) -> list[SourceFeature]:
    source = open_vector(path)
    return [f for batch in iter_features(source, **kwargs) for f in batch]


def test_geojson_features_come_out_as_polygons_with_their_properties(tmp_path: Path) -> None:
    path = write_geojson(
        tmp_path / "fields.geojson",
        [feature(FIELD, name="east", dlbm="0101"), feature(FIELD.buffer(-0.0002), name="core")],
    )

    features = read_all(path)

    assert [f.properties.get("name") for f in features] == ["east", "core"]
    assert features[0].properties["dlbm"] == "0101"
    assert features[0].geom.equals(FIELD)
    assert not any(f.repaired for f in features)


def test_batches_cover_every_feature_once(tmp_path: Path) -> None:
    fields = [box(120.1 + i * 0.001, 30.2, 120.1005 + i * 0.001, 30.2005) for i in range(7)]
    path = write_geojson(tmp_path / "many.geojson", [feature(g, n=i) for i, g in enumerate(fields)])

    batches = list(iter_features(open_vector(path), batch_size=3))

    assert [len(b) for b in batches] == [3, 3, 1]
    assert [f.properties["n"] for b in batches for f in b] == list(range(7))
    assert [f.index for b in batches for f in b] == list(range(7))


@pytest.mark.parametrize("epsg", [4549, 32651])
def test_projected_files_land_in_hangzhou(tmp_path: Path, epsg: int) -> None:
    path = write_polygons(
        tmp_path / f"fields_{epsg}.gpkg", [projected(FIELD, epsg)], crs=f"EPSG:{epsg}"
    )

    (only,) = read_all(path)

    assert only.geom.centroid.distance(FIELD.centroid) < 1e-7  # ~1 cm
    assert only.geom.symmetric_difference(FIELD).area / FIELD.area < 1e-6


def test_a_self_intersecting_polygon_is_repaired_to_its_two_triangles(tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "bowtie.geojson", [feature(BOW_TIE, name="bow tie")])

    (only,) = read_all(path)

    assert only.repaired
    assert only.geom.is_valid
    assert isinstance(only.geom, MultiPolygon) and len(only.geom.geoms) == 2
    assert only.geom.area == pytest.approx(FIELD.area / 2)


def test_a_polygon_that_collapses_to_a_line_is_refused_by_name(tmp_path: Path) -> None:
    sliver = Polygon([(120.1, 30.2), (120.101, 30.201), (120.102, 30.202), (120.1, 30.2)])
    path = write_geojson(
        tmp_path / "sliver.geojson", [feature(FIELD, name="ok"), feature(sliver, name="flat")]
    )

    with pytest.raises(GeodataError, match=r"sliver\.geojson: feature #1 \(fid 1\).*redraw"):
        read_all(path)


def test_lines_are_refused_with_what_to_do(tmp_path: Path) -> None:
    line = {"type": "LineString", "coordinates": [[120.1, 30.2], [120.2, 30.3]]}
    path = write_geojson(
        tmp_path / "roads.geojson", [{"type": "Feature", "properties": {}, "geometry": line}]
    )

    with pytest.raises(GeodataError, match=r"feature #0 .* is a LineString.*buffer"):
        read_all(path)


def test_swapped_lon_lat_is_refused_naming_the_feature_and_cause(tmp_path: Path) -> None:
    swapped = shapely.transform(FIELD, lambda xy: xy[:, ::-1])
    path = write_geojson(
        tmp_path / "swapped.geojson", [feature(FIELD, name="ok"), feature(swapped, name="bad")]
    )

    with pytest.raises(GeodataError, match=r"feature #1 \(fid 1\).*look swapped"):
        read_all(path)


def test_swapped_easting_and_northing_are_refused_as_out_of_area(tmp_path: Path) -> None:
    # Unchecked, these would land in the Pacific at about 144.8E 4.2N.
    swapped = shapely.transform(projected(FIELD, 4549), lambda xy: xy[:, ::-1])
    path = write_polygons(tmp_path / "swapped.gpkg", [swapped], crs="EPSG:4549")

    with pytest.raises(GeodataError, match=r"feature #0.*outside the area where EPSG:4549 is used"):
        read_all(path)


def test_metres_claimed_as_lon_lat_are_refused_as_a_wrong_crs(tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "metres.geojson", [feature(projected(FIELD, 4549))])

    with pytest.raises(GeodataError, match=r"feature #0.*projected coordinates.*assign the CRS"):
        read_all(path)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = write_geojson(tmp_path / "empty.geojson", [])

    with pytest.raises(GeodataError, match=r"empty\.geojson contains no features"):
        open_vector(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("plots.geojson", "code,name,area\n1,east,3.5\n"),
        ("plots.csv", "code,name,area\n1,east,3.5\n"),
        ("notes.geojson", "these are not the plots you are looking for\n"),
    ],
)
def test_a_file_without_geometries_is_refused(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)

    with pytest.raises(
        GeodataError, match=rf"{name}.*(cannot be read as a vector file|not an accepted format)"
    ):
        open_vector(path)


def test_a_truncated_file_is_refused_as_damaged(tmp_path: Path) -> None:
    whole = write_geojson(tmp_path / "whole.geojson", [feature(FIELD, n=i) for i in range(50)])
    cut = tmp_path / "cut.geojson"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    with pytest.raises(GeodataError, match=r"cut\.geojson cannot be read .* truncated"):
        read_all(cut)


def test_a_geopackage_with_several_layers_needs_the_layer_named(tmp_path: Path) -> None:
    path = tmp_path / "one_map.gpkg"
    for layer, geom in (("pbf", FIELD), ("roads", FIELD.buffer(0.001))):
        raw.write(
            path,
            shapely.to_wkb(np.asarray([geom], dtype=object)),
            [np.array([layer])],
            ["kind"],
            layer=layer,
            driver="GPKG",
            geometry_type="Polygon",
            crs="EPSG:4326",
            append=path.exists(),
        )

    with pytest.raises(GeodataError, match=r"several layers with geometry \['pbf', 'roads'\]"):
        open_vector(path)
    (only,) = [f for batch in iter_features(open_vector(path, layer="roads")) for f in batch]
    assert only.properties == {"kind": "roads"}


def test_a_table_without_geometry_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "table.gpkg"
    raw.write(path, None, [np.array(["a", "b"])], ["code"], driver="GPKG", geometry_type=None)

    with pytest.raises(GeodataError, match="table without geometry"):
        open_vector(path)


def test_a_shapefile_without_prj_is_refused_naming_the_missing_file(tmp_path: Path) -> None:
    path = write_polygons(tmp_path / "noprj.shp", [projected(FIELD, 4549)], crs="EPSG:4549")
    path.with_suffix(".prj").unlink()

    with pytest.raises(GeodataError, match=r"no coordinate reference system \(the \.prj"):
        open_vector(path)


def test_a_shapefile_in_gauss_kruger_is_read_with_its_attributes(tmp_path: Path) -> None:
    path = write_polygons(
        tmp_path / "pbf.shp",
        [projected(FIELD, 4549)],
        crs="EPSG:4549",
        properties={"code": ["330106"], "name": ["西湖"]},
    )

    (only,) = read_all(path)

    assert only.properties == {"code": "330106", "name": "西湖"}
    assert only.geom.symmetric_difference(FIELD).area / FIELD.area < 1e-6


def test_the_shapefile_checksum_changes_with_its_attributes(tmp_path: Path) -> None:
    geoms = [projected(FIELD, 4549)]
    first = write_polygons(tmp_path / "a.shp", geoms, crs="EPSG:4549", properties={"n": ["x"]})
    second = write_polygons(tmp_path / "b.shp", geoms, crs="EPSG:4549", properties={"n": ["y"]})

    assert file_checksum(open_vector(first)) != file_checksum(open_vector(second))


def star(center: tuple[float, float], *, vertices: int, radius: float) -> Polygon:
    """A spiky polygon with many vertices, like a digitised farmland boundary."""
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    radii = radius * (0.8 + 0.2 * np.cos(angles * 37))
    return Polygon(np.c_[center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)])


def test_a_huge_polygon_is_cut_into_parts_that_cover_it_exactly() -> None:
    huge = star((120.1, 30.2), vertices=20_000, radius=0.05).difference(
        box(120.09, 30.19, 120.11, 30.21)
    )

    parts = subdivide(huge, params=SubdivisionParams(max_vertices=500))

    assert len(parts) > 40
    assert all(shapely.get_num_coordinates(p) <= 500 for p in parts)
    union = shapely.union_all(parts)
    assert union.area == pytest.approx(huge.area, rel=1e-6)
    assert union.symmetric_difference(huge).area / huge.area < 1e-6
    assert sum(p.area for p in parts) == pytest.approx(huge.area, rel=1e-6)  # no overlaps


def test_a_long_thin_polygon_is_cut_so_its_bounding_boxes_stay_small() -> None:
    canal = shapely.LineString([(120.0, 30.0), (120.3, 30.3)]).buffer(0.0005)
    params = SubdivisionParams(max_vertices=10_000)

    parts = subdivide(canal, params=params)

    assert len(parts) > 8
    bbox_area = sum(shapely.area(shapely.envelope(p)) for p in parts)
    assert bbox_area < shapely.area(shapely.envelope(canal)) / 8
    assert shapely.union_all(parts).area == pytest.approx(canal.area, rel=1e-6)


def test_a_compact_small_polygon_stays_whole() -> None:
    assert subdivide(FIELD, params=SubdivisionParams()) == [FIELD]
