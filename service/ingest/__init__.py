"""Ingest: uploads of camera snapshots and remote-sensing tiles into content-addressed scenes."""
