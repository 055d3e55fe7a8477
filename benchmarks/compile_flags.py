"""XLA's CPU compile flags: compile seconds against run speed and numbers, measured.

    python -m benchmarks.compile_flags                 # 2 rounds of each variant: 12 minutes on 2 cores
    python -m benchmarks.compile_flags --rounds 1

rlpg leaves XLA's optimization flags at their defaults (rlpg/_xla.py only turns off two
scheduler settings that hang; the test suite adds `_xla.FAST_COMPILE_CPU_FLAGS`). With
`XLA_FLAGS=--xla_backend_optimization_level=1`, XLA hands its CPU kernels to LLVM at -O1, and
`--xla_cpu_use_fusion_emitters=false` has it emit fusions with its legacy emitters instead of
the MLIR ones: a cold compile is shorter, the kernels may run slower, and their floating-point
results may differ in the last bits, which training then amplifies. This script measures that
trade, so that a user who iterates on short runs can choose it knowingly. One more variant keeps
jax's own CPU lowering of its random hash (a loop) instead of the straight-line one rlpg's entry
points choose (`rlpg.unroll_threefry_on_cpu`): what that choice buys, at the same numbers.

Each variant runs in new processes with the persistent compilation cache off (every compile
cold), the variants alternating round by round: the CartPole-v1 solve of `benchmarks.throughput`
(compile split into JAX tracing and XLA), REINFORCE training env-steps/s at 16 and 1024 envs
(the faster of two calls after compiling), PPO at rejax's settings (`benchmarks.ppo_vs_rejax`,
with a digest of its final parameters), and the compile of a 60-layer policy's init (many draws
outside any loop: where jax's threefry loop compiles faster). Writes
benchmarks/results/compile-flags-<platform>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks import ppo_vs_rejax, run_in_new_process, throughput, value_range
import rlpg
from rlpg import compile_cache, policies

RESULTS = Path(__file__).parent / "results"
ROLLED_THREEFRY = "jax's threefry loop"  # XLA's defaults, without `rlpg.unroll_threefry_on_cpu`
VARIANTS = {  # appended to XLA_FLAGS
    "default": "",
    "llvm-O1": "--xla_backend_optimization_level=1",
    "no-fusion-emitters": "--xla_cpu_use_fusion_emitters=false",
    "llvm-O1 + no-fusion-emitters": "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false",
    ROLLED_THREEFRY: "",
}
PPO_TIMESTEPS = 131_072
TRAINING_SIZES = [(16, 64), (1024, 8)]  # (num_envs, num_updates) of 128 steps
DEEP_LAYERS = 60  # hidden layers of the policy whose init is compiled


def measure(rolled_threefry: bool = False) -> dict:
    """One variant's figures, in this process (its XLA_FLAGS set by the caller), with the random
    hash lowered as rlpg's entry points lower it, or as jax does by default (`rolled_threefry`)."""
    compile_cache.enable("off")
    if not rolled_threefry:
        rlpg.unroll_threefry_on_cpu()
    solve = throughput.solve_time()
    training = {str(n): max(throughput.training(n, 128, u)["steps_per_s"] for _ in range(2)) for n, u in TRAINING_SIZES}
    ppo = ppo_vs_rejax.rlpg_ppo(PPO_TIMESTEPS, 1, eval_episodes=16)
    return {"solve": solve, "reinforce_steps_per_s": training, "deep_init_compile_s": deep_init_compile_s(),
            "ppo": {k: ppo[k] for k in ("first_call_s", "steps_per_s", "params_sha256", "greedy_eval")}}


def deep_init_compile_s() -> float:
    """Seconds to compile the init of a categorical policy with `DEEP_LAYERS` hidden layers of 64."""
    policy = policies.mlp_categorical((4,), 2, hidden=(64,) * DEEP_LAYERS)
    key = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    jax.jit(policy.init).lower(key).compile()
    return time.perf_counter() - t0


def variant_env(xla_flags: str) -> dict[str, str]:
    """A variant's flags appended to this process's XLA_FLAGS (a later flag wins)."""
    return {"XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}".strip()}


def measure_in_new_process(name: str) -> dict:
    worker = ["-m", "benchmarks.compile_flags", "--worker", *(["--rolled-threefry"] if name == ROLLED_THREEFRY else [])]
    stdout = run_in_new_process(worker, env=variant_env(VARIANTS[name]))
    return json.loads(stdout.strip().splitlines()[-1])


def summarize(runs: list[dict], default: list[dict]) -> dict:
    """Ranges over rounds ([min, max]) of a variant's figures, and whether its numbers equal the default's."""
    span = lambda values: [float(min(values)), float(max(values))]
    return {
        "solve_compile_s": span([r["solve"]["compile_s"] for r in runs]),
        "solve_trace_lower_s": span([r["solve"]["trace_lower_s"] for r in runs]),
        "solve_xla_s": span([r["solve"]["xla_s"] for r in runs]),
        "solve_wall_s": span([r["solve"]["wall_s"] for r in runs]),
        "reinforce_steps_per_s": {n: span([r["reinforce_steps_per_s"][n] for r in runs]) for n in runs[0]["reinforce_steps_per_s"]},
        "ppo_first_call_s": span([r["ppo"]["first_call_s"] for r in runs]),
        "ppo_steps_per_s": span([r["ppo"]["steps_per_s"] for r in runs]),
        "deep_init_compile_s": span([r["deep_init_compile_s"] for r in runs]),
        "solve_returns_equal_default": all(r["solve"]["training_returns"] == default[0]["solve"]["training_returns"] for r in runs),
        "ppo_params_equal_default": all(r["ppo"]["params_sha256"] == default[0]["ppo"]["params_sha256"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="new processes per variant, variants alternating")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the result files")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rolled-threefry", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.rolled_threefry)))
        return
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1; got {args.rounds}")
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    runs = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds):
        for name in VARIANTS:
            runs[name].append(measure_in_new_process(name))
            r = runs[name][-1]
            print(f"round {round_ + 1} {name}: solve compile {r['solve']['compile_s']:.2f}s (XLA {r['solve']['xla_s']:.2f}s), "
                  f"REINFORCE {', '.join(f'{n} envs {v:,.0f}' for n, v in r['reinforce_steps_per_s'].items())} env-steps/s, "
                  f"PPO {r['ppo']['steps_per_s']:,.0f} env-steps/s", flush=True)
    summary = {name: summarize(rs, runs["default"]) for name, rs in runs.items()}
    result = {"device": device, "jax": jax.__version__, "base_xla_flags": os.environ.get("XLA_FLAGS", ""),
              "variants": VARIANTS, "summary": summary, "runs": runs}
    same = {True: "identical", False: "**differ**"}
    lines = [f"# XLA's CPU compile flags on {device} (jax {jax.__version__})", "",
             f"Each variant in {args.rounds} new process(es), variants alternating, persistent cache off (cold compiles); "
             "ranges over the rounds. Solve: `benchmarks.throughput` (default REINFORCE, 5 seeds, CartPole-v1). "
             f"PPO: rejax's settings, {PPO_TIMESTEPS:,} steps, 1 seed, env-steps/s of a second call. "
             "Every variant but the last lowers jax's random hash as rlpg's entry points do (`rlpg.unroll_threefry_on_cpu`); "
             "the last keeps jax's CPU lowering, a loop.", "",
             "| variant | XLA_FLAGS added | solve compile s (of it XLA) | solve wall s | "
             + " | ".join(f"REINFORCE {n} envs env-steps/s" for n, _ in TRAINING_SIZES)
             + f" | PPO first call s | PPO env-steps/s | {DEEP_LAYERS}-layer init compile s | numbers vs default |",
             "| --- | --- | --- | --- | " + "--- | " * len(TRAINING_SIZES) + "--- | --- | --- | --- |"]
    for name, s in summary.items():
        numbers = (f"solve returns {same[s['solve_returns_equal_default']]}, PPO parameters {same[s['ppo_params_equal_default']]}"
                   if name != "default" else "(the reference)")
        lines.append(f"| {name} | {f'`{VARIANTS[name]}`' if VARIANTS[name] else '(none)'} | {value_range(s['solve_compile_s'])} ({value_range(s['solve_xla_s'])}) | "
                     f"{value_range(s['solve_wall_s'], '{:.1f}')} | "
                     + " | ".join(value_range(s["reinforce_steps_per_s"][str(n)], "{:,.0f}") for n, _ in TRAINING_SIZES)
                     + f" | {value_range(s['ppo_first_call_s'], '{:.1f}')} | {value_range(s['ppo_steps_per_s'], '{:,.0f}')} | "
                     f"{value_range(s['deep_init_compile_s'], '{:.1f}')} | {numbers} |")
    base = np.mean(summary["default"]["solve_xla_s"])
    for name, s in summary.items():
        if name != "default":
            ratio = lambda figure: np.mean(figure(s)) / np.mean(figure(summary["default"]))
            lines += ["", f"{name}: XLA's share of the solve's compile {np.mean(s['solve_xla_s']):.2f} s against "
                      f"{base:.2f} s by default ({np.mean(s['solve_xla_s']) / base:.0%}); env-steps/s of the default's: "
                      + ", ".join(f"REINFORCE {n} envs {ratio(lambda r: r['reinforce_steps_per_s'][str(n)]):.0%}"
                                  for n, _ in TRAINING_SIZES)
                      + f", PPO {ratio(lambda r: r['ppo_steps_per_s']):.0%}."]
    print("\n".join(lines), flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"compile-flags-{jax.devices()[0].platform}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and .md", flush=True)


if __name__ == "__main__":
    sys.exit(main())
