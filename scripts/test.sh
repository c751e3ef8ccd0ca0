#!/usr/bin/env bash
# Set up the virtualenv (if needed) and run the whole test suite, slow checks included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check model impl conformance lifecycle tests bench
.venv/bin/mypy model lifecycle impl conformance
.venv/bin/pytest -m "slow or not slow" -q "$@"
