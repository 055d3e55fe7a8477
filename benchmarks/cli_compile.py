"""Compile seconds of `rlpg-train` runs that share one persistent compilation cache: the default run
on an empty cache folder, the same run again, runs that differ from it only in numeric fields
(traced, so the same programs), and, as the control, a run with another static field (other
shapes, so new programs). Each run is a new process; each round starts from an empty folder.

    python -m benchmarks.cli_compile                 # the default run, 2 rounds
    python -m benchmarks.cli_compile --quick         # 20,480 env steps per seed: the compile alone

`compile_seconds` is the run's own figure (summary.json: tracing, lowering and XLA compiling or
loading every program of the run). Writes benchmarks/results/cli-compile-<platform>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import tyro

from benchmarks import run_in_new_process, value_range
from experiments import train

RESULTS = Path(__file__).parent / "results"
RUNS = {  # in this order, on one cache folder; the first fills it
    "first run (empty folder)": [],
    "the same run again": [],
    "--lr 1e-3": ["--lr", "1e-3"],
    "--ent-coef 0.01 --gamma 0.95": ["--ent-coef", "0.01", "--gamma", "0.95"],
    "--num-seeds 3 (one program per seed)": ["--num-seeds", "3"],
    "--num-envs 32 (static: new programs)": ["--num-envs", "32"],
}
QUICK = ["--total-timesteps", "20480"]


def run_flags(name: str, quick: bool) -> list[str]:
    """experiments.train's flags of run `name` (besides --out and --compile-cache)."""
    return ["--log-every", "0", *(QUICK if quick else []), *RUNS[name]]


def check_configs(quick: bool) -> None:
    """Every run's flags parse to a valid config: a bad one fails here, before anything runs."""
    for name in RUNS:
        train.make_config(tyro.cli(train.Args, args=run_flags(name, quick)))


def one_round(quick: bool) -> dict[str, dict]:
    """Every run of `RUNS` once, in order, new processes sharing a new cache folder."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(RUNS):
            run_dir = Path(tmp) / f"run{i}"
            run_in_new_process(["-m", "experiments.train", f"--out={run_dir}", f"--compile-cache={Path(tmp) / 'cache'}",
                                *run_flags(name, quick)])
            summary = json.loads((run_dir / "summary.json").read_text())
            out[name] = {key: summary[key] for key in ("compile_seconds", "train_seconds", "xla_programs", "xla_programs_from_cache")}
            print(f"{name}: compile {out[name]['compile_seconds']:.2f}s, train {out[name]['train_seconds']:.2f}s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each on an empty cache folder")
    parser.add_argument("--quick", action="store_true", help=f"train {QUICK[1]} env steps per seed")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the result files")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1; got {args.rounds}")
    check_configs(args.quick)
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    rounds = [one_round(args.quick) for _ in range(args.rounds)]
    first = next(iter(RUNS))
    rows = {}
    for name in RUNS:
        seconds = [r[name]["compile_seconds"] for r in rounds]
        share = [r[name]["compile_seconds"] / r[first]["compile_seconds"] for r in rounds]
        rows[name] = {"flags": RUNS[name], "compile_seconds": seconds, "of_first": share,
                      "train_seconds": [r[name]["train_seconds"] for r in rounds],
                      **{key: [r[name][key] for r in rounds] for key in ("xla_programs", "xla_programs_from_cache")}}
    result = {"device": device, "jax": jax.__version__, "quick": args.quick, "rounds": args.rounds, "runs": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"cli-compile-{jax.devices()[0].platform}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# rlpg-train's compile on a shared cache folder, {device} (jax {jax.__version__})", "",
             f"The default run{' at ' + QUICK[1] + ' env steps per seed' if args.quick else ''}, then runs that differ "
             f"from it, in new processes on one cache folder; {args.rounds} round(s), each on an empty folder. "
             "`compile_seconds` from each run's summary.json.", "",
             "| run | compile s | of the first run's | XLA programs from the cache | train s |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {value_range(r['compile_seconds'])} | {value_range(np.multiply(r['of_first'], 100), '{:.0f}')}% | "
              f"{value_range(r['xla_programs_from_cache'], '{:d}')} of {value_range(r['xla_programs'], '{:d}')} | "
              f"{value_range(r['train_seconds'])} |" for name, r in rows.items()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    print(f"wrote {stem}.json and .md", flush=True)


if __name__ == "__main__":
    sys.exit(main())
