"""A seeded farmland world with exact ground truth: tiles, camera snapshots, layers, events."""

from simulator.errors import OutputDirError, SimulatorError, SimulatorParamsError
from simulator.params import WorldParams
from simulator.raster import TileRender, render_tile
from simulator.snapshot import Snapshot, render_snapshot, snapshot_mask
from simulator.surface import render_surface, truth_mask
from simulator.world import World, build_world
from simulator.write import WorldSummary, generate_world

__all__ = [
    "OutputDirError",
    "SimulatorError",
    "SimulatorParamsError",
    "Snapshot",
    "TileRender",
    "World",
    "WorldParams",
    "WorldSummary",
    "build_world",
    "generate_world",
    "render_snapshot",
    "render_surface",
    "render_tile",
    "snapshot_mask",
    "truth_mask",
]
