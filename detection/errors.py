"""Errors raised by the detectors; each message says what is wrong and what to do."""


class DetectionError(Exception):
    """Base class: the input cannot be analysed as given."""


class InvalidRasterError(DetectionError):
    """A raster or image that cannot be read safely (format, size, georeferencing, values)."""


class RegistrationError(DetectionError):
    """Two images could not be brought onto one grid (no overlap, too much shift)."""


class CalibrationError(DetectionError):
    """A camera calibration that is unusable (too few or collinear points, error too large)."""
