#!/usr/bin/env bash
# Every method (CPU variant): 2 steps, ns-eval and ns-render dataset on the tiny Human3.6M and RenderPeople layouts.
# Usage: scripts/layouts_smoke.sh [OUTPUT_DIR]   (one line per layout and method; about 7 minutes on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."; bin=.venv/bin; root=${1:-/tmp/layouts}; mkdir -p "$root"
for layout in h36m renderpeople; do
  data=data/synth-tiny-$layout
  [ -d $data ] || $bin/ns-humanfeat-synth --preset tiny --layout $layout --output-dir $data > /dev/null 2>&1
  parser=$([ $layout = h36m ] && echo human36m || echo renderpeople)
  for method in ghnerf enerf-heatmap hfnerf keypointnerf anipixel; do
    out=$root/$layout; start=$(date +%s)
    $bin/ns-train $method-cpu --data $data --output-dir $out --experiment-name e --timestamp run --max-num-iterations 2 \
      --steps-per-save 1 --vis tensorboard --viewer.quit-on-train-completion True \
      --pipeline.datamanager.train-num-rays-per-batch 64 $parser --pipeline.datamanager.dataparser.eval-max-views 1 > $out.$method.train.log 2>&1 || { echo "$layout $method: TRAIN FAILED"; continue; }
    config=$out/e/$method-cpu/run/config.yml
    $bin/ns-eval --load-config $config --output-path $out/$method.json > $out.$method.eval.log 2>&1 || { echo "$layout $method: EVAL FAILED"; continue; }
    $bin/ns-render dataset --load-config $config --split test --rendered-output-names rgb skeleton --output-path $out/render_$method > $out.$method.render.log 2>&1 || { echo "$layout $method: RENDER FAILED"; continue; }
    n=$(find $out/render_$method -name "*.jpg" -o -name "*.png" | wc -l)
    psnr=$($bin/python -c "import json;print(round(json.load(open('$out/$method.json'))['results']['psnr'],2))")
    echo "$layout $method: trained, ns-eval psnr $psnr, ns-render $n images, $(( $(date +%s) - start )) s"
  done
done
