"""Search goals beyond the hand-written paths with no resource budget (docs/conformance.md,
"The last pass"): what generation's last pass would find given all the time it needs.

    PYTHONHASHSEED=0 .venv/bin/python scripts/search_beyond.py REVISION GOAL[,GOAL...] \\
        [--depth 11] [--seconds 600]

GOAL is a goal name as in goals.json (`pair:MIGRATING/STARTING`). Starts: every state of
every `LAST_RESORT` path that is a path of REVISION; the stored lemmas are asserted on every
state, as in generation. Prints, per goal found, its length and the whole path as a JSON list
of action labels (ready for `conformance/scenarios.py`), then what is left undecided.
"""

from __future__ import annotations

import argparse
import json
import time

from conformance.generate import _prefix_starts, last_resort_paths, path_goals
from conformance.goals import bmc_search, stored_proof
from model.actions import model_for
from model.bmc import encoding_for
from model.state import Config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("revision")
    ap.add_argument("goals", help="comma-separated goal names")
    ap.add_argument("--depth", type=int, default=11)
    ap.add_argument("--seconds", type=float, default=600.0, help="wall-clock time per goal")
    a = ap.parse_args()
    cfg = Config(revision=a.revision)
    model, enc = model_for(cfg), encoding_for(cfg)
    proof = stored_proof(model, enc)
    paths, skipped = last_resort_paths(cfg)
    for name in skipped:
        print(f"{name}: not a path of {a.revision} (or kept for another revision), skipped")
    t0 = time.perf_counter()
    res = bmc_search(model, enc, a.goals.split(","), _prefix_starts(paths, 1), path_goals(model),
                     max_depth=a.depth, goal_seconds=a.seconds, lemmas=proof.lemmas)
    print(f"{time.perf_counter() - t0:.1f} s")
    for f in res.found:
        labels = [*f.start.labels, *f.labels]
        n = len(f.labels)
        print(f"found {f.goal}: {n} step{'' if n == 1 else 's'} past {f.start.name}, "
              f"{len(labels)} in all")
        print(json.dumps(labels))
    for g, why in res.undecided.items():
        print(f"undecided {g}: {why}")


if __name__ == "__main__":
    main()
