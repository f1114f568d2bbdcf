# edgerun for Raspberry Pi 4B / 5 (64-bit Raspberry Pi OS or any arm64 Debian bookworm host): ONNX Runtime on
# the CPU. Build on the Pi, or anywhere with buildx and QEMU:
#   docker buildx build --platform linux/arm64 -f docker/rpi.Dockerfile -t edgerun:rpi --load .
# docker/arm64-check.sh runs this same install (same Debian pins, docker/install.sh, user) in an arm64 root.

ARG DEBIAN_IMAGE=debian:bookworm-20250520-slim
# Debian's python3 / python3-venv of bookworm (Python 3.11), for both stages; arm64-check.sh reads this pin from here.
ARG PYTHON3_DEB=3.11.2-1+b1

FROM ${DEBIAN_IMAGE} AS build
ARG PYTHON3_DEB
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=${PYTHON3_DEB} python3-venv=${PYTHON3_DEB} \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md LICENSE NOTICE /src/
COPY edgerun /src/edgerun
COPY docker/install.sh docker/constraints.txt /src/docker/
RUN sh /src/docker/install.sh /src

FROM ${DEBIAN_IMAGE} AS runtime
ARG DEBIAN_IMAGE
ARG PYTHON3_DEB
ARG EDGERUN_VERSION=0.1.0
ARG ONNXRUNTIME_VERSION=1.32.0
LABEL org.opencontainers.image.title="edgerun (Raspberry Pi, arm64 CPU)" \
      org.opencontainers.image.description="Distilled ONNX models in real time: ONNX Runtime on the CPU of a Raspberry Pi 4B/5" \
      org.opencontainers.image.version="${EDGERUN_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${DEBIAN_IMAGE}" \
      io.edgerun.target="rpi" \
      io.edgerun.python="3.11" \
      io.edgerun.onnxruntime.version="${ONNXRUNTIME_VERSION}" \
      io.edgerun.tensorrt.version="none"
# Only the interpreter at run time: the environment built above is copied as it is (same path, same Python).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=${PYTHON3_DEB} \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 edgerun \
    && useradd --no-log-init --uid 10001 --gid edgerun --create-home --home-dir /home/edgerun \
        --shell /usr/sbin/nologin edgerun \
    && mkdir -p /var/cache/edgerun \
    && chown edgerun:edgerun /var/cache/edgerun
COPY --from=build /opt/edgerun /opt/edgerun
ENV PATH=/opt/edgerun/venv/bin:${PATH} \
    EDGERUN_CACHE_DIR=/var/cache/edgerun \
    PYTHONUNBUFFERED=1
# Converted models (INT8 / FP16) are cached here: mount a volume so they survive container restarts.
VOLUME ["/var/cache/edgerun"]
USER 10001:10001
WORKDIR /home/edgerun
# One-shot inference of the bundled digits student on the input install.sh wrote.
HEALTHCHECK --interval=60s --timeout=30s --start-period=20s --retries=3 \
    CMD ["edgerun", "run", "digits-student", "-i", "/opt/edgerun/health-input.npy"]
ENTRYPOINT ["edgerun"]
CMD ["info"]
