#!/usr/bin/env bash
# The image benchmark on a GPU: writes a fresh SD 1.5-size model, then runs `npm run bench` with --ep webgpu and
# with --ep cpu on it, and saves the tables, the JSON and the GPU's name.
#
#   scripts/gpu-bench.sh          run it (on the GPU machine)
#   scripts/gpu-bench.sh pack     prepare .gpu-bench/bundle.tar.xz (x86-64 Linux): Node itself, the bench bundled
#                                 into two .mjs files, onnxruntime-node's and sharp's Linux x64 binaries and CLIP's
#                                 vocabulary, about 45 MB, for a GPU machine without Node or node_modules
#
# The run needs Node 20+ with `npm ci` done, or the bundle; and a Vulkan loader (libvulkan.so.1) with the GPU's
# Vulkan driver, which onnxruntime-node's bundled WebGPU provider (Dawn) uses on Linux. No CUDA is needed.
#
# Settings (environment): SIZE (512x512), STEPS and RUNS for WebGPU (20, 3), CPU_STEPS and CPU_RUNS (4, 2),
# FP16=1 to add a WebGPU run on an fp16 copy of the model, OUT (results folder; ./gpu-bench-results),
# MODEL_DIR (where to write the model; a temporary folder, removed afterwards).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle_dir="$root/.gpu-bench"
bundle="$bundle_dir/bundle.tar.xz"

pack() {
  cd "$root"
  [[ "$(uname -sm)" == "Linux x86_64" ]] || { echo "pack makes an x86-64 Linux bundle; run it on such a machine" >&2; exit 1; }
  [[ -d node_modules/onnxruntime-node ]] || { echo "run npm ci first" >&2; exit 1; }
  local stage
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' RETURN
  mkdir -p "$stage/bin" "$stage/app/node_modules/@img" "$stage/app/node_modules/onnxruntime-node/bin/napi-v6/linux"
  cp "$(command -v node)" "$stage/bin/node"

  # One file per command; the two native packages stay outside the bundle and are copied beside it.
  node_modules/.bin/esbuild bench=src/bench/cli.ts bench-model=src/tiny-model/bench-cli.ts \
    --bundle --platform=node --format=esm --target=node20 --outdir="$stage/app" --out-extension:.js=.mjs \
    --external:onnxruntime-node --external:sharp --log-level=warning \
    --banner:js="import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"

  local ort="node_modules/onnxruntime-node"
  cp -r "$ort/package.json" "$ort/dist" "$stage/app/$ort/"
  cp -r "$ort/bin/napi-v6/linux/x64" "$stage/app/$ort/bin/napi-v6/linux/"
  cp -r node_modules/onnxruntime-common node_modules/sharp node_modules/detect-libc node_modules/semver "$stage/app/node_modules/"
  cp -r node_modules/@img/colour node_modules/@img/sharp-linux-x64 node_modules/@img/sharp-libvips-linux-x64 "$stage/app/node_modules/@img/"

  local fixtures="${SHARED_FIXTURES_DIR:-$root/../shared/fixtures}"
  if [[ -f "$fixtures/tokenizer/vocab.json" ]]; then
    mkdir -p "$stage/tokenizer"
    cp "$fixtures/tokenizer/vocab.json" "$fixtures/tokenizer/merges.txt" "$stage/tokenizer/"
  fi

  mkdir -p "$bundle_dir"
  tar -C "$stage" -cJf "$bundle" .
  # Keep the bundle out of git; it travels to a device machine only when named explicitly.
  if [[ -d .git ]] && ! grep -qsx '/.gpu-bench/' .git/info/exclude; then mkdir -p .git/info && echo '/.gpu-bench/' >> .git/info/exclude; fi
  echo "wrote $bundle ($(du -h "$bundle" | cut -f1))"
}

run() {
  local size="${SIZE:-512x512}" out="${OUT:-$PWD/gpu-bench-results}"
  mkdir -p "$out"
  out="$(cd "$out" && pwd)"

  local node build bench tokenizer=() unpacked=""
  if [[ -f "$bundle" ]]; then
    command -v xz > /dev/null || { echo "the bundle is xz-compressed: install xz-utils" >&2; exit 1; }
    unpacked="$(mktemp -d)"
    tar -C "$unpacked" -xJf "$bundle"
    node="$unpacked/bin/node"
    build=("$node" "$unpacked/app/bench-model.mjs")
    bench=("$node" "$unpacked/app/bench.mjs")
    [[ -f "$unpacked/tokenizer/vocab.json" ]] && tokenizer=(--tokenizer "$unpacked/tokenizer")
  else
    command -v node > /dev/null || { echo "no Node: install Node 20+ and run npm ci, or bring a bundle (scripts/gpu-bench.sh pack)" >&2; exit 1; }
    [[ -d "$root/node_modules/onnxruntime-node" ]] || { echo "run npm ci in $root first" >&2; exit 1; }
    node="node"
    build=(node --import tsx "$root/src/tiny-model/bench-cli.ts")
    bench=(node --import tsx "$root/src/bench/cli.ts")
    cd "$root"
  fi

  if ! ldconfig -p 2> /dev/null | grep 'libvulkan\.so\.1' > /dev/null; then
    echo "no Vulkan loader (libvulkan.so.1) on this machine: install libvulkan1 (Debian/Ubuntu) or vulkan-loader" >&2
    exit 1
  fi

  {
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "node: $("$node" --version)"
    if command -v nvidia-smi > /dev/null; then
      echo "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
    else
      echo "gpu: $(lspci 2> /dev/null | grep -iE 'vga|3d|display' | head -1 || echo unknown)"
    fi
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores"
  } | tee "$out/machine.txt"

  local model="${MODEL_DIR:-}" cleanup_model=""
  if [[ -z "$model" ]]; then
    model="$(mktemp -d)/sd15-bench"
    cleanup_model="$(dirname "$model")"
  fi
  trap 'rm -rf ${unpacked:+"$unpacked"} ${cleanup_model:+"$cleanup_model"}' EXIT

  # A failed run (say, no WebGPU adapter) is reported and the next one still runs.
  local failed=0
  measure() {
    local name="$1"
    shift
    echo "== $name"
    "${bench[@]}" --size "$size" --json "$out/$name.json" "$@" | tee "$out/$name.txt" || { echo "== $name FAILED" >&2; failed=1; }
  }

  "${build[@]}" --out "$model" ${tokenizer[@]+"${tokenizer[@]}"}
  measure webgpu --model "$model" --ep webgpu --steps "${STEPS:-20}" --runs "${RUNS:-3}"
  measure cpu --model "$model" --ep cpu --steps "${CPU_STEPS:-4}" --runs "${CPU_RUNS:-2}"
  measure cpu-unfused --model "$model" --ep cpu --steps "${CPU_STEPS:-4}" --runs "${CPU_RUNS:-2}" --unfused-attention
  if [[ "${FP16:-0}" == 1 ]]; then
    "${build[@]}" --out "$model-fp16" --fp16 ${tokenizer[@]+"${tokenizer[@]}"}
    measure webgpu-fp16 --model "$model-fp16" --ep webgpu --steps "${STEPS:-20}" --runs "${RUNS:-3}"
  fi
  echo "results in $out"
  return "$failed"
}

case "${1:-run}" in
  pack) pack ;;
  run) run ;;
  *) echo "usage: scripts/gpu-bench.sh [run|pack]" >&2; exit 2 ;;
esac
