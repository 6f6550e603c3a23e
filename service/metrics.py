"""Prometheus metrics: job latency and failures from the workers, queue depth from the database.

Queue depth and age are read from the database at scrape time, so every API process reports
the same truth however many uvicorn workers there are. Job latency and failures are counted
in the worker processes; with PROMETHEUS_MULTIPROC_DIR set (one directory shared by the API
and the workers of a machine) `/metrics` aggregates them across processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.queue import queue_stats

JOB_SECONDS = Histogram(
    "tianxun_job_duration_seconds",
    "Wall time of one job attempt, from claim to completion or failure.",
    ["task", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
JOB_FAILURES = Counter(
    "tianxun_job_failures_total",
    "Failed job attempts, by task and reason (the exception type, or lease_lost).",
    ["task", "reason"],
)
JOBS_DEAD = Counter(
    "tianxun_jobs_dead_total", "Jobs moved to the dead letter by this process.", ["task"]
)
CAMERA_STATE_READS = Counter(
    "tianxun_camera_state_reads_total",
    "Camera job attempts by where the preset's detector state came from: memory (this worker "
    "process wrote it last), database (read and decoded), or none (a preset's first snapshot).",
    ["source"],
)
SCENES_INGESTED = Counter(
    "tianxun_scenes_ingested_total",
    "Accepted uploads, by scene kind and whether the bytes were new.",
    ["kind", "created"],
)


class QueueCollector(Collector):
    """Queue gauges computed from the database on each scrape."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "tianxun_queue_scrape_ok", "1 if the queue could be read from the database."
        )
        try:
            with self._factory() as session:
                stats = queue_stats(session=session)
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("tianxun_queue_jobs", "Jobs by status.", labels=["status"])
        for status, count in sorted(stats.counts.items()):
            jobs.add_metric([status], count)
        yield jobs
        yield GaugeMetricFamily("tianxun_queue_ready", "Queued jobs due now.", value=stats.ready)
        yield GaugeMetricFamily(
            "tianxun_queue_oldest_ready_age_seconds",
            "How long the oldest due job has waited (0 when none).",
            value=stats.oldest_ready_age_seconds,
        )
        yield GaugeMetricFamily(
            "tianxun_queue_expired_leases",
            "Running jobs whose worker stopped heart-beating (waiting for takeover).",
            value=stats.expired_leases,
        )


def render_metrics(factory: sessionmaker[Session]) -> bytes:
    """This process's metrics (or all processes' in multiprocess mode), then the queue's."""
    process_registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        process_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(process_registry)  # type: ignore[no-untyped-call]
    queue_registry = CollectorRegistry(auto_describe=False)
    queue_registry.register(QueueCollector(factory))
    return generate_latest(process_registry) + generate_latest(queue_registry)


router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(
        render_metrics(request.app.state.session_factory), media_type=CONTENT_TYPE_LATEST
    )
