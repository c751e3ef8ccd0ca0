#!/usr/bin/env bash
# Set up the virtualenv (if needed), verify both protocol revisions, generate each revision's
# conformance suite (random walks plus Z3's coverage goals, in Z3 resource units so that the
# suite is the same on every machine), replay it against the implementation on embedded
# SQLite, then run the scripted lifecycle demo there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lifecycle verify --unbounded
for rev in baseline rfd486; do
    PYTHONHASHSEED=0 .venv/bin/lifecycle traces generate -r "$rev" --out "out/suite/$rev" \
        --z3-goal-rlimit 3000000
done
.venv/bin/lifecycle conformance --suite out/suite --no-teeth --out out/conformance
.venv/bin/lifecycle demo
