"""Cases, one per place: opened, extended and reopened from detections; hash-chained history."""
