"""One pass over a window's full-resolution samples for the change score's inputs.

`features.score_inputs` needs, per band, the normalised difference halved onto the coarse
grid, and across bands the root mean square of the differences and the before date's mean.
As NumPy operations that was about seven passes a band over full-resolution float32 planes,
and the score was bound by memory traffic, not arithmetic. Compiled with Numba, each sample
is read once: a pair of rows is taken through every band while the per-pixel sums stay in
cache, and only the halved differences and the finished magnitude are written.

Every pixel is computed with the same float32 operations in the same order as the NumPy
expressions they replace (no fused multiply-add: Numba leaves floating-point contraction
off unless asked), so a pixel's value does not depend on the window that holds it.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided


@numba.njit(nogil=True, cache=True)
def _difference_row(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    scales: np.ndarray,
    out: np.ndarray,
    squares: np.ndarray,
    before_sum: np.ndarray,
) -> None:
    """One band's row of (gain·after + offset − before)/noise into `out`, added to the row's
    sums of squares and of before samples; 0 without data.

    Branch-free (data or not is a select), which the compiler turns into vector
    instructions; a branch a pixel kept it scalar and 25 % slower.
    """
    after_scale, before_scale, offset = scales[0], scales[1], scales[2]
    zero = np.float32(0.0)
    for col in range(valid.shape[0]):
        sample = np.float32(before[col])
        difference = np.float32(after[col]) * after_scale
        difference = difference - sample * before_scale
        difference = difference + offset
        difference = difference if valid[col] else zero
        out[col] = difference
        squares[col] += difference * difference
        before_sum[col] += sample if valid[col] else zero


@numba.njit(nogil=True, cache=True)
def _halve_rows(upper: np.ndarray, lower: np.ndarray, out: np.ndarray) -> None:
    """Means of 2 × 2 blocks of two rows, as `features.halve` sums them (row pairs first);
    an odd last column is repeated."""
    cols = upper.shape[0]
    quarter = np.float32(0.25)
    for coarse_col in range(out.shape[0]):
        left = 2 * coarse_col
        right = min(left + 1, cols - 1)
        out[coarse_col] = ((upper[left] + lower[left]) + (upper[right] + lower[right])) * quarter


@numba.njit(nogil=True, cache=True)
def score_inputs(
    before: np.ndarray,
    before_strides: tuple[int, int],
    after: np.ndarray,
    after_strides: tuple[int, int],
    valid: np.ndarray,
    scales: np.ndarray,
    differences: np.ndarray,
    unsmoothed: np.ndarray,
    grey: np.ndarray,
) -> None:
    """`features.score_inputs` in one pass over the samples.

    Parameters
    ----------
    before, after : ndarray, 1-D
        A window's samples as stored (any real dtype), from its first to its last, with the
        distance between bands and between rows in samples (`flat`).
    valid : ndarray of shape (rows, cols), bool
    scales : ndarray of shape (bands, 3), float32
        gain/noise, 1/noise and offset/noise of each band.
    differences : ndarray of shape (bands, (rows + 1) // 2, (cols + 1) // 2), float32
        Receives each band's difference halved (`features.halve`: an odd last row or column
        repeated).
    unsmoothed : ndarray of shape (rows, cols), float32
        Receives the root mean square over the bands of the differences.
    grey : ndarray of shape ((rows + 1) // 2, (cols + 1) // 2), float32
        Receives the before date's band mean, halved (`features.halve` of the sum, divided).
    """
    rows, cols = valid.shape
    bands = scales.shape[0]
    count = np.float32(bands)
    difference = np.empty((2, cols), dtype=np.float32)
    squares = np.empty((2, cols), dtype=np.float32)
    before_sum = np.empty((2, cols), dtype=np.float32)
    for coarse_row in range(grey.shape[0]):
        row = 2 * coarse_row
        pair = min(2, rows - row)  # an odd last row is halved with itself
        squares[:] = 0.0
        before_sum[:] = 0.0
        for band in range(bands):
            for offset in range(pair):
                before_start = band * before_strides[0] + (row + offset) * before_strides[1]
                after_start = band * after_strides[0] + (row + offset) * after_strides[1]
                _difference_row(
                    before[before_start : before_start + cols],
                    after[after_start : after_start + cols],
                    valid[row + offset],
                    scales[band],
                    difference[offset],
                    squares[offset],
                    before_sum[offset],
                )
            _halve_rows(difference[0], difference[pair - 1], differences[band, coarse_row])
        for offset in range(pair):
            out = unsmoothed[row + offset]
            for col in range(cols):
                out[col] = np.sqrt(squares[offset, col] / count)
        _halve_rows(before_sum[0], before_sum[pair - 1], grey[coarse_row])
        for coarse_col in range(grey.shape[1]):
            grey[coarse_row, coarse_col] /= count


def flat(planes: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Band planes (bands, rows, cols) as `score_inputs` takes them: a read-only 1-D view
    running from their first sample to their last, and the distances between bands and
    between rows in samples.

    A window of larger planes is not contiguous, and compiled code indexing it through
    strides it cannot know in advance is about four times slower than over contiguous runs;
    its rows are contiguous, and the view spans only memory the planes' own array holds.
    Planes whose rows are not contiguous, or that run backwards, are copied first.
    """
    itemsize = planes.itemsize
    band_stride, row_stride, col_stride = planes.strides
    if (
        col_stride != itemsize
        or min(band_stride, row_stride) < 0
        or band_stride % itemsize
        or row_stride % itemsize
    ):
        planes = np.ascontiguousarray(planes)
        band_stride, row_stride, _ = planes.strides
    bands, rows, cols = planes.shape
    strides = (band_stride // itemsize, row_stride // itemsize)
    span = (bands - 1) * strides[0] + (rows - 1) * strides[1] + cols
    return as_strided(planes, shape=(span,), strides=(itemsize,), writeable=False), strides
