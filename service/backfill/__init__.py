"""Batch backfills over past imagery: plan, compute on Dask, write as live ingest does, trace."""
