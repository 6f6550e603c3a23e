"""Relative radiometric normalisation between dates: IR-MAD pseudo-invariant pixels + regression."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import linalg, special
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from detection.rs_params import RasterDetectorParams

#: The pseudo-invariant set is at least this fraction of the sample (the most invariant by
#: IR-MAD probability; under no change, P > 0.9 holds for 10 % of pixels by construction).
MIN_INVARIANT_FRACTION = 0.1
MIN_GAIN = 0.2
#: Gains outside this range mean the regression fitted change, not light.
PLAUSIBLE_GAIN = (0.5, 2.0)
#: Over truly invariant pixels each band at one date rises with the same band at the other.
#: A correlation within this many standard errors of zero (or below it) says the set holds
#: no such relation in that band, so its line fits change. Seen where most of a scene changes
#: alike between the dates (crops greening from June to July): IR-MAD, blind to any linear
#: relation, calls the change itself invariant, and the near infrared of that "invariant"
#: decile anticorrelates. A weak positive correlation is kept: a narrow invariant range under
#: sensor noise gives one.
UNRELATED_STANDARD_ERRORS = 3.0


@dataclass(frozen=True)
class Normalisation:
    """Per-band mapping of the after image into the before image's radiometry.

    Attributes
    ----------
    gain, offset : ndarray of shape (bands,)
        ``after_normalised = gain * after + offset``.
    noise : ndarray of shape (bands,)
        Scale of unchanged-pixel differences per band, in before units (never zero).
    invariant_fraction : float
        Fraction of sampled pixels judged pseudo-invariant by IR-MAD.
    """

    gain: np.ndarray
    offset: np.ndarray
    noise: np.ndarray
    invariant_fraction: float

    def apply(self, after: np.ndarray) -> np.ndarray:
        """The after image (rows, cols, bands) mapped into before units, float32."""
        return (after * self.gain.astype(np.float32) + self.offset.astype(np.float32)).astype(
            np.float32, copy=False
        )


def irmad_no_change_probability(
    before: np.ndarray, after: np.ndarray, *, iterations: int
) -> np.ndarray:
    """Iteratively reweighted MAD (Nielsen 2007): probability that each pixel is unchanged.

    Parameters
    ----------
    before, after : ndarray of shape (pixels, bands), float
        The same pixels at both dates.

    Returns
    -------
    ndarray of shape (pixels,), float64 in [0, 1]
        Chi-square survival probability of the standardised MAD variates.
    """
    x, y = before.astype(np.float64), after.astype(np.float64)
    bands = x.shape[1]
    both = np.hstack([x, y])
    weights = np.ones(len(x))
    probability = weights
    for _ in range(iterations):
        joint, centred = _weighted_covariance(both, weights)
        joint += 1e-9 * np.eye(2 * bands)
        sxx, syy, sxy = joint[:bands, :bands], joint[bands:, bands:], joint[:bands, bands:]
        # Canonical correlation: sxy syy^-1 syx a = rho^2 sxx a.
        rho2, a = linalg.eigh(sxy @ linalg.solve(syy, sxy.T), sxx)
        rho = np.sqrt(np.clip(rho2, 0.0, 1.0))
        b = linalg.solve(syy, sxy.T @ a) / np.maximum(rho, 1e-12)
        # Orient each pair positively correlated so the MAD variate is a difference.
        b *= np.sign(np.sum(a * (sxy @ b), axis=0, keepdims=True) + 1e-300)
        # The MAD variates xc @ a - yc @ b in one product.
        mad = centred @ np.vstack([a, -b])
        variance = np.maximum(2.0 * (1.0 - rho), 1e-9)
        chi2 = np.square(mad, out=mad) @ (1.0 / variance)
        probability = special.chdtrc(bands, chi2)
        weights = probability + 1e-12
    return np.asarray(probability)


def _weighted_covariance(samples: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.cov(samples.T, aweights=weights)` and the samples centred on their weighted mean,
    without `np.cov`'s copies and second centring."""
    total = weights.sum()
    centred = samples - weights @ samples / total
    covariance = (centred.T * weights) @ centred
    covariance /= total - (weights @ weights) / total
    return covariance, centred


def fit_normalisation_with(
    before: np.ndarray, after: np.ndarray, params: RasterDetectorParams
) -> Normalisation:
    """`fit_normalisation` with the raster detector's settings from `params`."""
    return fit_normalisation(
        before,
        after,
        iterations=params.irmad_iterations,
        invariant_probability=params.invariant_probability,
        noise_floor_fraction=params.noise_floor_fraction,
    )


def fit_normalisation(
    before: np.ndarray,
    after: np.ndarray,
    *,
    iterations: int,
    invariant_probability: float,
    noise_floor_fraction: float,
) -> Normalisation:
    """Fit per-band gain/offset on IR-MAD pseudo-invariant pixels.

    Parameters
    ----------
    before, after : ndarray of shape (pixels, bands), float
        A sample of valid pixels at both dates (a regular lattice over the image).

    Returns
    -------
    Normalisation
    """
    bands = before.shape[1]
    # Its products are thin (pixels × 2·bands by 2·bands): waking BLAS threads for each cost
    # three times the work itself here (0.16–0.25 s against 0.073 s on one thread).
    with threadpool_limits(limits=1, user_api="blas"):
        probability = irmad_no_change_probability(before, after, iterations=iterations)
    invariant = probability > invariant_probability
    if invariant.mean() < MIN_INVARIANT_FRACTION:
        invariant = probability >= np.quantile(probability, 1.0 - MIN_INVARIANT_FRACTION)
    gain, offset, correlation = np.ones(bands), np.zeros(bands), np.ones(bands)
    for band in range(bands):
        x, y = after[invariant, band], before[invariant, band]
        gain[band], offset[band] = _robust_line(x, y)
        correlation[band] = _correlation(x, y)
    implausible = (gain < PLAUSIBLE_GAIN[0]) | (gain > PLAUSIBLE_GAIN[1])
    # Pearson's r of n unrelated samples has a standard error of about 1/√n.
    unrelated = correlation <= UNRELATED_STANDARD_ERRORS / np.sqrt(max(int(invariant.sum()), 1))
    if np.any(implausible | unrelated):
        # The "invariant" pixels were not (much change, or another sensor): a gain fitted on
        # them would fit the change itself, so compare the dates as they are.
        gain, offset = np.ones(bands), np.zeros(bands)
        invariant = np.ones(len(before), dtype=bool)
    residual = after[invariant] * gain + offset - before[invariant]
    mad_scale = 1.4826 * np.median(np.abs(residual - np.median(residual, axis=0)), axis=0)
    low, high = np.percentile(before, [2.0, 98.0], axis=0)
    floor = np.maximum(noise_floor_fraction * (high - low), 1e-6)
    return Normalisation(
        gain=gain,
        offset=offset,
        noise=np.maximum(mad_scale, floor),
        invariant_fraction=float(invariant.mean()),
    )


def _robust_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Reduced-major-axis fit y ≈ gain·x + offset, refitted without the worst 10 % once.

    Both dates are noisy, so an ordinary least-squares gain would be biased towards zero
    (regression dilution); the major axis ratio of spreads is not. The gain is kept within
    a factor of 5 of unity: beyond that the "invariant" pixels were not invariant.
    """
    gain, offset = _major_axis(x, y)
    residual = np.abs(y - (gain * x + offset))
    keep = residual <= np.quantile(residual, 0.9)
    if keep.sum() > 2:
        gain, offset = _major_axis(x[keep], y[keep])
    return gain, offset


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of x and y: 1 when both are constant (an offset fits them exactly), 0 when
    only one is (no line to speak of)."""
    spread_x, spread_y = float(np.std(x)), float(np.std(y))
    if spread_x == 0 or spread_y == 0:
        return 1.0 if spread_x == spread_y else 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (spread_x * spread_y))


def _major_axis(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    spread_x, spread_y = float(np.std(x)), float(np.std(y))
    gain = spread_y / spread_x if spread_x > 0 and spread_y > 0 else 1.0
    gain = min(max(gain, MIN_GAIN), 1.0 / MIN_GAIN)
    return gain, float(np.mean(y) - gain * np.mean(x))
