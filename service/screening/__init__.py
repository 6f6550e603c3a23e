"""The "3+X" machine review of detections against the versioned legal layers, and priority."""
