"""Registration of a camera snapshot onto its preset reference: phase correlation, then features."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy import fft
from skimage.feature import ORB, match_descriptors
from skimage.measure import ransac
from skimage.transform import ProjectiveTransform, warp

from detection.camera_grid import shift_image, shift_valid_mask
from detection.filters import box_mean, gaussian


@dataclass(frozen=True)
class RegisterParams:
    """How hard to try before declaring a camera moved.

    Attributes
    ----------
    max_shift : float
        Largest sway or jitter accepted from phase correlation, fraction of the image width.
    min_correlation : float
        Smallest normalised correlation of high-passed images after alignment, fraction.
    feature_fallback : bool
        Try ORB features + RANSAC homography when phase correlation fails (slow, ~0.1 s).
    """

    max_shift: float = 0.03
    min_correlation: float = 0.2
    feature_fallback: bool = True


@dataclass(frozen=True)
class Registration:
    """The outcome of registering a snapshot onto its reference.

    Attributes
    ----------
    method : str
        ``"shift"``, ``"homography"`` or ``"failed"``.
    shift : tuple of float
        (rows, cols) translation applied to the snapshot, working pixels.
    correlation : float
        Normalised correlation of the high-passed images after alignment, fraction.
    matrix : ndarray of shape (3, 3) or None
        Snapshot-to-reference homography in (col, row) when ``method == "homography"``.
    """

    method: str
    shift: tuple[float, float]
    correlation: float
    matrix: NDArray[np.float64] | None = None


def structure_image(gray: NDArray[np.float32]) -> NDArray[np.float32]:
    """High-pass a grayscale image (rows, cols) so that exposure and haze do not steer alignment."""
    # Band-pass: the fine end drops sensor noise and aliasing that half a pixel decorrelates.
    detail = gaussian(gray, 1.0)
    detail -= box_mean(gray, 9)
    detail /= float(detail.std()) + 1e-6
    return detail.astype(np.float32, copy=False)


def _correlation(a: NDArray[np.float32], b: NDArray[np.float32], valid: NDArray[np.bool_]) -> float:
    x, y = a[valid], b[valid]
    if x.size < 100:
        return 0.0
    x = x - x.mean()
    y = y - y.mean()
    denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


@lru_cache(maxsize=8)
def _window(shape: tuple[int, int]) -> NDArray[np.float32]:
    # The same few working resolutions come back frame after frame.
    window = np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)
    window.flags.writeable = False
    return window


def _bounded_peak(correlation: NDArray[np.floating], limit: int) -> tuple[float, float]:
    # Farmland is nearly periodic (parcels, furrows), so the global correlation peak can sit one
    # parcel away; sway and jitter are small, so only shifts up to `limit` are considered.
    # They and their neighbours are gathered around zero shift with wrap-around: the same
    # values `fftshift` would put there, without shifting the whole correlation.
    centre = np.array(correlation.shape) // 2
    first = [max(centre[axis] - limit, 1) - 1 for axis in (0, 1)]
    stop = [min(centre[axis] + limit + 1, correlation.shape[axis] - 1) + 1 for axis in (0, 1)]
    row_ids, col_ids = (
        (np.arange(first[axis], stop[axis]) - centre[axis]) % correlation.shape[axis]
        for axis in (0, 1)
    )
    centred = correlation[np.ix_(row_ids, col_ids)]
    window = centred[1:-1, 1:-1]
    peak_row, peak_col = np.unravel_index(int(np.argmax(window)), window.shape)
    row, col = peak_row + 1, peak_col + 1
    offsets = []
    for before, at, after in (
        (centred[row - 1, col], centred[row, col], centred[row + 1, col]),
        (centred[row, col - 1], centred[row, col], centred[row, col + 1]),
    ):
        curvature = before - 2 * at + after
        offsets.append(0.5 * (before - after) / curvature if curvature < 0 else 0.0)
    return (
        float(row + first[0] - centre[0] + offsets[0]),
        float(col + first[1] - centre[1] + offsets[1]),
    )


def _by_phase(
    reference: NDArray[np.float32],
    moving: NDArray[np.float32],
    judged: NDArray[np.bool_],
    params: RegisterParams,
) -> Registration:
    window = _window(reference.shape)
    spectrum = fft.rfft2(reference * window)
    spectrum *= np.conj(fft.rfft2(moving * window))
    correlation = fft.irfft2(spectrum, s=reference.shape)
    limit = max(1, int(params.max_shift * reference.shape[1]))
    drow, dcol = _bounded_peak(correlation, limit)
    aligned = shift_image(moving, (drow, dcol))
    valid = shift_valid_mask(reference.shape, (drow, dcol)) & judged
    return Registration("shift", (drow, dcol), _correlation(reference, aligned, valid))


def _by_features(
    reference: NDArray[np.float32], moving: NDArray[np.float32]
) -> Registration | None:
    # Half resolution and few scales keep this fallback near 0.1 s; it only runs when the
    # shift model fails (a PTZ preset that came back rotated or zoomed).
    orb = ORB(n_keypoints=250, fast_threshold=0.05, n_scales=4, downscale=1.4)
    points, descriptors = [], []
    for image in (reference[::2, ::2], moving[::2, ::2]):
        try:
            orb.detect_and_extract(image)
        except RuntimeError:  # too few keypoints in a blank or foggy frame
            return None
        points.append(orb.keypoints[:, ::-1] * 2.0)  # half-res (row, col) → (col, row)
        descriptors.append(orb.descriptors)
    matches = match_descriptors(descriptors[1], descriptors[0], cross_check=True, max_ratio=0.8)
    if len(matches) < 12:
        return None
    source, target = points[1][matches[:, 0]], points[0][matches[:, 1]]
    model, inliers = ransac(
        (source, target),
        ProjectiveTransform,
        min_samples=4,
        residual_threshold=3.0,
        max_trials=500,
        rng=0,
    )
    if model is None or inliers is None or inliers.sum() < 10:
        return None
    return Registration("homography", (0.0, 0.0), 0.0, np.asarray(model.params))


def register_snapshot(
    reference: NDArray[np.float32],
    moving: NDArray[np.float32],
    *,
    judged: NDArray[np.bool_] | None = None,
    params: RegisterParams,
) -> Registration:
    """Find how the snapshot moved relative to the reference.

    Parameters
    ----------
    reference, moving : ndarray of shape (rows, cols), float32
        :func:`structure_image` of the reference and of the snapshot at working resolution.
    judged : ndarray of shape (rows, cols), bool, optional
        Where alignment quality is judged (the watched ground): the horizon and the on-screen
        text line up even when the camera points at other fields. Default: everywhere.
    params : RegisterParams
        Limits on shift and on alignment quality.

    Returns
    -------
    Registration
        ``method == "failed"`` when neither a shift nor a homography aligns them well.
    """
    judged = np.ones(reference.shape, dtype=bool) if judged is None else judged
    by_phase = _by_phase(reference, moving, judged, params)
    if by_phase.method == "shift" and by_phase.correlation >= params.min_correlation:
        return by_phase
    if params.feature_fallback:
        by_features = _by_features(reference, moving)
        if by_features is not None and by_features.matrix is not None:
            aligned = warp_image(moving, by_features)
            valid = warp_valid_mask(moving.shape, by_features) & judged
            correlation = _correlation(reference, aligned, valid)
            if correlation >= params.min_correlation:
                return Registration("homography", (0.0, 0.0), correlation, by_features.matrix)
    return Registration("failed", by_phase.shift, by_phase.correlation)


def warp_image(image: NDArray[np.float32], registration: Registration) -> NDArray[np.float32]:
    """Bring an image (rows, cols[, bands]) onto the reference grid."""
    if registration.method == "homography" and registration.matrix is not None:
        inverse = ProjectiveTransform(np.linalg.inv(registration.matrix))
        return warp(image, inverse, order=1, mode="edge", preserve_range=True).astype(np.float32)
    return shift_image(image, registration.shift)


def warp_valid_mask(shape: tuple[int, ...], registration: Registration) -> NDArray[np.bool_]:
    """Pixels (rows, cols) of the reference grid that the registered snapshot covers."""
    rows_cols = (int(shape[0]), int(shape[1]))
    if registration.method == "homography" and registration.matrix is not None:
        inverse = ProjectiveTransform(np.linalg.inv(registration.matrix))
        ones = np.ones(rows_cols, dtype=np.float32)
        return warp(ones, inverse, order=0, cval=0.0) > 0.5
    return shift_valid_mask(rows_cols, registration.shift)
