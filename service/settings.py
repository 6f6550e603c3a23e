"""Service settings, read from `TIANXUN_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIANXUN_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./tianxun.db"
    # Areas (m², mu) are computed in this projected CRS; EPSG:4549 is CGCS2000 / 3-degree
    # Gauss-Krüger CM 120°E, which covers Hangzhou.
    area_crs: str = "EPSG:4549"
    data_dir: Path = Path("./var")
    sqlite_busy_timeout_ms: int = 10_000
    log_json: bool = False
    log_level: str = "INFO"
    # Layer imports: polygons with more vertices than this are split on a grid so that the
    # spatial index stays selective.
    layer_max_vertices: int = 2_000

    @field_validator("area_crs")
    @classmethod
    def _epsg_only(cls, value: str) -> str:
        # pyproj accepts URLs and arbitrary strings; only a plain EPSG code is taken.
        if not re.fullmatch(r"EPSG:\d{4,6}", value):
            raise ValueError("area_crs must look like 'EPSG:4549'")
        return value


def get_settings() -> Settings:
    return Settings()
