"""Wall time of a SAS- run and its SAS-(k) runs: branched from SAS- (sasutils.sweep default) vs from step 0.

    python benchmarks/branching.py [--quick] [--workers 1]

The same plan is run twice into fresh folders, side by side in one process: ``run_plan(..., branch=False)``
(every SAS-(k) from step 0: the baseline) and ``run_plan(..., branch=True)`` (SAS-(k) forked from SAS-'s
state at step k). The model is ``cpu-tiny`` made small (hidden 64, 2 layers) so the benchmark takes minutes;
the k values sit at the same fractions of the run as the 04_intervene defaults (500, 1000, 3000 of 5000),
with the held-out loss and the SAS scalar (100 sentences) logged every 5 % of the run.
Steps trained: baseline 4 x steps; branched 4 x steps - sum(k), ratio 1 - 0.9 / 4 = 0.775 here.
The last line printed is JSON: seconds of each, ``branched_vs_scratch`` = branched / baseline wall time,
and whether the SAS-(k) logs of both are identical (they must be: same run, CPU).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from sasutils import sweep, train as T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 steps instead of 1,000")
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    n = 200 if a.quick else 1000
    small = dict(preset="cpu-tiny", hidden_size=64, intermediate_size=256, steps=n, warmup=n // 25,
                 eval_every=n // 20, checkpoint_every=n // 10, corpus_sentences=20_000, device="cpu")
    plan = [{**small, "lam": 1.0, "suppress_steps": -1}] + \
           [{**small, "lam": 1.0, "suppress_steps": f * n // 10} for f in (1, 2, 6)]
    cb = dict(sas_every=n // 20, sas_sentences=100)
    sweep.run_plan(plan[:1], tempfile.mkdtemp(), cb, workers=1)  # warm the corpus cache, not timed
    out, logs = {}, {}
    for kind, branch in (("scratch", False), ("branched", True)):
        root = Path(tempfile.mkdtemp())
        t0 = time.time()
        table = sweep.run_plan(plan, root, cb, workers=a.workers, branch=branch)
        out[f"{kind}_s"] = round(time.time() - t0, 1)
        assert set(table.status) == {"done"}, table
        logs[kind] = {r: T.read_metrics(root / r).drop(columns="wall") for r in table.run}
        print(kind, out[f"{kind}_s"], "s", flush=True)
    same = all(logs["scratch"][r].equals(logs["branched"][r]) for r in logs["scratch"])
    out.update(steps=n, workers=a.workers, branched_vs_scratch=round(out["branched_s"] / out["scratch_s"], 3),
               step_ratio=round((4 * n - sum(p["suppress_steps"] for p in plan[1:])) / (4 * n), 3),
               logs_identical=same)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
