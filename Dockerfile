# One image for every workbench process of compose.yaml: the web app (the default command), the RQ
# workers, the ops API and the one-shot CLI services (migrate, release check). Built by
# `docker compose build`; see docs/deploy.md. The pinned requirements are the same as `make venv`'s.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/opusblocks

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# An unprivileged user owns only the shared data volume (/data) and the backups volume.
RUN useradd --system --uid 10001 --home-dir /srv/opusblocks --shell /usr/sbin/nologin opusblocks \
    && install -d -o opusblocks -g opusblocks -m 750 /data /backups
USER opusblocks

ENV WORKBENCH_DATA_DIR=/data
EXPOSE 8501 8000
CMD ["streamlit", "run", "app.py", "--server.port", "8501", "--server.address", "0.0.0.0"]
