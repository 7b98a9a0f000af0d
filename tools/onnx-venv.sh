#!/usr/bin/env bash
# Creates a venv (the folder given, default .venv-onnx at the repository's root) with PyPI's
# `onnx` (the checker) and `onnxruntime`, which crates/netc-onnx/tests/onnxruntime.rs runs on
# netc's exports (docs/export.md). Does nothing when the venv already has both at these
# versions. Exits non-zero, saying why, when python3 or its venv module is missing or the
# install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-onnx}"
packages=(onnx==1.23.2 onnxruntime==1.32.0)

if ! command -v python3 > /dev/null; then
    echo "onnx-venv: no python3 on PATH" >&2
    exit 1
fi
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip show -q onnx onnxruntime 2> /dev/null \
    && "$venv/bin/python" - "${packages[@]}" << 'PY'
import sys
from importlib.metadata import version
sys.exit(any(version(p.split("==")[0]) != p.split("==")[1] for p in sys.argv[1:]))
PY
then
    exit 0
fi
if ! python3 -m venv "$venv"; then
    echo "onnx-venv: python3 cannot create a venv (install its venv module)" >&2
    exit 1
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${packages[@]}"
echo "onnx-venv: $venv has ${packages[*]}"
