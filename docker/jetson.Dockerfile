# edgerun for NVIDIA Jetson: TensorRT from JetPack, ONNX Runtime (CPU) as the fallback. Build on the Jetson
# (or with buildx --platform linux/arm64); an image runs only on a host with the same L4T major version.
#   JetPack 6.1 / 6.2 (L4T r36.x, Orin; CUDA 12.6, TensorRT 10.3), the default:
#     docker build -f docker/jetson.Dockerfile -t edgerun:jetson-jp6 .
#   JetPack 7.0 / 7.1 (L4T r38.x, Thor; CUDA 13.0, TensorRT 10.13, Ubuntu 24.04; not TensorRT 11): NVIDIA's SBSA
#   TensorRT container is the base (JetPack 7 moved Jetson to the SBSA CUDA stack; 7.2, L4T r39.2, has TensorRT 10.16):
#     docker build -f docker/jetson.Dockerfile --build-arg JETPACK=7 -t edgerun:jetson-jp7 .
#     (another TensorRT container: --build-arg JP7_IMAGE=nvcr.io/nvidia/tensorrt:<yy.mm>-py3 and
#      --build-arg JP7_TENSORRT=<its TensorRT version>, for the label)

ARG JETPACK=6
ARG JP6_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0
ARG JP7_IMAGE=nvcr.io/nvidia/tensorrt:25.08-py3

# JetPack 6: Ubuntu 22.04, Python 3.10. TensorRT's Python bindings come from JetPack's apt repository (which the
# base image configures); cuda-python must be the 12.x line for CUDA 12.6. PyPI's aarch64 cuda-python wheels are
# built for the SBSA CUDA stack, not JetPack 6's (L4T r36); the default pin is that wheel, not yet run on a Jetson:
# where `edgerun selftest` finds it unusable, give a cuda-python built on JetPack (a wheel path or URL, e.g. from
# jetson-containers' build) with --build-arg JP6_CUDA_PYTHON=<requirement>.
FROM ${JP6_IMAGE} AS base-jp6
ARG PYTHON3_VENV_DEB=3.10.6-1~22.04.1
ARG TENSORRT_DEB=10.3.0.30-1+cuda12.5
ARG JP6_CUDA_PYTHON="cuda-python==12.6.2.post1"
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv=${PYTHON3_VENV_DEB} python3-libnvinfer=${TENSORRT_DEB} \
    && rm -rf /var/lib/apt/lists/*
ENV EDGERUN_JETPACK=6 \
    EDGERUN_TENSORRT_VERSION=10.3 \
    EDGERUN_CUDA_PYTHON="${JP6_CUDA_PYTHON}"

# JetPack 7: the TensorRT container (Ubuntu 24.04, Python 3.12, TensorRT's Python package preinstalled, pip
# without python3-venv: install.sh then borrows the system pip). CUDA 13 on the SBSA stack: PyPI's cuda-python 13.x.
# JP7_TENSORRT is the container's TensorRT (25.08: 10.13, as JetPack 7.0 / 7.1), only for the label.
FROM ${JP7_IMAGE} AS base-jp7
ARG JP7_TENSORRT=10.13
ENV EDGERUN_JETPACK=7 \
    EDGERUN_TENSORRT_VERSION=${JP7_TENSORRT} \
    EDGERUN_CUDA_PYTHON="cuda-python==13.0.3 cuda-bindings==13.0.3 cuda-pathfinder==1.9.1"

# DL3006 ignored: base-jp6 / base-jp7 are this file's own stages (tagged above), not images to tag.
# hadolint ignore=DL3006
FROM base-jp${JETPACK} AS build
COPY pyproject.toml README.md LICENSE NOTICE /src/
COPY edgerun /src/edgerun
COPY docker/install.sh docker/constraints.txt /src/docker/
# SC2086 ignored: EDGERUN_CUDA_PYTHON is a list of exact pins, one argument each: word splitting is wanted.
# hadolint ignore=SC2086
RUN EDGERUN_SYSTEM_SITE=1 EDGERUN_REQUIRE_TENSORRT=1 sh /src/docker/install.sh /src ${EDGERUN_CUDA_PYTHON}

# DL3006 ignored: the same stage alias as above.
# hadolint ignore=DL3006
FROM base-jp${JETPACK} AS runtime
ARG EDGERUN_VERSION=0.1.0
LABEL org.opencontainers.image.title="edgerun (NVIDIA Jetson)" \
      org.opencontainers.image.description="Distilled ONNX models in real time: TensorRT on Jetson, ONNX Runtime CPU fallback" \
      org.opencontainers.image.version="${EDGERUN_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.edgerun.target="jetson" \
      io.edgerun.jetpack="${EDGERUN_JETPACK}" \
      io.edgerun.tensorrt.version="${EDGERUN_TENSORRT_VERSION}" \
      io.edgerun.cuda-python="${EDGERUN_CUDA_PYTHON}"
RUN groupadd --gid 10001 edgerun \
    && useradd --no-log-init --uid 10001 --gid edgerun --groups video --create-home --home-dir /home/edgerun \
        --shell /usr/sbin/nologin edgerun \
    && mkdir -p /var/cache/edgerun \
    && chown edgerun:edgerun /var/cache/edgerun
COPY --from=build /opt/edgerun /opt/edgerun
ENV PATH=/opt/edgerun/venv/bin:${PATH} \
    EDGERUN_CACHE_DIR=/var/cache/edgerun \
    PYTHONUNBUFFERED=1
# TensorRT engines and converted models: the cache key holds the TensorRT version, GPU and compute capability,
# so engines on this volume survive restarts and are rebuilt (not loaded) after a JetPack/TensorRT upgrade.
VOLUME ["/var/cache/edgerun"]
USER 10001:10001
WORKDIR /home/edgerun
# One-shot inference through the plan edgerun picks (TensorRT FP16): the first check builds the engine into the
# cache volume (tens of seconds on an Orin), later ones load it.
HEALTHCHECK --interval=60s --timeout=120s --start-period=300s --retries=3 \
    CMD ["edgerun", "run", "digits-student", "-i", "/opt/edgerun/health-input.npy"]
ENTRYPOINT ["edgerun"]
CMD ["info"]
