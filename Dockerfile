# The recpipe image: the webhook, the migrations and (with `celery` as entrypoint) the
# workers and beat. docker-compose.yml shows every role.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg and ffprobe do the media work (concat, transcode, probing).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 recpipe \
    && useradd --system --uid 10001 --gid recpipe --home-dir /var/lib/recpipe \
        --shell /usr/sbin/nologin recpipe \
    && mkdir -p /var/lib/recpipe \
    && chown recpipe:recpipe /var/lib/recpipe

WORKDIR /opt/recpipe
COPY pyproject.toml README.md ./
COPY foundation ./foundation
COPY recpipe ./recpipe
COPY webhook ./webhook
COPY tasks ./tasks
COPY storage ./storage
RUN pip install .

USER recpipe
WORKDIR /var/lib/recpipe
# Scratch space of media jobs, beat's schedule and the metrics files live here.
ENV RECPIPE_DATA_DIR=/var/lib/recpipe

EXPOSE 8080 9808
ENTRYPOINT ["recpipe"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
