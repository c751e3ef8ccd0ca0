#!/usr/bin/env bash
# Set up the virtualenv (if needed), verify both protocol revisions, replay the model-generated
# conformance suite against the implementation on embedded SQLite, then run the scripted
# lifecycle demo there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lifecycle verify --unbounded
.venv/bin/lifecycle conformance --no-teeth --out out/conformance
.venv/bin/lifecycle demo
