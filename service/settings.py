"""Service settings, read from `TIANXUN_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIANXUN_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./tianxun.db"
    # Areas (m², mu) are computed in this projected CRS; EPSG:4549 is CGCS2000 / 3-degree
    # Gauss-Krüger CM 120°E, which covers Hangzhou.
    area_crs: str = "EPSG:4549"
    data_dir: Path = Path("./var")
    sqlite_busy_timeout_ms: int = 10_000
    # Who holds an API key is remembered this long per process (0: ask the database on every
    # request); a rotated or deactivated key may keep working that long in a running server.
    auth_cache_seconds: float = Field(5.0, ge=0)
    # FastAPI's own OpenTelemetry spans, metrics and logs for every request, for deployments
    # that run an OpenTelemetry collector; off by default because its per-request check alone
    # took 6 % of a profiled API worker's time, and the service's metrics are at /metrics.
    opentelemetry: bool = False
    log_json: bool = False
    log_level: str = "INFO"
    # Layer imports: polygons with more vertices than this are split on a grid so that the
    # spatial index stays selective.
    layer_max_vertices: int = 2_000
    # Ingest: size limits are enforced while the body streams in; path ingest reads only
    # files under these directories.
    max_snapshot_bytes: int = 20 * 2**20
    max_tile_bytes: int = 4 * 2**30
    max_snapshot_pixels: int = 40_000_000
    ingest_roots: list[Path] = []
    capture_clock_skew_seconds: float = 300.0
    # Ingest queue: a lease a heartbeat extends; failed jobs retry with exponential backoff.
    lease_seconds: float = 60.0
    max_attempts: int = 5
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 3600.0
    worker_poll_seconds: float = 1.0
    # A job preferred by one worker process (it holds the job's state in memory) is left to
    # it: an idle worker helps with it after the first delay; after the second, every worker
    # takes it in turn with its own jobs (its worker is busy or gone). See service.queue.
    job_affinity_seconds: float = Field(0.5, ge=0)
    job_affinity_limit_seconds: float = Field(30.0, ge=0)
    # Camera detector states a worker process keeps, by preset, for the preset's next job
    # (6–9 MB each for a 1080p preset with a day and a night background); a preset whose state
    # is not kept is read back from the database. `tianxun_camera_state_reads_total` tells
    # how often each happens.
    camera_states_cached: int = Field(32, ge=0)
    # How far a camera job goes on past its own snapshot: it analyses every older one still
    # waiting (it must, in capture order), then newer ones already received, completing their
    # jobs, while fewer than this many are taken. Under a backlog a preset's snapshots then
    # share one state decode, one state write and one commit.
    camera_snapshots_per_job: int = Field(16, ge=1)
    # Extra modules that register queue tasks when the worker starts (e.g. the analysis step).
    task_modules: list[str] = []
    # Analysis: reference rasters (GeoTIFF, operator-provided) for tiles that no earlier tile
    # covers; without one, the first tile of a place is its own first look.
    tile_baseline_paths: list[Path] = []
    # Screening and cases: a detection within this distance of a case seen within the window
    # joins it (one case per place); approved parcels must cover this fraction of a detection.
    case_merge_window_days: float = Field(30.0, gt=0)
    case_merge_buffer_m: float = Field(20.0, ge=0)
    min_overlap_fraction_for_approval: float = Field(0.8, gt=0, le=1)
    # A dismissal as farming activity or approved use silences that kind of alarm there.
    suppression_days: float = Field(90.0, ge=0)
    case_code_prefix: str = "TX"
    # Hours allowed in a state before the case is overdue (on-site check within a working day).
    case_due_hours: dict[str, float] = {
        "new": 24.0,
        "dispatched": 24.0,
        "verifying": 24.0,
        "confirmed": 72.0,
        "rectifying": 720.0,
    }

    # Alert feeds. SSE and webhook fan-out poll the outbox; a gap in outbox ids (a transaction
    # still running on PostgreSQL) holds later events back until it settles, at most this long.
    alert_poll_seconds: float = Field(0.25, gt=0)
    alert_heartbeat_seconds: float = Field(15.0, gt=0)
    alert_gap_max_wait_seconds: float = Field(60.0, gt=0)
    # Webhooks: retries back off exponentially (with jitter) for up to `webhook_retry_window`.
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_retry_base_seconds: float = Field(5.0, gt=0)
    webhook_retry_max_seconds: float = Field(3600.0, gt=0)
    webhook_retry_window_seconds: float = Field(86_400.0, gt=0)
    webhook_poll_seconds: float = Field(0.25, gt=0)
    webhook_concurrency: int = Field(4, ge=1)
    # Networks a webhook may target although private or loopback (CIDR, e.g. "10.20.0.0/16").
    webhook_allowed_networks: list[str] = []
    cap_sender: str = "alerts@tianxun.invalid"
    # Field evidence photos: limits like snapshots' (phones deliver up to ~50 MP); a photo's
    # EXIF time without a UTC offset is read in this time zone (IANA name).
    max_evidence_bytes: int = 25 * 2**20
    max_evidence_pixels: int = 52_000_000
    evidence_timezone: str = "Asia/Shanghai"

    @field_validator("area_crs")
    @classmethod
    def _epsg_only(cls, value: str) -> str:
        # pyproj accepts URLs and arbitrary strings; only a plain EPSG code is taken.
        if not re.fullmatch(r"EPSG:\d{4,6}", value):
            raise ValueError("area_crs must look like 'EPSG:4549'")
        return value

    @field_validator("evidence_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"evidence_timezone {value!r} is not an IANA time zone") from error
        return value


def get_settings() -> Settings:
    return Settings()
