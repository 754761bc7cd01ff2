#!/usr/bin/env bash
# The image benchmark on a GPU, in one command: writes fresh fp16 models with Stable Diffusion 1.5's and SD-Turbo's
# architectures (random weights), then with WebGPU and with CUDA measures the graphs as written ("today's") against
# the graphs rewritten into the provider's fused operators at load (--gpu-fusion), and those with static shapes:
#   - a 512x512 SD 1.5 image (U-Net at batch 2: classifier-free guidance), STEPS steps, RUNS runs;
#   - a 1-step SD-Turbo 512x512 image without guidance, end to end, TURBO_RUNS runs;
# and saves the tables, the JSON, the GPU's name and a summary.txt of the U-Net step and image times.
#
#   scripts/gpu-bench.sh          run it (on the GPU machine)
#   scripts/gpu-bench.sh summarize DIR   print summary.txt's table again from a results folder
#   scripts/gpu-bench.sh pack     prepare .gpu-bench/bundle.tar.xz (x86-64 Linux): Node itself, the bench bundled
#                                 into two .mjs files, onnxruntime-node's and sharp's Linux x64 binaries and CLIP's
#                                 vocabulary, about 45 MB, for a GPU machine without Node or node_modules; with
#                                 CUDA_PROVIDER_DIR=DIR, onnxruntime's CUDA provider libraries from DIR too (what
#                                 `npm run install-cuda` puts beside libonnxruntime.so)
#
# The run needs Node 20+ with `npm ci` done, or the bundle. WebGPU needs a Vulkan loader (libvulkan.so.1) and the
# GPU's Vulkan driver; CUDA needs onnxruntime's CUDA provider (npm run install-cuda, or CUDA_PROVIDER_DIR at pack
# time), CUDA 12 and cuDNN 9. A provider that cannot start is reported (the bench prints why) and the rest go on.
#
# Settings (environment): EPS (providers, "webgpu cuda"), STEPS and RUNS (10, 2), TURBO_RUNS (5), SIZE (512x512),
# RUN_TIMEOUT (seconds per measurement, 300), CPU=1 to add the CPU runs on an fp32 model (CPU_STEPS, CPU_RUNS: 4, 2),
# FP32=1 to add WebGPU on that fp32 model, OUT (results folder; ./gpu-bench-results), MODEL_DIR (where to write the
# models; a temporary folder, removed afterwards).
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
  if [[ -n "${CUDA_PROVIDER_DIR:-}" ]]; then
    local provider
    for provider in libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so; do
      [[ -f "$CUDA_PROVIDER_DIR/$provider" ]] || { echo "CUDA_PROVIDER_DIR has no $provider" >&2; exit 1; }
      cp "$CUDA_PROVIDER_DIR/$provider" "$stage/app/$ort/bin/napi-v6/linux/x64/"
    done
  fi
  cp -r node_modules/onnxruntime-common node_modules/sharp node_modules/detect-libc node_modules/semver "$stage/app/node_modules/"
  cp -r node_modules/@img/colour node_modules/@img/sharp-linux-x64 node_modules/@img/sharp-libvips-linux-x64 "$stage/app/node_modules/@img/"

  local fixtures="${SHARED_FIXTURES_DIR:-$root/../shared/fixtures}"
  if [[ -f "$fixtures/tokenizer/vocab.json" ]]; then
    mkdir -p "$stage/tokenizer"
    cp "$fixtures/tokenizer/vocab.json" "$fixtures/tokenizer/merges.txt" "$stage/tokenizer/"
  fi

  mkdir -p "$bundle_dir"
  tar -C "$stage" -cJf "$bundle" .
  local cuda="without onnxruntime's CUDA provider"
  [[ -f "$stage/app/$ort/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so" ]] && cuda="with onnxruntime's CUDA provider"
  echo "wrote $bundle ($(du -h "$bundle" | cut -f1), $cuda)"
}

run() {
  local size="${SIZE:-512x512}" out="${OUT:-$PWD/gpu-bench-results}"
  mkdir -p "$out"
  out="$(cd "$out" && pwd)"

  local node build bench tokenizer=() unpacked="" ort_dir
  if [[ -f "$bundle" ]]; then
    command -v xz > /dev/null || { echo "the bundle is xz-compressed: install xz-utils" >&2; exit 1; }
    unpacked="$(mktemp -d)"
    tar -C "$unpacked" -xJf "$bundle"
    node="$unpacked/bin/node"
    build=("$node" "$unpacked/app/bench-model.mjs")
    bench=("$node" "$unpacked/app/bench.mjs")
    ort_dir="$unpacked/app/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"
    [[ -f "$unpacked/tokenizer/vocab.json" ]] && tokenizer=(--tokenizer "$unpacked/tokenizer")
  else
    command -v node > /dev/null || { echo "no Node: install Node 20+ and run npm ci, or bring a bundle (scripts/gpu-bench.sh pack)" >&2; exit 1; }
    [[ -d "$root/node_modules/onnxruntime-node" ]] || { echo "run npm ci in $root first" >&2; exit 1; }
    node="node"
    build=(node --import tsx "$root/src/tiny-model/bench-cli.ts")
    bench=(node --import tsx "$root/src/bench/cli.ts")
    ort_dir="$root/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"
    cd "$root"
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
    echo "vulkan loader: $(ldconfig -p 2> /dev/null | grep -o 'libvulkan\.so\.1' | head -1 || true)"
    echo "onnxruntime CUDA provider: $([[ -f "$ort_dir/libonnxruntime_providers_cuda.so" ]] && echo present || echo absent)"
    echo "CUDA libraries: $(ldconfig -p 2> /dev/null | grep -oE 'lib(cuda|cudart|cublas|cublasLt|cudnn|cufft|curand)\.so\.[0-9]+' | sort -u | xargs || true)"
  } | tee "$out/machine.txt"

  local models="${MODEL_DIR:-}" cleanup_models=""
  if [[ -z "$models" ]]; then
    models="$(mktemp -d)"
    cleanup_models="$models"
  fi
  trap 'rm -rf ${unpacked:+"$unpacked"} ${cleanup_models:+"$cleanup_models"}' EXIT

  # A failed run (say, no WebGPU adapter, or no CUDA provider) is reported and the next one still runs.
  local failed=0
  measure() {
    local name="$1"
    shift
    echo "== $name"
    if ! timeout "${RUN_TIMEOUT:-300}" "${bench[@]}" --size "$size" --json "$out/$name.json" "$@" 2> >(tee "$out/$name.log" >&2) | tee "$out/$name.txt"; then
      echo "== $name FAILED" >&2
      local why
      why="$(grep -m1 'EXECUTION_PROVIDER=' "$out/$name.log" || grep -m1 -iE 'error|timed out|killed' "$out/$name.log" || echo "see $name.log")"
      echo "FAILED: $why" > "$out/$name.txt"
      rm -f "$out/$name.json"
      failed=1
    fi
  }

  local steps=(--steps "${STEPS:-10}" --runs "${RUNS:-2}")
  local turbo=(--steps 1 --guidance 0 --scheduler "Euler Trailing" --runs "${TURBO_RUNS:-5}")
  "${build[@]}" --out "$models/sd15-fp16" --fp16 ${tokenizer[@]+"${tokenizer[@]}"}
  "${build[@]}" --out "$models/sd-turbo-fp16" --fp16 --turbo ${tokenizer[@]+"${tokenizer[@]}"}
  local ep
  for ep in ${EPS:-webgpu cuda}; do
    measure "$ep-fp16" --model "$models/sd15-fp16" --ep "$ep" "${steps[@]}"
    measure "$ep-fp16-fused" --model "$models/sd15-fp16" --ep "$ep" --gpu-fusion "${steps[@]}"
    measure "$ep-fp16-fused-static" --model "$models/sd15-fp16" --ep "$ep" --gpu-fusion --static-shape "${steps[@]}"
    measure "turbo-$ep-fp16" --model "$models/sd-turbo-fp16" --ep "$ep" "${turbo[@]}"
    measure "turbo-$ep-fp16-fused-static" --model "$models/sd-turbo-fp16" --ep "$ep" --gpu-fusion --static-shape "${turbo[@]}"
  done
  if [[ "${CPU:-0}" == 1 || "${FP32:-0}" == 1 ]]; then
    "${build[@]}" --out "$models/sd15" ${tokenizer[@]+"${tokenizer[@]}"}
  fi
  if [[ "${FP32:-0}" == 1 ]]; then
    measure webgpu-fp32 --model "$models/sd15" --ep webgpu "${steps[@]}"
  fi
  if [[ "${CPU:-0}" == 1 ]]; then
    measure cpu --model "$models/sd15" --ep cpu --steps "${CPU_STEPS:-4}" --runs "${CPU_RUNS:-2}"
    measure cpu-unfused --model "$models/sd15" --ep cpu --steps "${CPU_STEPS:-4}" --runs "${CPU_RUNS:-2}" --unfused-attention
  fi

  summarize "$out" | tee "$out/summary.txt"
  echo "results in $out"
  return "$failed"
}

# One line per run: the U-Net step's and the image's best and median, from each run's JSON (or why it failed).
summarize() {
  "$node" --input-type=module - "$1" <<'JS'
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
const dir = process.argv[2];
const median = (values) => { const s = [...values].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const ms = (value) => (value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(1)} ms`);
console.log(`${'run'.padEnd(30)} ${'U-Net step best / median'.padEnd(26)} ${'image best / median'.padEnd(22)} fused at load`);
const runs = readdirSync(dir).filter((name) => name.endsWith('.txt') && !['machine.txt', 'summary.txt'].includes(name));
for (const file of runs.sort((a, b) => statSync(join(dir, a)).mtimeMs - statSync(join(dir, b)).mtimeMs)) {
  const name = file.slice(0, -4);
  let result;
  try { result = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')); } catch { console.log(`${name.padEnd(30)} ${readFileSync(join(dir, file), 'utf8').split('\n')[0]}`); continue; }
  const steps = result.runs.flatMap((run) => run.unetStepMs);
  const totals = result.runs.map((run) => run.totalMs);
  const fusions = Object.entries(result.gpuFusions ?? {}).filter(([, f]) => f).map(([model, f]) => `${model} ${Object.values(f).join('/')}`).join(', ');
  console.log(`${name.padEnd(30)} ${`${ms(Math.min(...steps))} / ${ms(median(steps))}`.padEnd(26)} ${`${ms(Math.min(...totals))} / ${ms(median(totals))}`.padEnd(22)} ${fusions || '-'}`);
}
console.log('(fused at load: MultiHeadAttention/SkipLayerNormalization/BiasSplitGelu/GroupNorm per model)');
JS
}

case "${1:-run}" in
  pack) pack ;;
  run) run ;;
  summarize) node="${NODE:-node}" && summarize "${2:?usage: scripts/gpu-bench.sh summarize RESULTS_DIR}" ;;
  *) echo "usage: scripts/gpu-bench.sh [run|pack|summarize DIR]" >&2; exit 2 ;;
esac
