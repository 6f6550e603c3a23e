# syntax=docker/dockerfile:1
# Tianxun API image: migrates the database, then serves the API with uvicorn.
# Workers run from the same image: `docker run IMAGE tianxun worker --concurrency 2`.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first, so that code changes do not re-download them.
COPY pyproject.toml README.md ./
RUN mkdir service detection models scripts simulator \
 && touch service/__init__.py detection/__init__.py models/__init__.py scripts/__init__.py simulator/__init__.py \
 && pip install .
COPY . .
# Editable, so the migrations in /app/alembic stay next to the code that runs them.
RUN pip install --no-deps -e .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin tianxun \
 && mkdir /data && chown tianxun /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TIANXUN_DATA_DIR=/data \
    TIANXUN_DATABASE_URL=sqlite:////data/tianxun.db \
    TIANXUN_LOG_JSON=true
# Numba keeps its compiled detector kernels here: /app is read-only for the service user.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache
USER tianxun
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["sh", "-c", "tianxun db upgrade && exec uvicorn --factory service.main:create_app --host 0.0.0.0 --port 8000 --proxy-headers"]
