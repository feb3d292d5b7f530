# tunelytics API image. Build: `docker build -t tunelytics .`; or `docker compose up`
# (docker-compose.yml adds MongoDB 8 and Redis 7).

# --- build: a virtual environment with the project and its dependencies ----------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt ./
# torch first, on its own, from PyTorch's CPU index: the CPU build of 2.13.0 (PyPI's wheel
# for Linux x86_64 pulls in several GiB of CUDA libraries). constraints.txt pins the
# version; the check fails the build if a CUDA build slipped in.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu \
        -c constraints.txt "torch==2.13.0" \
    && python -c "import sys, torch; sys.exit(torch.version.cuda is not None)"

# The project itself (torch==2.13.0 is already satisfied by the CPU build above).
COPY pyproject.toml README.md ./
COPY tunelytics ./tunelytics
RUN pip install -c constraints.txt . \
    && pip check \
    && python -c "import sys, importlib.metadata as md; sys.exit(any((d.metadata['Name'] or '').lower().startswith('nvidia-') for d in md.distributions()))" \
    && python -c "import torch; assert torch.version.cuda is None, torch.__version__"

# --- runtime: the environment, a non-root user, nothing else ------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    TUNELYTICS_DATA_DIR=/app/data \
    NUMBA_CACHE_DIR=/app/.cache/numba

RUN groupadd --system --gid 10001 tunelytics \
    && useradd --system --uid 10001 --gid tunelytics --home-dir /app --create-home \
        --shell /usr/sbin/nologin tunelytics \
    && install -d -o tunelytics -g tunelytics /app/data

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /app

EXPOSE 8000

# /healthz answers once the API is up (after the first start's demo seeding). urlopen
# raises on a refused connection and on any non-2xx status, so either fails the check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# MONGODB_URL, REDIS_URL, JWT_SECRET... come from the environment (docker-compose.yml).
# Without MONGODB_URL the embedded MongoDB-wire server runs inside the container, with its
# files under $TUNELYTICS_DATA_DIR: mount a volume there to keep them.
CMD ["tunelytics", "serve", "--host", "0.0.0.0"]
