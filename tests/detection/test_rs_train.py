"""The optional trained scorer: `tianxun detector train`, then `tianxun detect --model`."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from detection import features
from detection.errors import DetectionError
from detection.raster_pair import detect_changes
from detection.rs_params import RasterDetectorParams
from detection.train import (
    CHANGED_SHARE,
    COMMITTEE_SIZE,
    RasterChangeModel,
    TrainingPair,
    fit_model,
    pair_samples,
)
from scripts.cli import app
from tests.detection.rs_scenes import field_scene

runner = CliRunner()


def rgb(image: np.ndarray) -> np.ndarray:
    return np.clip(image[:, :, :3] / 12, 0, 255).astype(np.uint8)


def write_dataset(root: Path, pairs: int) -> None:
    for folder in ("A", "B", "label"):
        (root / folder).mkdir(parents=True)
    for index in range(pairs):
        before = rgb(field_scene(96, 96, seed=index))
        after, label = before.copy(), np.zeros((96, 96), dtype=np.uint8)
        top = 10 + 20 * index
        after[top : top + 20, 30:55] = (240, 235, 230)  # a new bright roof
        label[top : top + 20, 30:55] = 255
        Image.fromarray(before).save(root / "A" / f"p{index}.png")
        Image.fromarray(after).save(root / "B" / f"p{index}.png")
        Image.fromarray(label).save(root / "label" / f"p{index}.png")


def test_a_model_trained_on_other_pairs_finds_change_in_a_new_pair(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data", pairs=3)
    model = tmp_path / "model.bin"
    outcome = runner.invoke(
        app, ["detector", "train", str(tmp_path / "data"), "--out", str(model), "--exclude", "p2"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert json.loads(outcome.output)["trained_on"] == ["data/p0", "data/p1"]
    outcome = runner.invoke(
        app,
        [
            "detect",
            str(tmp_path / "data/A/p2.png"),
            str(tmp_path / "data/B/p2.png"),
            "-o",
            str(tmp_path / "m"),
            "--model",
            str(model),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    mask = np.asarray(Image.open(tmp_path / "m.png")) > 0
    truth = np.zeros_like(mask)
    truth[50:70, 30:55] = True
    assert (mask & truth).sum() / (mask | truth).sum() > 0.7


def test_a_model_file_of_another_format_is_refused() -> None:
    with pytest.raises(DetectionError, match="retrain it"):
        RasterChangeModel.from_bytes(pickle.dumps({"format": "something-else/0"}))
    with pytest.raises(DetectionError, match="cannot be read"):
        RasterChangeModel.from_bytes(b"not a model")


def roof_pair(seed: int, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    before = field_scene(160, 160, seed=seed)
    after, change = before.copy(), np.zeros((160, 160), dtype=bool)
    after[top : top + 20, 60:90] = 3000.0
    change[top : top + 20, 60:90] = True
    return before, after, change


def training_pair(seed: int, top: int) -> TrainingPair:
    before, after, change = roof_pair(seed, top)
    valid = np.ones(change.shape, dtype=bool)
    return TrainingPair(before=before, after=after, valid=valid, change=change, labelled=valid)


def test_a_trained_model_scores_the_same_tile_by_tile_as_whole() -> None:
    model = fit_model(
        [("d/a", training_pair(0, 20)), ("d/b", training_pair(1, 100))], pixels_per_pair=3_000
    )
    before, after, _ = roof_pair(2, 70)
    whole = detect_changes(before, after, model=model, params=RasterDetectorParams(tile_px=4096))
    tiled = detect_changes(before, after, model=model, params=RasterDetectorParams(tile_px=64))
    np.testing.assert_array_equal(whole.score, tiled.score)
    np.testing.assert_array_equal(whole.mask, tiled.mask)
    assert whole.mask[75:85, 65:85].all()


def faint_roof_pair(seed: int, top: int) -> TrainingPair:
    """A roof 6 % brighter than the field under 3 % noise of the after date: not separable
    on one feature, so fits that choose among other features differ."""
    before = field_scene(160, 160, seed=seed)
    noise = np.random.default_rng(seed).normal(1.0, 0.03, before.shape).astype(np.float32)
    after, change = before * noise, np.zeros((160, 160), dtype=bool)
    change[top : top + 20, 60:90] = True
    after[change] *= 1.06
    valid = np.ones(change.shape, dtype=bool)
    return TrainingPair(before=before, after=after, valid=valid, change=change, labelled=valid)


def test_the_model_averages_fits_that_differ_only_by_their_random_state() -> None:
    pair = faint_roof_pair(0, 20)
    model = fit_model([("d/a", pair), ("d/b", faint_roof_pair(1, 100))], pixels_per_pair=3_000)
    members = model.classifier.members
    assert len(members) == COMMITTEE_SIZE
    assert len({member.random_state for member in members}) == COMMITTEE_SIZE
    drawn = pair_samples(pair, RasterDetectorParams(), per_pair=500, rng=np.random.default_rng(1))
    each = [member.predict_proba(drawn.features)[:, 1] for member in members]
    # The fits differ (each split chooses among its own half of the features) …
    assert max(np.abs(a - b).max() for a in each for b in each) > 0.01
    # … and the model scores with their mean, which still tells the roof from the field.
    averaged = model.classifier.predict_proba(drawn.features)[:, 1]
    np.testing.assert_allclose(averaged, np.mean(each, axis=0), rtol=1e-12)
    assert averaged[drawn.change].mean() > 0.9 > 0.1 > averaged[~drawn.change].mean()


def test_a_fixed_share_of_samples_is_change_and_each_weighs_for_the_pixels_it_stands_for() -> None:
    pair = training_pair(0, 20)  # 20 x 30 changed pixels of 160 x 160
    rng = np.random.default_rng(0)
    drawn = pair_samples(pair, RasterDetectorParams(), per_pair=400, rng=rng)
    assert drawn.features.shape[0] == 400
    assert np.count_nonzero(drawn.change) == int(400 * CHANGED_SHARE) > 400 * 600 / 160**2
    assert drawn.weight[drawn.change].sum() == pytest.approx(600)
    assert drawn.weight[~drawn.change].sum() == pytest.approx(160 * 160 - 600)
    # A pair with less change than its share of the draw gives all of it.
    scarce = pair_samples(pair, RasterDetectorParams(), per_pair=20_000, rng=rng)
    assert np.count_nonzero(scarce.change) == 600 and scarce.features.shape[0] == 20_000
    assert scarce.weight[scarce.change] == pytest.approx(np.ones(600))


def test_unchanged_structure_agrees_whatever_the_light_and_a_new_pattern_does_not() -> None:
    gray = field_scene(96, 96, seed=3).mean(axis=2)
    brighter = 1.3 * gray + 200.0
    built = gray.copy()
    built[40:60, 40:60] = np.where(np.indices((20, 20)).sum(axis=0) % 6 < 3, 900.0, 2500.0)
    for after, same in ((gray, True), (brighter, True), (built, False)):
        _, _, correlation = features.local_structure(gray, after, sigma=2.0, floor=5.0)
        agreement = features.gradient_agreement(gray, after, sigma=2.0, floor=5.0)
        if same:
            assert correlation.min() > 0.99 and agreement.min() > 0.99
        else:
            assert correlation[50, 50] < 0.5 and agreement[50, 50] < 0.5
            assert correlation[10, 10] > 0.99 and agreement[10, 10] > 0.99
