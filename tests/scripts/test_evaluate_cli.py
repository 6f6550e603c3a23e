"""`tianxun evaluate pairs` on crafted datasets with hand-computed scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from detection.errors import DetectionError
from detection.io import find_datasets, load_pair
from scripts import evaluate
from scripts.cli import app
from tests.detection.rs_scenes import field_scene

runner = CliRunner()
# Large enough for every method, the project's detector included (it needs 8×8).
SHAPE = (8, 8)


def save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def save_labelled(
    root: Path, name: str, before: np.ndarray, after: np.ndarray, label: np.ndarray
) -> None:
    """One pair in the A/ B/ label/ layout (label 255 = change)."""
    save_png(root / "A" / f"{name}.png", before)
    save_png(root / "B" / f"{name}.png", after)
    save_png(root / "label" / f"{name}.png", np.where(label, 255, 0))


def save_pair(root: Path, name: str, label: np.ndarray, *, changed_value: float = 200) -> None:
    """A grey before image, an after image brighter where `label` is change, and the label."""
    rows, cols = label.shape
    before = np.full((rows, cols, 3), 60, dtype=np.uint8)
    after = before.copy()
    after[label] = changed_value
    save_labelled(root, name, before, after, label)


@pytest.fixture
def crafted(tmp_path: Path) -> Path:
    """Two datasets: `fields` with two 8×8 pairs, `towns` with one."""
    root = tmp_path / "cd"
    label = np.zeros(SHAPE, dtype=bool)
    label[0, :2] = True
    save_pair(root / "fields", "f1", label)
    label2 = np.zeros(SHAPE, dtype=bool)
    label2[7, 7] = True
    save_pair(root / "fields", "f2", label2)
    label3 = np.zeros(SHAPE, dtype=bool)
    label3[1:3, 1:3] = True
    save_pair(root / "towns", "t1", label3)
    return root


def save_predictions(directory: Path) -> None:
    # fields/f1: hits 1 of the 2 changed pixels and adds 1 false pixel -> TP 1, FP 1, FN 1.
    f1 = np.zeros(SHAPE, dtype=np.uint8)
    f1[0, 0] = 1
    f1[2, 2] = 1
    save_png(directory / "fields" / "f1.png", f1)
    # fields/f2: predicts nothing -> FN 1.
    save_png(directory / "fields" / "f2.png", np.zeros(SHAPE))
    # towns/t1: exactly right -> TP 4.
    t1 = np.zeros(SHAPE, dtype=np.uint8)
    t1[1:3, 1:3] = 7
    save_png(directory / "towns" / "t1.png", t1)


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, ["evaluate", "pairs", *map(str, args)])
    return result.exit_code, result.output


def test_saved_predictions_score_as_worked_out_by_hand(crafted: Path, tmp_path: Path) -> None:
    save_predictions(tmp_path / "pred")
    code, output = invoke(crafted, "--predictions", tmp_path / "pred", "--json")
    assert code == 0, output
    scores = json.loads(output)
    fields, towns = scores["fields"], scores["towns"]
    # Pooled over f1 and f2: TP 1, FP 1, FN 2 -> P 1/2, R 1/3, F1 2/5, IoU 1/4.
    assert (fields["precision"], fields["recall"]) == pytest.approx((1 / 2, 1 / 3))
    assert (fields["f1"], fields["iou"]) == pytest.approx((2 / 5, 1 / 4))
    # Objects: predicted {(0,0)} correct, {(2,2)} wrong; reference f1 row found, f2 pixel missed.
    assert (fields["object_precision"], fields["object_recall"]) == pytest.approx((0.5, 0.5))
    assert fields["pairs"] == 2
    assert towns["f1"] == pytest.approx(1.0)
    assert scores["mean"]["f1"] == pytest.approx((2 / 5 + 1.0) / 2)


def test_written_masks_score_the_same_when_read_back(crafted: Path, tmp_path: Path) -> None:
    written = tmp_path / "out"
    code, direct = invoke(crafted, "--method", "cva", "--write-predictions", written, "--json")
    assert code == 0, direct
    assert sorted(p.relative_to(written).as_posix() for p in written.rglob("*.png")) == [
        "cva/fields/f1.png",
        "cva/fields/f2.png",
        "cva/towns/t1.png",
    ]
    code, again = invoke(crafted, "--predictions", written / "cva", "--json")
    assert code == 0, again
    direct_scores, read_back = json.loads(direct), json.loads(again)
    for dataset in ("fields", "towns"):
        assert read_back[dataset]["f1"] == direct_scores[dataset]["f1"]
        assert read_back[dataset]["true_positive"] == direct_scores[dataset]["true_positive"]
    # A bright change on a flat grey scene is found exactly.
    assert direct_scores["towns"]["f1"] == 1.0


# The crafted scenes are flat grey: scores far beyond float16's range, which must saturate.
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_all_methods_run_side_by_side_in_a_table(crafted: Path) -> None:
    code, output = invoke(crafted)
    assert code == 0, output
    for word in ("cva", "irmad", "pcakmeans", "fields", "towns", "mean"):
        assert word in output


def test_all_methods_as_json_are_keyed_by_method_then_dataset(crafted: Path) -> None:
    code, output = invoke(crafted, "--json")
    assert code == 0, output
    scores = json.loads(output)
    detector = {"detector"} if evaluate.project_detector() is not None else set()
    assert set(scores) == {"cva", "irmad", "pcakmeans"} | detector
    assert set(scores["cva"]) == {"fields", "towns", "mean"}


def test_detector_fails_clearly_when_it_is_not_available(
    crafted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluate, "project_detector", lambda: None)
    code, output = invoke(crafted, "--method", "detector")
    assert code == 2
    assert "not wired into the evaluator yet" in output
    code, output = invoke(crafted, "--json")
    assert code == 0, output
    assert set(json.loads(output)) == {"cva", "irmad", "pcakmeans"}


def test_a_missing_prediction_names_the_expected_file(crafted: Path, tmp_path: Path) -> None:
    save_predictions(tmp_path / "pred")
    (tmp_path / "pred" / "towns" / "t1.png").unlink()
    code, output = invoke(crafted, "--predictions", tmp_path / "pred")
    assert code == 2
    assert "no prediction for pair 't1'" in output and "t1.tif" in output


def test_a_folder_without_datasets_is_explained(tmp_path: Path) -> None:
    code, output = invoke(tmp_path)
    assert code == 2
    assert "expected A/, B/ and label/" in output


def test_every_shared_dataset_is_scored(shared_cd: Path) -> None:
    code, output = invoke(shared_cd, "--method", "cva", "--json")
    assert code == 0, output
    scores = json.loads(output)
    assert {name for name in scores if name != "mean"} >= {
        "dsifn_cd_256",
        "egy_bcd",
        "landsat_taizhou_nanjing",
        "levir_cd",
        "levir_cd_256",
        "oscd",
        "sztaki_airchange",
    }
    assert all(0 < scores[name]["f1"] < 1 for name in scores)


def save_roof_pairs(root: Path, names: list[str]) -> None:
    """Textured fields, each after image with a new bright roof at its own place, labelled."""
    for index, name in enumerate(names):
        before = np.clip(field_scene(96, 96, seed=index)[:, :, :3] / 12, 0, 255)
        after, label = before.copy(), np.zeros((96, 96), dtype=bool)
        top = 10 + 20 * index
        after[top : top + 20, 30:55] = (240, 235, 230)
        label[top : top + 20, 30:55] = True
        save_labelled(root, name, before, after, label)


@pytest.fixture
def roofs(tmp_path: Path) -> Path:
    root = tmp_path / "cd"
    save_roof_pairs(root / "towns", ["t1", "t2", "t3"])
    save_roof_pairs(root / "villages", ["v1"])
    return root


@pytest.mark.slow
def test_cross_validation_scores_each_pair_with_a_model_that_never_saw_it(roofs: Path) -> None:
    samples = evaluate.collect_samples(roofs, pixels_per_pair=2_000)
    method = evaluate.LeaveOnePairOut(samples)
    runs = evaluate.run_methods(find_datasets(roofs), {evaluate.CROSS_VALIDATED: method})
    pairs = {"towns/t1", "towns/t2", "towns/t3", "villages/v1"}
    assert set(samples) == set(method.trained_on) == pairs
    for scored, trained_on in method.trained_on.items():
        assert set(trained_on) == pairs - {scored}
    # A roof like those of the other pairs is found in a pair the model never saw.
    scores = runs[evaluate.CROSS_VALIDATED].scores
    assert scores["towns"].pixels.f1 > 0.7 and scores["villages"].pixels.f1 > 0.7


def test_a_pair_without_training_samples_is_refused(roofs: Path) -> None:
    method = evaluate.LeaveOnePairOut({})
    pair = load_pair(find_datasets(roofs)[0].pairs[0])
    with pytest.raises(DetectionError, match="no training samples"):
        method(pair.before, pair.after, valid=pair.valid, metadata={"pair": "towns/t1"})


@pytest.mark.slow
def test_the_cross_validated_model_sits_in_the_table_beside_the_other_methods(
    roofs: Path,
) -> None:
    code, output = invoke(roofs, "--cross-validate", "--pixels-per-pair", "2000", "--json")
    assert code == 0, output
    scores = json.loads(output)
    assert {evaluate.CROSS_VALIDATED, "cva", "irmad", "pcakmeans"} <= set(scores)
    assert scores[evaluate.CROSS_VALIDATED]["mean"]["datasets"] == 2


def test_the_model_is_only_scored_cross_validated(roofs: Path) -> None:
    code, output = invoke(roofs, "--method", "model")
    assert code == 2
    assert "--cross-validate" in output
