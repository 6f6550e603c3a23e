"""Optional trained scorer: a gradient-boosted pixel classifier on multi-scale change features.

Learned from labelled pairs (A/ B/ label/) or from inspectors' verdicts rasterised into masks.
Features are band-agnostic (change magnitudes, visible bands, indices where bands allow, edges),
so one model serves RGB and multispectral pairs; a missing index is NaN, which the
classifier handles natively.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier

from detection import features
from detection.errors import DetectionError
from detection.radiometry import fit_normalisation
from detection.rs_params import RasterDetectorParams

#: Bump when the features or the file layout change: older files are refused, not misread.
MODEL_FORMAT = "tianxun-raster-change-model/1"
FEATURE_SCALES_PX = (0.0, 1.0, 2.0, 4.0)
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
    return np.stack([c.astype(np.float32, copy=False) for c in columns], axis=2)


FEATURE_HALO_PX = int(features.TRUNCATE * 5.0 + 0.5) + 2


@dataclass(eq=False)
class RasterChangeModel:
    """A fitted classifier and the probability thresholds it decides with.

    Attributes
    ----------
    classifier : HistGradientBoostingClassifier
    strong, weak : float
        Change probability thresholds (strong seeds, weak growth), fractions.
    trained_on : tuple of str
        Names of the pairs it learned from, so evaluations can prove they left them out.
    """

    classifier: HistGradientBoostingClassifier
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


def pair_samples(
    pair: TrainingPair, params: RasterDetectorParams, per_pair: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    roles = features.resolve_roles(pair.band_roles, pair.before.shape[2])
    usable = pair.valid & pair.labelled
    step = max(1, int(np.sqrt(usable.size / params.sample_pixels)))
    normalisation = fit_normalisation(
        pair.before[::step, ::step][usable[::step, ::step]],
        pair.after[::step, ::step][usable[::step, ::step]],
        iterations=params.irmad_iterations,
        invariant_probability=params.invariant_probability,
        noise_floor_fraction=params.noise_floor_fraction,
    )
    after = normalisation.apply(pair.after)
    stack = pixel_features(pair.before, after, pair.valid, roles, normalisation.noise)
    rows, cols = np.nonzero(usable)
    chosen = rng.choice(rows.size, size=min(per_pair, rows.size), replace=False)
    return stack[rows[chosen], cols[chosen]], pair.change[rows[chosen], cols[chosen]]


def fit_model(
    pairs: Iterable[tuple[str, TrainingPair]],
    *,
    params: RasterDetectorParams | None = None,
    pixels_per_pair: int = 20_000,
    seed: int = 0,
) -> RasterChangeModel:
    """Train the scorer on labelled pairs.

    Parameters
    ----------
    pairs : iterable of (name, TrainingPair)
    pixels_per_pair : int
        Labelled pixels drawn at random from each pair (bounds time and memory).

    Raises
    ------
    DetectionError
        No pairs, or no changed / no unchanged pixel among them.
    """
    params = params or RasterDetectorParams()
    rng = np.random.default_rng(seed)
    names, xs, ys = [], [], []
    for name, pair in pairs:
        x, y = pair_samples(pair, params=params, per_pair=pixels_per_pair, rng=rng)
        names.append(name)
        xs.append(x)
        ys.append(y)
    return fit_samples(xs, ys, names=names, seed=seed)


def fit_samples(
    xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], *, names: Sequence[str], seed: int = 0
) -> RasterChangeModel:
    """Train on feature samples from `pair_samples` (one array pair per training pair)."""
    if not ys or len(np.unique(np.concatenate(ys))) < 2:
        raise DetectionError(
            "training needs labelled pairs with both changed and unchanged pixels; "
            "check the label/ folder and its encoding"
        )
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    # A feature no training pair has (NDVI when all are RGB) cannot be binned: make it constant.
    x_all[:, np.isnan(x_all).all(axis=0)] = 0.0
    classifier = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, max_leaf_nodes=31, l2_regularization=1.0, random_state=seed
    )
    classifier.fit(x_all, y_all)
    strong = _best_f1_threshold(classifier.predict_proba(x_all)[:, 1], y_all)
    return RasterChangeModel(classifier, strong=strong, weak=strong * 0.7, trained_on=tuple(names))


def _best_f1_threshold(probability: np.ndarray, truth: np.ndarray) -> float:
    best, best_f1 = 0.5, -1.0
    for threshold in np.arange(0.2, 0.8, 0.05):
        predicted = probability >= threshold
        tp = int(np.count_nonzero(predicted & truth))
        total = int(np.count_nonzero(predicted)) + int(np.count_nonzero(truth))
        f1 = 2.0 * tp / max(total, 1)
        if f1 > best_f1:
            best, best_f1 = float(threshold), f1
    return best
