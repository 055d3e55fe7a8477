"""Same config and key, same numbers: `experiments.train` twice, each in a new process that
compiles afresh (no persistent cache, so autotuning may choose again), compared bit for bit.

    python -m benchmarks.determinism                      # REINFORCE and PPO on CartPole-v1
    XLA_FLAGS=--xla_gpu_deterministic_ops=true python -m benchmarks.determinism    # on a GPU
    python -m benchmarks.determinism --tiny               # a few updates of REINFORCE: seconds

On a GPU, XLA picks kernels by autotuning and some reductions use atomics: without
`--xla_gpu_deterministic_ops=true` two processes may differ. Writes
benchmarks/results/determinism-<platform>.json and .md (the XLA_FLAGS in use recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from benchmarks import run_in_new_process
from rlpg import experiment

RESULTS = Path(__file__).parent / "results"
RUNS = {  # flags of experiments.train per algorithm
    "reinforce": ["--algo=reinforce", "--num-seeds=4", "--total-timesteps=100000"],
    "ppo": ["--algo=ppo", "--num-seeds=4", "--total-timesteps=100000"],
}
TINY = {"reinforce": ["--algo=reinforce", "--num-seeds=2", "--total-timesteps=256", "--num-envs=2", "--num-steps=16",
                      "--hidden", "8", "--eval-episodes=1"]}


def train_in_new_process(flags: list[str], out: Path) -> None:
    run_in_new_process(["-m", "experiments.train", f"--out={out}", "--compile-cache=off", "--log-every=0", *flags])


def compare(a: Path, b: Path) -> dict:
    """Bitwise comparison of two run folders: metrics.csv, the final parameters, the evaluation."""
    params_a, params_b = (jax.tree.leaves(experiment.restore_params(d / experiment.CHECKPOINT_DIR)) for d in (a, b))
    eval_a, eval_b = (json.loads((d / experiment.SUMMARY_FILE).read_text())["eval_return_mean"] for d in (a, b))
    return {
        "metrics_identical": (a / experiment.METRICS_FILE).read_bytes() == (b / experiment.METRICS_FILE).read_bytes(),
        "params_identical": len(params_a) == len(params_b) and all(np.array_equal(x, y) for x, y in zip(params_a, params_b)),
        "eval_identical": eval_a == eval_b,
        "eval_return_mean": eval_a,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a few updates of REINFORCE: seconds on a CPU")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the result files")
    args = parser.parse_args()
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    xla_flags = os.environ.get("XLA_FLAGS", "")
    result = {"device": device, "jax": jax.__version__, "xla_flags": xla_flags, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for algo, flags in (TINY if args.tiny else RUNS).items():
            for name in ("first", "second"):
                train_in_new_process(flags, Path(tmp) / f"{algo}-{name}")
            result["runs"][algo] = {"flags": flags, **compare(Path(tmp) / f"{algo}-first", Path(tmp) / f"{algo}-second")}
            print(f"{algo}: {result['runs'][algo]}", flush=True)
    result["identical"] = all(r["metrics_identical"] and r["params_identical"] and r["eval_identical"] for r in result["runs"].values())
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"determinism-{jax.devices()[0].platform}{'-tiny' if args.tiny else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Determinism on {device} (jax {jax.__version__})", "",
             f"`experiments.train` twice per algorithm, each in a new process compiling afresh; XLA_FLAGS=`{xla_flags}`.", "",
             "| algorithm | flags | metrics.csv | final parameters | evaluation |", "| --- | --- | --- | --- | --- |"]
    same = {True: "identical", False: "**differ**"}
    lines += [f"| {algo} | `{' '.join(r['flags'])}` | {same[r['metrics_identical']]} | {same[r['params_identical']]} | "
              f"{same[r['eval_identical']]} |" for algo, r in result["runs"].items()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"{'bit for bit identical' if result['identical'] else 'NOT identical'}; wrote {stem}.json and .md", flush=True)


if __name__ == "__main__":
    sys.exit(main())
