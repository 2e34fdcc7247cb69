#!/usr/bin/env bash
# The whole test suite from nothing: virtualenv, installs, demo models, lint, types, tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
echo "test: building demo models (cached after the first run)" >&2
.venv/bin/python -m yolofleet.demo_models
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
