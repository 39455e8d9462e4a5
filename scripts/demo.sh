#!/usr/bin/env bash
# Trains a method briefly on the CPU, evaluates it on the held-out subjects and renders a novel-view video.
# Usage: scripts/demo.sh METHOD DATA_DIR OUTPUT_DIR STEPS
set -euo pipefail
method=${1:-ghnerf}; data=${2:-data/synth-demo}; out=${3:-outputs/demo}; steps=${4:-1000}
bin=.venv/bin
# torch on the CPU: huge pages, freed memory kept (nerfstudio_humanfeat/engine/cpu_allocator.py)
eval "$($bin/python -m nerfstudio_humanfeat.engine.cpu_allocator)"
start=$(date +%s)
$bin/ns-train "$method-cpu" --data "$data" --output-dir "$out" --experiment-name demo --timestamp run \
    --max-num-iterations "$steps" --vis tensorboard --viewer.quit-on-train-completion True \
    zju-mocap --pipeline.datamanager.dataparser.eval-max-views 12
config="$out/demo/$method-cpu/run/config.yml"
$bin/ns-eval --load-config "$config" --output-path "$out/eval_$method.json" --render-output-path "$out/eval_images"
$bin/ns-humanfeat-orbit --data "$data" --output "$out/orbit.json" --num-views 24 --seconds 2
$bin/ns-render camera-path --load-config "$config" --camera-path-filename "$out/orbit.json" \
    --rendered-output-names rgb skeleton joint_heatmap --output-path "$out/novel_view_$method.mp4"
echo "demo: $method trained for $steps steps, evaluated and rendered in $(( $(date +%s) - start )) s"
$bin/python - "$out/eval_$method.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
keys = ["psnr", "ssim", "lpips", "heatmap_mse", "pck", "mean_joint_error_px", "densepose_mse", "fps"]
print("held-out subjects:", {k: results.get(k) for k in keys if k in results})
PY
