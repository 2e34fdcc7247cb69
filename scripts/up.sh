#!/usr/bin/env bash
# Brings the product up on this machine: one inference node serving the demo model on the CPU.
# Ctrl-C (or SIGTERM) drains and stops it. Extra arguments go to the node.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
.venv/bin/python -m yolofleet.demo_models
models="$(.venv/bin/python -c 'from yolofleet.paths import models_dir; print(models_dir())')"
exec .venv/bin/python -m inference_node --model "$models/shapes-v1.pt" --name shapes --watch \
  --port "${PORT:-50051}" --metrics-port "${METRICS_PORT:-9100}" --device "${DEVICE:-auto}" \
  --calibration-dir "$models/calibration" "$@"
