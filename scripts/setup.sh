#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the project with its dev tools.
# Re-running is cheap: pip runs again only when pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python_bin="${PYTHON:-python3}"
"$python_bin" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"yolofleet needs Python >= 3.11, found {sys.version.split()[0]}")
PY
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$python_bin" -m venv .venv
fi
stamp=.venv/.yolofleet-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing yolofleet and its dependencies (torch from this machine's disk)" >&2
  .venv/bin/python -m pip install --quiet -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "from yolofleet.offline import ensure_offline; ensure_offline(); \
import torch, torchvision, ultralytics, grpc, consul" \
    || { echo "setup: install failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
