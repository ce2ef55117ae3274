#!/usr/bin/env bash
# Installs theorylab (editable, with test extras) into the current Python.
# An already installed torch is kept (GPU machines bring their own CUDA build); with none,
# the CPU build torch==2.13.0 is installed, which avoids pulling a multi-GB CUDA wheel.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
"$PY" -c 'import torch' 2>/dev/null || "$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[test]"
