"""Optional trained scorer: a gradient-boosted pixel classifier on multi-scale change features.

Learned from labelled pairs (A/ B/ label/) or from inspectors' verdicts rasterised into masks.
Features are band-agnostic (change magnitudes, visible bands, indices where bands allow, edges),
so one model serves RGB and multispectral pairs; a missing index is NaN, which the
classifier handles natively.
"""

from __future__ import annotations

import io
import pickle
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import ndimage

from detection import features
from detection.errors import DetectionError
from detection.radiometry import fit_normalisation_with
from detection.rs_params import RasterDetectorParams

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier

#: Bump when the features, the file layout or what the scores mean change: older files are
#: refused, not misread. 3: trained on change-enriched samples (`CHANGED_SHARE`), so scores
#: are no longer the share of pixels like it that changed. 4: a `Committee` of fits.
MODEL_FORMAT = "tianxun-raster-change-model/4"
FEATURE_SCALES_PX = (0.0, 1.0, 2.0, 4.0)
#: Wider neighbourhoods: a building or a dug plot is judged against its surroundings.
CONTEXT_SCALES_PX = (8.0, 16.0)
#: Windows of the local-structure and gradient-agreement features, in pixels.
STRUCTURE_SCALES_PX = (2.0, 4.0)
VISIBLE = ("red", "green", "blue")
INDEX_NAMES = ("ndvi", "ndwi", "bare")


@dataclass(frozen=True)
class TrainingPair:
    """One labelled pair on one grid.

    Attributes
    ----------
    before, after : ndarray of shape (rows, cols, bands), float32
    valid : ndarray of shape (rows, cols), bool
    change : ndarray of shape (rows, cols), bool
    labelled : ndarray of shape (rows, cols), bool
        Pixels whose label is known (change or no change).
    band_roles : tuple of str or None
    """

    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    change: np.ndarray
    labelled: np.ndarray
    band_roles: tuple[str | None, ...] | None = None


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    return image if sigma == 0 else ndimage.gaussian_filter(image, sigma)


def pixel_features(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    roles: Sequence[str | None],
    noise: np.ndarray,
) -> np.ndarray:
    """Per-pixel feature stack for the classifier.

    Parameters
    ----------
    before, after : ndarray of shape (rows, cols, bands), float32
        After already normalised into before units.
    valid : ndarray of shape (rows, cols), bool
    roles : sequence of str or None
    noise : ndarray of shape (bands,)
        Unchanged-difference scale per band.

    Returns
    -------
    ndarray of shape (rows, cols, features), float32
        The same number of features whatever the bands; NaN where a band is absent.
    """
    rows, cols, _ = before.shape
    difference = features.standardised_difference(before, after, valid, noise)
    columns: list[np.ndarray] = list(features.change_magnitudes(difference, FEATURE_SCALES_PX))
    spread = noise.astype(np.float32) / 0.03
    visible = [roles.index(r) if r in roles else None for r in VISIBLE]
    for index in visible:
        for sigma in FEATURE_SCALES_PX[1:3]:
            if index is None:
                columns += [np.full((rows, cols), np.nan, np.float32)] * 3
                continue
            columns.append(_smooth(difference[:, :, index], sigma))
            columns.append(_smooth(before[:, :, index] / spread[index], sigma))
            columns.append(_smooth(after[:, :, index] / spread[index], sigma))
    indices_b = features.spectral_indices(before, roles)
    indices_a = features.spectral_indices(after, roles)
    for name in INDEX_NAMES:
        if name in indices_b:
            columns += [
                _smooth(indices_b[name], 1.0),
                _smooth(indices_a[name], 1.0),
                _smooth(indices_a[name] - indices_b[name], 2.0),
            ]
        else:
            columns += [np.full((rows, cols), np.nan, np.float32)] * 3
    scale = float(np.mean(noise))
    edges_b = features.edge_strength(before.mean(axis=2)) / scale
    edges_a = features.edge_strength(after.mean(axis=2)) / scale
    columns += [
        _smooth(edges_b, 2.0),
        _smooth(edges_a, 2.0),
        _smooth(np.abs(edges_a - edges_b), 4.0),
    ]
    columns += context_features(before, after, valid, difference, noise)
    return np.stack([c.astype(np.float32, copy=False) for c in columns], axis=2)


def context_features(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    difference: np.ndarray,
    noise: np.ndarray,
) -> list[np.ndarray]:
    """Neighbourhood features: wide change magnitudes, local contrast and pattern agreement.

    Seasonal and illumination change alter levels over whole fields; built and dug change
    alters the local pattern. These let the classifier tell the two apart.
    """
    columns = list(features.change_magnitudes(difference, CONTEXT_SCALES_PX))
    scale = float(np.mean(noise))
    gray_before = before.mean(axis=2)
    gray_after = np.where(valid, after.mean(axis=2), gray_before)
    for sigma in STRUCTURE_SCALES_PX:
        # One date's noise is about half the noise of the difference of two dates.
        columns += features.local_structure(gray_before, gray_after, sigma=sigma, floor=0.5 * scale)
    for sigma in STRUCTURE_SCALES_PX:
        columns.append(
            features.gradient_agreement(gray_before, gray_after, sigma=sigma, floor=scale)
        )
    return columns


#: Context each tile needs: the widest Gaussian reaches TRUNCATE sigmas.
FEATURE_HALO_PX = int(features.TRUNCATE * max(CONTEXT_SCALES_PX) + 0.5) + 2


#: Fits averaged into one model, and the share of the features each split of theirs may use.
#: One fit's scores move by 0.01–0.02 of F1 on a dataset when a few of its training samples
#: change; fits that each choose among their own random half of the features at every split,
#: averaged, vary less. Each is fitted on all the samples, as the one fit was, so the model
#: stays as sure of its training data and the in-sample threshold still suits it (a committee
#: of fits on parts of the pairs was less sure, and its threshold fell; RESULTS.md).
COMMITTEE_SIZE = 3
FEATURE_SHARE = 0.5


class Committee:
    """Classifiers fitted on the same samples with different random states, their change
    probabilities averaged."""

    def __init__(self, members: Sequence[HistGradientBoostingClassifier]) -> None:
        self.members = tuple(members)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Mean over the members of their class probabilities, shape (samples, 2)."""
        return np.mean([member.predict_proba(x) for member in self.members], axis=0)


def fit_committee(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> Committee:
    """`COMMITTEE_SIZE` gradient-boosted fits on all of (x, y), random states seed, seed + 1…"""
    # Imported here: scikit-learn costs a process ~100 MB, and only fitting needs it named
    # (a stored model imports it as it unpickles).
    from sklearn.ensemble import HistGradientBoostingClassifier

    return Committee(
        [
            HistGradientBoostingClassifier(
                max_iter=200,
                learning_rate=0.1,
                max_leaf_nodes=31,
                l2_regularization=1.0,
                max_features=FEATURE_SHARE,
                random_state=seed + index,
            ).fit(x, y)
            for index in range(COMMITTEE_SIZE)
        ]
    )


@dataclass(eq=False)
class RasterChangeModel:
    """A fitted classifier and the probability thresholds it decides with.

    Attributes
    ----------
    classifier : Committee
    strong, weak : float
        Change probability thresholds (strong seeds, weak growth), fractions.
    trained_on : tuple of str
        Names of the pairs it learned from, so evaluations can prove they left them out.
    """

    classifier: Committee
    strong: float = 0.5
    weak: float = 0.35
    trained_on: tuple[str, ...] = field(default_factory=tuple)
    halo_px: int = FEATURE_HALO_PX

    def score(
        self,
        before: np.ndarray,
        after: np.ndarray,
        valid: np.ndarray,
        roles: Sequence[str | None],
        noise: np.ndarray,
    ) -> np.ndarray:
        """Change probability per pixel, shape (rows, cols), float32; 0 where invalid."""
        stack = pixel_features(before, after, valid, roles, noise)
        flat = stack.reshape(-1, stack.shape[2])
        probability = self.classifier.predict_proba(flat)[:, 1].reshape(valid.shape)
        return np.where(valid, probability, 0.0).astype(np.float32)

    def thresholds(self) -> tuple[float, float]:
        return self.strong, self.weak

    def to_bytes(self) -> bytes:
        """A versioned serialisation (only load files you produced yourself: it is a pickle)."""
        buffer = io.BytesIO()
        pickle.dump({"format": MODEL_FORMAT, "model": self}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> RasterChangeModel:
        """Load a model written by `to_bytes`, refusing other formats and versions."""
        try:
            payload = pickle.loads(data)  # operator-supplied model files only
        except Exception as error:
            raise DetectionError(
                f"the model file cannot be read ({error}); train one with "
                "`tianxun detector train DATASET_ROOT --out MODEL`"
            ) from error
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else type(payload)
            raise DetectionError(
                f"the model file has format {found!r}, this version reads {MODEL_FORMAT!r}; "
                "retrain it with `tianxun detector train`"
            )
        model = payload["model"]
        assert isinstance(model, cls)
        return model


class PairSamples(NamedTuple):
    """Training samples drawn from one pair.

    Attributes
    ----------
    features : ndarray of shape (pixels, features), float32
    change : ndarray of shape (pixels,), bool
    weight : ndarray of shape (pixels,), float64
        Labelled pixels of the pair each sample stands for (of its own class), so that
        scores over the samples estimate scores over the pair's pixels.
    """

    features: np.ndarray
    change: np.ndarray
    weight: np.ndarray


#: Share of each pair's samples drawn from its changed pixels (while it has enough). Change
#: covers 0.3 % to 64 % of a pair: drawn uniformly, a pair with little change would teach the
#: classifier almost nothing of what change looks like there. A half made the threshold, one
#: for all pairs, too low for those with seasonal false alarms (OSCD).
CHANGED_SHARE = 0.25


def pair_samples(
    pair: TrainingPair, params: RasterDetectorParams, per_pair: int, rng: np.random.Generator
) -> PairSamples:
    """Features, labels and weights of up to `per_pair` labelled pixels of a pair.

    `CHANGED_SHARE` of them are changed pixels drawn at random (all of them when the pair
    has fewer), the rest unchanged ones.
    """
    roles = features.resolve_roles(pair.band_roles, pair.before.shape[2])
    # Radiometry is fitted on every valid pixel, labelled or not, as the detector does when it
    # scores: a partly labelled scene would otherwise give its features other units.
    step = max(1, int(np.sqrt(pair.valid.size / params.sample_pixels)))
    valid = pair.valid[::step, ::step]
    normalisation = fit_normalisation_with(
        pair.before[::step, ::step][valid], pair.after[::step, ::step][valid], params
    )
    after = normalisation.apply(pair.after)
    stack = pixel_features(pair.before, after, pair.valid, roles, normalisation.noise)
    known = pair.valid & pair.labelled
    changed = np.flatnonzero(known & pair.change)
    unchanged = np.flatnonzero(known & ~pair.change)
    n_changed = min(int(per_pair * CHANGED_SHARE), changed.size)
    n_unchanged = min(per_pair - n_changed, unchanged.size)
    chosen = [
        rng.choice(pixels, size=count, replace=False)
        for pixels, count in ((changed, n_changed), (unchanged, n_unchanged))
    ]
    flat = np.concatenate(chosen)
    weight = np.repeat(
        [changed.size / max(n_changed, 1), unchanged.size / max(n_unchanged, 1)],
        [n_changed, n_unchanged],
    )
    return PairSamples(stack.reshape(-1, stack.shape[2])[flat], pair.change.ravel()[flat], weight)


#: Labelled pixels drawn from each pair by default: enough for the classifier, and a
#: leave-one-pair-out run over ~30 pairs stays within minutes on one core.
PIXELS_PER_PAIR = 10_000


def collect_samples(
    pairs: Iterable[tuple[str, TrainingPair]],
    *,
    params: RasterDetectorParams | None = None,
    pixels_per_pair: int = PIXELS_PER_PAIR,
    seed: int = 0,
) -> dict[str, PairSamples]:
    """Training samples of each pair, keyed by its name (see `pair_samples`).

    Each pair draws its pixels from a generator seeded by its name, so it gives the same
    samples whichever other pairs are trained beside it: a cross-validated model is the
    trained model minus one pair, not another random draw.
    """
    params = params or RasterDetectorParams()
    samples = {}
    for name, pair in pairs:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        samples[name] = pair_samples(pair, params=params, per_pair=pixels_per_pair, rng=rng)
    return samples


def fit_model(
    pairs: Iterable[tuple[str, TrainingPair]],
    *,
    params: RasterDetectorParams | None = None,
    pixels_per_pair: int = PIXELS_PER_PAIR,
    seed: int = 0,
) -> RasterChangeModel:
    """Train the scorer on labelled pairs.

    Parameters
    ----------
    pairs : iterable of (name, TrainingPair)
    pixels_per_pair : int
        Labelled pixels drawn from each pair (bounds time and memory).

    Raises
    ------
    DetectionError
        No pairs, or no changed / no unchanged pixel among them.
    """
    samples = collect_samples(pairs, params=params, pixels_per_pair=pixels_per_pair, seed=seed)
    return fit_samples(list(samples.values()), names=list(samples), seed=seed)


def fit_samples(
    samples: Sequence[PairSamples], *, names: Sequence[str], seed: int = 0
) -> RasterChangeModel:
    """Train on samples from `pair_samples` (one `PairSamples` per training pair).

    The classifier learns from the samples as drawn (`CHANGED_SHARE` of them change where
    pairs allow); the threshold is chosen with each sample weighted by the pixels it
    stands for, so it suits the share of change the pairs really have.
    """
    ys = [pair.change for pair in samples]
    if not ys or len(np.unique(np.concatenate(ys))) < 2:
        raise DetectionError(
            "training needs labelled pairs with both changed and unchanged pixels; "
            "check the label/ folder and its encoding"
        )
    x_all, y_all = np.concatenate([pair.features for pair in samples]), np.concatenate(ys)
    # A feature no training pair has (NDVI when all are RGB) cannot be binned: make it constant.
    x_all[:, np.isnan(x_all).all(axis=0)] = 0.0
    classifier = fit_committee(x_all, y_all, seed=seed)
    groups = np.repeat([_collection(name) for name in names], [len(y) for y in ys])
    strong = _best_f1_threshold(
        classifier.predict_proba(x_all)[:, 1],
        y_all,
        groups,
        np.concatenate([pair.weight for pair in samples]),
    )
    return RasterChangeModel(classifier, strong=strong, weak=strong * 0.7, trained_on=tuple(names))


def fit_leaving_out(
    samples: Mapping[str, PairSamples], left_out: str, *, seed: int = 0
) -> RasterChangeModel:
    """Train on the samples of every pair but `left_out` (cross-validation by pair).

    Parameters
    ----------
    samples : mapping of str to PairSamples
        Per-pair samples from `pair_samples`, keyed by pair name.
    left_out : str
        The pair the model will be scored on; it never contributes a sample.
    """
    names = [name for name in samples if name != left_out]
    return fit_samples([samples[name] for name in names], names=names, seed=seed)


def _collection(name: str) -> str:
    """The dataset a pair named "dataset/pair" belongs to (the name itself without one)."""
    return name.split("/", 1)[0]


def _best_f1_threshold(
    probability: np.ndarray, truth: np.ndarray, groups: np.ndarray, weight: np.ndarray
) -> float:
    """The threshold with the best mean over datasets of each one's pooled F1.

    Scored per dataset, not pooled over all samples, because results are compared that
    way: pooling would let the datasets with the most change choose for all of them. Each
    sample counts for the pixels it stands for (`PairSamples.weight`).
    """
    best, best_f1 = 0.5, -1.0
    for threshold in np.arange(0.05, 0.951, 0.05):
        predicted = probability >= threshold
        f1s = []
        for group in np.unique(groups):
            member = groups == group
            tp = weight[predicted & truth & member].sum()
            total = weight[predicted & member].sum() + weight[truth & member].sum()
            f1s.append(2.0 * tp / max(total, 1e-9))
        f1 = float(np.mean(f1s))
        if f1 > best_f1:
            best, best_f1 = float(threshold), f1
    return best
