# sloexporter container image: `sloexporter serve` as a non-root user, port 9469.
# Multi-stage: the build stage installs the package into a virtualenv; the final stage
# copies only that virtualenv onto a fresh slim base, so no pip cache, compiler or
# build dependency reaches the image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# dependencies first: they change less often than the code, so the layer is reused
COPY pyproject.toml README.md ./
COPY sloexporter ./sloexporter
RUN /opt/venv/bin/pip install --no-compile . \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/pip uninstall -y pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sloexporter" \
      org.opencontainers.image.description="SLOs for Kubernetes platforms: exporter and rule generator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
# the image's root filesystem is read-only in the chart: no .pyc writes, logs unbuffered
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# a numeric user, so Kubernetes' runAsNonRoot can verify it without /etc/passwd
USER 65532:65532
EXPOSE 9469
ENTRYPOINT ["sloexporter"]
CMD ["serve"]
