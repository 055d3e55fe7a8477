"""What nothing-lost costs: the default CartPole run in one program vs in chunks with a resume
point saved after each (experiments.train --checkpoint-every), in one process.

    python -m benchmarks.checkpoint_cost

The non-finite check reads the loss and gradient norm the update reports anyway, on the host,
once per chunk: nothing is added inside the compiled program. Prints a table and writes
benchmarks/results/checkpoint-cost-<platform>.{json,md}.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from experiments import train as train_cli
from rlpg import compile_cache

RESULTS = Path(__file__).parent / "results"
CHUNKS = (0, 25, 5)  # 0: one program, no resume points; the default run has 125 updates
REPEATS = 3


def main() -> None:
    compile_cache.enable()
    rows = {k: [] for k in CHUNKS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(REPEATS):  # interleaved, so load on a shared machine hits every setting alike
            for every in CHUNKS:
                t0 = time.perf_counter()
                summary = train_cli.run(train_cli.Args(out=Path(tmp) / f"{every}-{rep}", checkpoint_every=every, log_every=0))
                wall = time.perf_counter() - t0
                rows[every].append({"wall_s": wall, "train_s": summary["train_seconds"], "compile_s": summary["compile_seconds"]})
    base = np.median([r["wall_s"] - r["compile_s"] for r in rows[0]])
    result = {"device": jax.devices()[0].platform, "repeats": REPEATS, "settings": []}
    lines = ["| checkpoint every | resume points | wall s (median) | train + saving s | vs one program |", "| --- | --- | --- | --- | --- |"]
    for every in CHUNKS:
        run_s = float(np.median([r["wall_s"] - r["compile_s"] for r in rows[every]]))
        points = 0 if every == 0 else -(-125 // every)
        entry = {"checkpoint_every": every, "resume_points": points, "runs": rows[every], "run_s": run_s, "ratio": run_s / base}
        result["settings"].append(entry)
        lines.append(f"| {every or 'never (one program)'} | {points} | {np.median([r['wall_s'] for r in rows[every]]):.1f} | {run_s:.1f} | {run_s / base:.2f}x |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"checkpoint-cost-{result['device']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(
        "# Cost of resume points (default CartPole run, 5 seeds x 125 updates)\n\n"
        "`train + saving` = wall time minus compile: training, evaluation, writing the run folder and the resume points.\n\n"
        + table + "\n"
    )
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
