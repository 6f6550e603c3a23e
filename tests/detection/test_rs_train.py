"""The optional trained scorer: `tianxun detector train`, then `tianxun detect --model`."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from detection.errors import DetectionError
from detection.train import RasterChangeModel
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
