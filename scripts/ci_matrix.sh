#!/usr/bin/env bash
# The suite on the other Pythons of the support matrix (issue 19), each in its own venv under .ci-venvs/:
#   3.10 (JetPack 6) with the oldest claimed releases (.ci/floor.txt: onnxruntime 1.20.1, numpy 1.26),
#   3.12 (Ubuntu 24.04) with the newest.
# The torch extra is left out there (its CPU wheel lies on this machine for Python 3.11 only): the
# distillation tests skip with that reason. A missing interpreter is a failure, never a silent skip.
# Usage: scripts/ci_matrix.sh [3.10.13|3.12.1 ...]   (default: both)
set -uo pipefail
cd "$(dirname "$0")/.."

legs=("$@")
[ ${#legs[@]} -eq 0 ] && legs=(3.10.13 3.12.1)
status=0
for version in "${legs[@]}"; do
    python=$(PYENV_VERSION="$version" pyenv which python 2>/dev/null) || python=""
    if [ -z "$python" ] || [ ! -x "$python" ]; then
        echo "ci-matrix: Python $version is missing (pyenv versions lists: $(pyenv versions --bare 2>/dev/null | tr '\n' ' ')): failing" >&2
        exit 1
    fi
    constraints=()
    [ "${version%.*}" = "3.10" ] && constraints=(-c .ci/floor.txt)
    venv=".ci-venvs/py$version"
    started=$SECONDS
    { "$python" -m venv "$venv" && "$venv/bin/pip" install -q "${constraints[@]}" -e '.[test-base]'; } || {
        echo "ci-matrix: installing on Python $version failed" >&2; exit 1; }
    "$venv/bin/python" -c 'import sys, onnxruntime, numpy; print(f"ci-matrix: Python {sys.version.split()[0]}, onnxruntime {onnxruntime.__version__}, numpy {numpy.__version__}")'
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -rs  # -rs: every skip and its reason, in the log
    code=$?
    echo "ci-matrix: Python $version: pytest exit $code in $((SECONDS - started)) s"
    if [ "$code" -ne 0 ]; then status=1; fi
done
exit "$status"
