#!/usr/bin/env bash
# Regenerates the committed gRPC stubs from protos/. Usage: scripts/gen_protos.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$here}"
python="${PYTHON:-$here/.venv/bin/python}"
mkdir -p "$out"
"$python" -m grpc_tools.protoc -I"$here/protos" --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" $(cd "$here/protos" && find yolofleet -name "*.proto" | sort | sed "s|^|$here/protos/|")
