"""Parameters of the small worlds the simulator tests generate."""

from __future__ import annotations

from simulator import WorldParams

TINY = WorldParams(
    seed=3, area_km2=0.36, epochs=3, cameras=2, snapshots_per_epoch=2, image_size=(640, 360)
)
