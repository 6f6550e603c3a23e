"""A tile's reference with its cloud filled from older tiles, before the detector sees it."""

from __future__ import annotations

import numpy as np
from affine import Affine

from detection.io.raster import Raster
from detection.rs_reference import NO_SOURCE
from service.analysis.pair import last_clear_look

ROLES = ("blue", "green", "red", "nir")
GRID = Affine(2.0, 0.0, 200_000.0, 0.0, -2.0, 3_370_000.0)  # 2 m, EPSG:32651
SIDE = 64


def tile(
    seed: int,
    *,
    nodata: np.ndarray | None = None,
    transform: Affine = GRID,
    roles: tuple[str, ...] = ROLES,
) -> Raster:
    rng = np.random.default_rng(seed)
    array = (
        np.array([400, 700, 500, 3500][: len(roles)]) + rng.normal(0, 30, (SIDE, SIDE, len(roles)))
    ).astype(np.float32)
    mask = np.zeros((SIDE, SIDE), bool) if nodata is None else nodata
    array[mask] = 0
    return Raster(array, mask, transform, "EPSG:32651", roles, "uint16")


def block(top: int, left: int, size: int) -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), bool)
    mask[top : top + size, left : left + size] = True
    return mask


def test_a_clear_reference_is_compared_as_it_is():
    reference = tile(1)
    filled, source = last_clear_look(reference, iter([tile(2)]))
    assert filled is reference and source is None


def test_the_cloud_of_the_reference_is_filled_by_the_newest_older_tile_that_saw_it():
    cloud = block(20, 20, 16)
    reference = tile(1, nodata=cloud)
    older = [tile(2, nodata=block(0, 0, 28)), tile(3)]
    filled, source = last_clear_look(reference, iter(older))
    assert source is not None and not filled.nodata.any()
    # Within the 15 m (8 px) buffer of its cloud the reference is not taken either.
    near = block(12, 12, 32)
    assert (source[~near] == 0).all()
    # The older tile's own nodata is buffered alike before it may fill.
    hidden_from_second = block(0, 0, 36)
    assert (source[near & ~hidden_from_second] == 1).all()
    assert (source[near & hidden_from_second] == 2).all()
    np.testing.assert_array_equal(filled.array[~near], reference.array[~near])


def test_older_tiles_on_another_grid_are_resampled_and_other_bands_skipped():
    cloud = block(24, 24, 12)
    reference = tile(1, nodata=cloud)
    shifted = tile(2, transform=GRID @ Affine.translation(-4, -4))  # covers the reference
    other_bands = tile(3, roles=("red", "green", "blue"))
    filled, source = last_clear_look(reference, iter([other_bands, shifted]))
    assert source is not None
    assert set(np.unique(source)) == {0, 2}
    assert NO_SOURCE not in source
    assert not filled.nodata.any()


def test_older_tiles_are_read_only_while_something_lacks_a_clear_look():
    reference = tile(1, nodata=block(30, 30, 4))
    read = []

    def older():
        for seed in (2, 3, 4):
            read.append(seed)
            yield tile(seed)

    last_clear_look(reference, older())
    assert read == [2]
