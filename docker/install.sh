#!/bin/sh
# The one install recipe of edgerun's images: jetson.Dockerfile, gpu.Dockerfile and rpi.Dockerfile run it in
# their build stage, and arm64-check.sh runs it inside an arm64 Debian root exactly as rpi.Dockerfile does.
#
#   install.sh SRC [EXTRA_REQUIREMENT...]
#
# Makes a virtual environment at $EDGERUN_VENV (default /opt/edgerun/venv), installs edgerun from the source
# folder SRC with every Python dependency pinned by SRC/docker/constraints.txt (build backends included), plus
# EXTRA_REQUIREMENT (pinned by the caller, e.g. cuda-python==12.6.2.post1), writes the health-check input and
# checks the result by importing it. Settings (environment):
#   EDGERUN_VENV=/opt/edgerun/venv     where the environment goes (the images copy /opt/edgerun as a whole)
#   EDGERUN_SYSTEM_SITE=0|1            1: the environment sees the base image's Python packages (TensorRT comes
#                                      from JetPack / the NGC TensorRT container, never from pip)
#   EDGERUN_REQUIRE_TENSORRT=0|1       1: fail unless `import tensorrt` works in the environment
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: install.sh SRC [EXTRA_REQUIREMENT...]" >&2
    exit 2
fi
src=$1
shift
venv=${EDGERUN_VENV:-/opt/edgerun/venv}
home=$(dirname "$venv")
constraints="$src/docker/constraints.txt"
[ -f "$src/pyproject.toml" ] || { echo "install.sh: $src has no pyproject.toml" >&2; exit 2; }
[ -f "$constraints" ] || { echo "install.sh: $constraints is missing" >&2; exit 2; }

venv_args=""
[ "${EDGERUN_SYSTEM_SITE:-0}" = 1 ] && venv_args="--system-site-packages"
if python3 -c "import ensurepip" 2>/dev/null; then
    # shellcheck disable=SC2086  # empty or one flag
    python3 -m venv $venv_args "$venv"
else
    # Ubuntu without python3-venv (the NGC TensorRT containers): no ensurepip, so the environment borrows the
    # base image's pip, which needs the system site packages to be visible.
    [ "${EDGERUN_SYSTEM_SITE:-0}" = 1 ] || { echo "install.sh: no ensurepip: install python3-venv" >&2; exit 1; }
    python3 -m pip --version >/dev/null || { echo "install.sh: neither ensurepip nor pip in $(command -v python3)" >&2; exit 1; }
    python3 -m venv --without-pip --system-site-packages "$venv"
fi

# PIP_CONSTRAINT (not -c) so that the isolated build environment of edgerun's own wheel is pinned too.
export PIP_CONSTRAINT="$constraints" PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install "$src" "$@"

if [ "${EDGERUN_REQUIRE_TENSORRT:-0}" = 1 ]; then
    "$venv/bin/python" -c "import tensorrt; print('tensorrt', tensorrt.__version__)" || {
        echo "install.sh: the base image has no TensorRT Python package visible to $venv" >&2
        exit 1
    }
fi

# The HEALTHCHECK's one-shot inference input: one 8x8 digit for the bundled digits-student.
"$venv/bin/python" - "$home/health-input.npy" <<'EOF'
import sys

import numpy as np

np.save(sys.argv[1], np.zeros((1, 1, 8, 8), dtype=np.float32))
EOF

"$venv/bin/edgerun" --version
"$venv/bin/python" -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"
