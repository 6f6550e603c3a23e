"""Tower cameras and their presets: registration and calibration."""
