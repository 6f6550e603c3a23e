"""`tianxun evaluate`: score change detection against labelled image pairs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from detection import train
from detection.baselines import BASELINES, ChangeMethod
from detection.errors import DetectionError
from detection.io import (
    DatasetFiles,
    LabelledPair,
    find_datasets,
    load_pair,
    read_prediction,
    write_mask_png,
)
from detection.metrics import Score, mean_f1, score_pair
from detection.raster_pair import change_method
from scripts.detect import labelled_pairs
from scripts.evaluate_backfill import evaluate_backfill
from scripts.evaluate_world import evaluate_world

evaluate_app = typer.Typer(
    no_args_is_help=True, help="Score change detection against labelled image pairs."
)

PREDICTIONS = "predictions"
MEAN = "mean"
#: The trained scorer, each pair scored by a model that learned from every other pair.
CROSS_VALIDATED = "model-cv"


class MethodChoice(StrEnum):
    detector = "detector"
    cva = "cva"
    irmad = "irmad"
    pcakmeans = "pcakmeans"
    model = "model"
    all = "all"


def project_detector() -> ChangeMethod | None:
    """The project's remote-sensing detector behind the `ChangeMethod` protocol, or None.

    The detector plugs in here: return a callable taking (before, after, *, valid, metadata)
    arrays as documented in `detection.baselines.ChangeMethod` and returning a bool mask.
    """
    return change_method()


def choose_methods(choice: MethodChoice) -> dict[str, ChangeMethod]:
    """The methods to run for `--method`; `all` runs every available one.

    The trained model (`model`) is added by `--cross-validate` (`LeaveOnePairOut`), not here.
    """
    if choice is MethodChoice.model:
        return {}
    detector = project_detector()
    if choice is MethodChoice.detector:
        if detector is None:
            raise DetectionError(
                "the project's detector is not wired into the evaluator yet "
                "(scripts/evaluate.py: project_detector); use --method cva, irmad, "
                "pcakmeans or all, or score saved masks with --predictions DIR"
            )
        return {"detector": detector}
    if choice is MethodChoice.all:
        return ({"detector": detector} if detector else {}) | dict(BASELINES)
    return {choice.value: BASELINES[choice.value]}


@dataclass
class MethodRun:
    """Per-dataset pooled scores and compute time of one method."""

    scores: dict[str, Score] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, dataset: str, score: Score, seconds: float) -> None:
        self.scores[dataset] = self.scores.get(dataset, Score()) + score
        self.seconds[dataset] = self.seconds.get(dataset, 0.0) + seconds


def _metadata(pair: LabelledPair) -> dict[str, object]:
    return {
        "band_roles": pair.band_roles,
        "crs": pair.crs,
        "transform": pair.transform,
        # Lets a cross-validated method pick the model that left this pair out.
        "pair": f"{pair.dataset}/{pair.name}",
    }


def collect_samples(
    dataset_root: Path, *, pixels_per_pair: int = train.PIXELS_PER_PAIR
) -> dict[str, train.PairSamples]:
    """Training samples of every labelled pair under `dataset_root`, keyed "dataset/pair".

    Computed once, so the k trainings of a cross-validation do not recompute features.
    """
    pairs = labelled_pairs(dataset_root, exclude=set())
    return train.collect_samples(pairs, pixels_per_pair=pixels_per_pair)


@dataclass
class LeaveOnePairOut:
    """A `ChangeMethod` that scores each pair with a model trained on every other pair.

    Attributes
    ----------
    samples : mapping of "dataset/pair" to PairSamples
        From `collect_samples`; the pair being scored is left out of each training.
    trained_on : dict of str to tuple of str
        For each pair scored, the pairs its model learned from (the proof it was left out).
    """

    samples: Mapping[str, train.PairSamples]
    seed: int = 0
    trained_on: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __call__(
        self,
        before: np.ndarray,
        after: np.ndarray,
        *,
        valid: np.ndarray | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> np.ndarray:
        name = str((metadata or {}).get("pair"))
        if name not in self.samples:
            raise DetectionError(
                f"pair {name!r} has no training samples; collect them from the same root"
            )
        model = train.fit_leaving_out(self.samples, name, seed=self.seed)
        if name in model.trained_on:
            raise DetectionError(f"the model scoring {name!r} was trained on it")
        self.trained_on[name] = model.trained_on
        return change_method(model=model)(before, after, valid=valid, metadata=metadata)


def run_methods(
    datasets: Iterable[DatasetFiles],
    methods: dict[str, ChangeMethod],
    *,
    write_to: Path | None = None,
) -> dict[str, MethodRun]:
    """Run every method on every pair (each pair read once), scoring pooled per dataset.

    With `write_to`, each mask is saved as `write_to/<method>/<dataset>/<pair>.png`.
    """
    runs = {name: MethodRun() for name in methods}
    for dataset in datasets:
        for files in dataset.pairs:
            pair = load_pair(files)
            for name, method in methods.items():
                started = time.perf_counter()
                mask = method(pair.before, pair.after, valid=pair.valid, metadata=_metadata(pair))
                elapsed = time.perf_counter() - started
                score = score_pair(mask, pair.change, labelled=pair.labelled)
                runs[name].add(dataset.name, score, elapsed)
                if write_to is not None:
                    write_mask_png(write_to / name / dataset.name / f"{pair.name}.png", mask)
    return runs


def score_predictions(datasets: Iterable[DatasetFiles], directory: Path) -> MethodRun:
    """Score saved masks `directory/<dataset>/<pair>.tif|.png` against the labels."""
    run = MethodRun()
    for dataset in datasets:
        for files in dataset.pairs:
            pair = load_pair(files)
            mask = read_prediction(directory, files, shape=pair.change.shape)
            run.add(dataset.name, score_pair(mask, pair.change, labelled=pair.labelled), 0.0)
    return run


def run_as_dict(run: MethodRun) -> dict[str, dict[str, float | int]]:
    """Scores keyed by dataset name (each with `f1`, ...), plus `mean` with the mean F1."""
    result: dict[str, dict[str, float | int]] = {}
    for dataset, score in run.scores.items():
        result[dataset] = score.as_dict() | {"seconds": round(run.seconds[dataset], 3)}
    result[MEAN] = {"f1": mean_f1(run.scores.values()), "datasets": len(run.scores)}
    return result


def runs_as_json(runs: dict[str, MethodRun]) -> str:
    """One method: keyed by dataset. Several: keyed by method, then by dataset."""
    if len(runs) == 1:
        return json.dumps(run_as_dict(next(iter(runs.values()))), indent=2)
    return json.dumps({name: run_as_dict(run) for name, run in runs.items()}, indent=2)


def runs_as_table(runs: dict[str, MethodRun]) -> Table:
    """Pooled pixel and object scores per method and dataset, with each method's mean F1."""
    table = Table(title="Pooled change-class scores per dataset")
    for column in ("method", "dataset", "pairs", "F1", "P", "R", "IoU", "obj P", "obj R", "s"):
        text = column in ("method", "dataset")
        table.add_column(column, justify="left" if text else "right", no_wrap=text)
    for name, run in runs.items():
        for dataset, score in run.scores.items():
            pixels, objects = score.pixels, score.objects
            table.add_row(
                name,
                dataset,
                str(score.pairs),
                *(f"{value:.3f}" for value in (pixels.f1, pixels.precision, pixels.recall)),
                *(f"{value:.3f}" for value in (pixels.iou, objects.precision, objects.recall)),
                f"{run.seconds[dataset]:.1f}",
            )
        mean = f"{mean_f1(run.scores.values()):.3f}"
        total = f"{sum(run.seconds.values()):.1f}"
        table.add_row(name, MEAN, "", mean, "", "", "", "", "", total, end_section=True)
    return table


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


ROOT_HELP = "A dataset folder with A/ B/ label/, or a folder of such datasets."
PREDICTIONS_HELP = (
    "Score saved masks DIR/<dataset>/<pair>.tif or .png (non-zero = change) "
    "instead of running a method."
)
WRITE_HELP = (
    "Save masks as DIR/<method>/<dataset>/<pair>.png "
    "(score them again with --predictions DIR/<method>)."
)
JSON_HELP = "Print JSON keyed by dataset (by method first when several run)."
CROSS_VALIDATE_HELP = (
    "Also score the trained model (`tianxun detector train`) leave-one-pair-out: each pair "
    f"by a model trained on every other pair under the root (shown as {CROSS_VALIDATED}; its "
    "time includes training). Needed for --method model."
)
PIXELS_HELP = "Labelled pixels drawn from each pair to train the cross-validated model."


@evaluate_app.command("pairs")
def evaluate_pairs(
    dataset_root: Annotated[Path, typer.Argument(help=ROOT_HELP)],
    predictions: Annotated[Path | None, typer.Option(help=PREDICTIONS_HELP)] = None,
    method: Annotated[
        MethodChoice, typer.Option(help="Method to run; `all` runs every available one.")
    ] = MethodChoice.all,
    write_predictions: Annotated[Path | None, typer.Option(help=WRITE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    cross_validate: Annotated[bool, typer.Option(help=CROSS_VALIDATE_HELP)] = False,
    pixels_per_pair: Annotated[
        int, typer.Option(min=100, help=PIXELS_HELP)
    ] = train.PIXELS_PER_PAIR,
) -> None:
    """Pooled precision, recall, F1, IoU and object-level precision/recall per dataset."""
    if predictions is not None and write_predictions is not None:
        raise _fail("--predictions scores saved masks; drop --write-predictions")
    if predictions is not None and cross_validate:
        raise _fail("--predictions scores saved masks; drop --cross-validate")
    if method is MethodChoice.model and not cross_validate:
        raise _fail(
            "the model is scored on pairs it never learned from: add --cross-validate "
            "(or score a saved model's masks with --predictions DIR)"
        )
    try:
        datasets = find_datasets(dataset_root)
        if predictions is not None:
            runs = {PREDICTIONS: score_predictions(datasets, predictions)}
        else:
            methods = choose_methods(method)
            if cross_validate:
                samples = collect_samples(dataset_root, pixels_per_pair=pixels_per_pair)
                methods[CROSS_VALIDATED] = LeaveOnePairOut(samples)
            runs = run_methods(datasets, methods, write_to=write_predictions)
    except DetectionError as error:
        raise _fail(str(error)) from error
    if as_json:
        typer.echo(runs_as_json(runs))
    else:
        console = Console()
        # Piped output has no terminal width to follow: keep every column whole.
        Console(width=None if console.is_terminal else 140).print(runs_as_table(runs))


evaluate_app.command("world")(evaluate_world)
evaluate_app.command("backfill")(evaluate_backfill)


def register(app: typer.Typer) -> None:
    """Add the `evaluate` commands to the `tianxun` command."""
    app.add_typer(evaluate_app, name="evaluate")
