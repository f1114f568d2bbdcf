# edgerun for desktop and server NVIDIA GPUs (x86_64): NVIDIA's TensorRT container as the base, TensorRT from
# it, ONNX Runtime (CPU) as the fallback. Needs the NVIDIA Container Toolkit on the host.
#   docker build -f docker/gpu.Dockerfile -t edgerun:gpu .
# The default base, TensorRT container 25.01: TensorRT 10.8, CUDA 12.8 (driver >= 570, or a data-center driver
# with forward compatibility), Ubuntu 24.04, Python 3.12. Another release: pass TRT_IMAGE, TENSORRT_VERSION (for
# the label) and CUDA_PYTHON (the 12.x line for CUDA 12 containers, 13.x for CUDA 13 ones).

ARG TRT_IMAGE=nvcr.io/nvidia/tensorrt:25.01-py3
# Declared once here so the installed pins and the label cannot disagree; each stage that uses it re-declares it.
ARG CUDA_PYTHON="cuda-python==12.8.0 cuda-bindings==12.8.0"

FROM ${TRT_IMAGE} AS build
ARG CUDA_PYTHON
COPY pyproject.toml README.md LICENSE NOTICE /src/
COPY edgerun /src/edgerun
COPY docker/install.sh docker/constraints.txt /src/docker/
# The container has pip but no python3-venv: install.sh makes the environment with the system site packages
# (TensorRT's Python package lives there) and borrows that pip.
# SC2086 ignored: CUDA_PYTHON is a list of exact pins, one argument each: word splitting is wanted.
# hadolint ignore=SC2086
RUN EDGERUN_SYSTEM_SITE=1 EDGERUN_REQUIRE_TENSORRT=1 sh /src/docker/install.sh /src ${CUDA_PYTHON}

FROM ${TRT_IMAGE} AS runtime
ARG TRT_IMAGE
ARG EDGERUN_VERSION=0.1.0
ARG TENSORRT_VERSION=10.8
ARG CUDA_PYTHON
LABEL org.opencontainers.image.title="edgerun (NVIDIA GPU)" \
      org.opencontainers.image.description="Distilled ONNX models in real time: TensorRT on NVIDIA GPUs, ONNX Runtime CPU fallback" \
      org.opencontainers.image.version="${EDGERUN_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${TRT_IMAGE}" \
      io.edgerun.target="gpu" \
      io.edgerun.tensorrt.version="${TENSORRT_VERSION}" \
      io.edgerun.cuda-python="${CUDA_PYTHON}"
RUN groupadd --gid 10001 edgerun \
    && useradd --no-log-init --uid 10001 --gid edgerun --create-home --home-dir /home/edgerun \
        --shell /usr/sbin/nologin edgerun \
    && mkdir -p /var/cache/edgerun \
    && chown edgerun:edgerun /var/cache/edgerun
COPY --from=build /opt/edgerun /opt/edgerun
ENV PATH=/opt/edgerun/venv/bin:${PATH} \
    EDGERUN_CACHE_DIR=/var/cache/edgerun \
    PYTHONUNBUFFERED=1
# TensorRT engines and converted models: the cache key holds the TensorRT version, GPU and compute capability,
# so engines on this volume survive restarts and are rebuilt (not loaded) on another GPU or TensorRT.
VOLUME ["/var/cache/edgerun"]
USER 10001:10001
WORKDIR /home/edgerun
# One-shot inference through the plan edgerun picks (TensorRT FP16): the first check builds the engine into the
# cache volume, later ones load it.
HEALTHCHECK --interval=60s --timeout=120s --start-period=180s --retries=3 \
    CMD ["edgerun", "run", "digits-student", "-i", "/opt/edgerun/health-input.npy"]
ENTRYPOINT ["edgerun"]
CMD ["info"]
