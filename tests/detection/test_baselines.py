"""The classic baselines on scenes whose change is known, and on the shared labelled pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detection.baselines import BASELINES, cva_otsu, irmad_otsu, pca_kmeans
from detection.errors import DetectionError
from detection.io import find_datasets, load_pair
from detection.metrics import pixel_counts, pooled, score_pair


def textured_scene(rows: int = 96, cols: int = 96, bands: int = 4, seed: int = 3) -> np.ndarray:
    """Fields of different brightness with sensor noise, float32 (rows, cols, bands)."""
    rng = np.random.default_rng(seed)
    fields = rng.uniform(200, 800, size=(rows // 16 + 1, cols // 16 + 1, bands))
    scene = np.repeat(np.repeat(fields, 16, axis=0), 16, axis=1)[:rows, :cols]
    return (scene + rng.normal(0, 5, size=scene.shape)).astype(np.float32)


def with_new_building(scene: np.ndarray, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The scene with a bright 20×24 roof painted in; returns (after, reference mask)."""
    rng = np.random.default_rng(seed)
    after = scene + rng.normal(0, 5, size=scene.shape).astype(np.float32)
    change = np.zeros(scene.shape[:2], dtype=bool)
    change[30:50, 40:64] = True
    after[change] = 1500.0 + rng.normal(0, 5, size=(int(change.sum()), scene.shape[2]))
    return after, change


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_each_baseline_finds_a_painted_building(name: str) -> None:
    before = textured_scene()
    after, change = with_new_building(before)
    found = BASELINES[name](before, after)
    counts = pixel_counts(found, change)
    assert counts.f1 > 0.9, (name, counts)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_each_baseline_reports_nothing_outside_the_valid_pixels(name: str) -> None:
    before = textured_scene()
    after, _ = with_new_building(before)
    valid = np.ones(before.shape[:2], dtype=bool)
    valid[:, 48:] = False  # the right half of the roof lies under cloud
    found = BASELINES[name](before, after, valid=valid)
    assert not found[:, 48:].any()
    assert found[30:50, 40:48].mean() > 0.9


def test_identical_dates_give_no_change() -> None:
    scene = textured_scene()
    assert not cva_otsu(scene, scene.copy()).any()
    assert not pca_kmeans(scene, scene.copy()).any()


def test_irmad_ignores_a_gain_and_offset_change_of_the_whole_scene() -> None:
    before = textured_scene()
    after, change = with_new_building(before)
    brighter = after * 1.3 + 40.0  # another sun angle or sensor gain: not change
    counts = pixel_counts(irmad_otsu(before, brighter), change)
    assert counts.f1 > 0.9, counts


def test_dates_of_different_shapes_are_refused() -> None:
    scene = textured_scene()
    with pytest.raises(DetectionError, match="one grid"):
        cva_otsu(scene, scene[:-1])


def test_cva_reproduces_the_published_baseline_on_the_shared_pairs(shared_cd: Path) -> None:
    # Pooled F1 of CVA + Otsu listed in the shared data's README for these two datasets.
    published = {"dsifn_cd_256": 0.48, "egy_bcd": 0.57}
    for dataset in find_datasets(shared_cd):
        if dataset.name not in published:
            continue
        pairs = [load_pair(files) for files in dataset.pairs]
        score = pooled(
            score_pair(cva_otsu(p.before, p.after, valid=p.valid), p.change, labelled=p.labelled)
            for p in pairs
        )
        assert score.pixels.f1 == pytest.approx(published[dataset.name], abs=0.03)
