"""Errors of the simulator; each message says what is wrong and what to do."""


class SimulatorError(Exception):
    """Base class: the world cannot be generated as asked."""


class SimulatorParamsError(SimulatorError, ValueError):
    """A WorldParams value out of its allowed range."""


class OutputDirError(SimulatorError):
    """The output directory cannot be used (not empty, not writable)."""
