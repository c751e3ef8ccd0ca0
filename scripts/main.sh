#!/usr/bin/env bash
# Set up the virtualenv (if needed), verify both protocol revisions, then run the scripted
# lifecycle on the implementation with embedded SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lifecycle verify --unbounded
.venv/bin/lifecycle demo
