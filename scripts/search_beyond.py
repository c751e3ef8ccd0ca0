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

from conformance.coverage import goals_of_step
from conformance.generate import _prefix_starts, walk_from_labels
from conformance.goals import bmc_search, stored_proof
from conformance.scenarios import LAST_RESORT
from model.actions import model_for
from model.bmc import encoding_for
from model.state import Config
from model.step import State


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
    paths = []
    for name, labels in LAST_RESORT.items():
        try:
            paths.append((name, walk_from_labels(cfg, labels)))
        except ValueError:
            print(f"{name}: not a path of {a.revision}, skipped")

    def covers(goal: str, labels: list[str], states: list[State]) -> set[str]:
        return {g for n, lab in enumerate(labels) for g in goals_of_step(model, lab, states[n])}

    t0 = time.perf_counter()
    res = bmc_search(model, enc, a.goals.split(","), _prefix_starts(paths, 1), covers,
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
