"""Bad parameters and unusable output directories get specific errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import OutputDirError, SimulatorParamsError, WorldParams, generate_world


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("area_km2", 0.0, "area_km2"),
        ("epochs", 1, "epochs"),
        ("pixel_size_m", 5.0, "pixel_size_m"),
        ("crs", "+proj=utm", "EPSG:32651"),
        ("snapshot_times_local", ("9h30",), "HH:MM"),
    ],
)
def test_bad_params_are_refused_with_the_field_named(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(SimulatorParamsError, match=message):
        WorldParams(**{field: value})


def test_a_non_empty_output_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("keep me")

    with pytest.raises(OutputDirError, match="not empty"):
        generate_world(WorldParams(area_km2=0.25, epochs=2, cameras=0), tmp_path)

    assert (tmp_path / "old.txt").read_text() == "keep me"
