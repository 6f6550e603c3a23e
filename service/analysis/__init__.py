"""The analysis step: a validated scene paired with its reference, run through the detectors."""
