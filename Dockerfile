# wjsentiment serve on the CPU: an HTTP service for a saved model folder or an exported .onnx
# file (see docs/guide/serving.md).
#
#   docker build -t wjsentiment-serve .
#   docker run --rm -p 8000:8000 --stop-timeout 75 -v "$PWD/runs/photos/model:/model:ro" \
#       wjsentiment-serve
#
# The model is mounted at /model (read-only), or copied in by an image built FROM this one:
#   FROM wjsentiment-serve
#   COPY model /model
# Options go after the image name and replace the CMD below, so repeat --host 0.0.0.0 (without
# it the service only listens inside the container), e.g. `... wjsentiment-serve /model --host
# 0.0.0.0 --workers 2`; the API key comes from the environment: `-e WJS_API_KEY=...
# wjsentiment-serve /model --host 0.0.0.0 --api-key-env WJS_API_KEY`. --stop-timeout (more than
# --timeout + 30 s) lets the requests in flight finish on `docker stop`. To install PyTorch's
# CPU-only wheels (a much smaller image), pass their package index:
# --build-arg PIP_EXTRA_INDEX_URL=<PyTorch CPU wheel index>.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
ARG PIP_EXTRA_INDEX_URL=

WORKDIR /app
COPY pyproject.toml README.md ./
COPY wjsentiment ./wjsentiment
RUN pip install ".[serve,fast]" \
    && useradd --create-home --uid 10001 wjsentiment

# An unprivileged user. The service reads the model; besides its logs (stderr) it writes its
# metric files and the large parts of multipart uploads under /tmp, which must be writable
# (with `docker run --read-only`, add `--tmpfs /tmp`).
USER wjsentiment
EXPOSE 8000
# The health check asks port 8000, the CMD's: with another --port, override HEALTHCHECK.
HEALTHCHECK --interval=15s --timeout=3s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]

# `python -m wjsentiment.serve` is `wjsentiment serve`. It runs as PID 1 and handles SIGTERM
# (`docker stop`): the requests in flight finish, then it exits 0.
ENTRYPOINT ["python", "-m", "wjsentiment.serve"]
CMD ["/model", "--host", "0.0.0.0", "--port", "8000", "--device", "cpu"]
