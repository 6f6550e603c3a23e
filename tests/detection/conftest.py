"""Fixtures shared by the tower-camera tests: the synthetic scene and its calibration."""

from __future__ import annotations

import pytest

from detection.geolocate import Calibration, calibration_from_mapping
from tests.detection.test_camera_scene import Scene


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.fixture(scope="module")
def calibration(scene: Scene) -> Calibration:
    return calibration_from_mapping(scene.calibration_mapping())
