"""APG (analytic policy gradient through gymnax's Pendulum-v1 transition gradients) beside PPO:
learning curves in env steps and in wall seconds, 5 seeds each.

    python -m benchmarks.apg_vs_ppo
    python -m benchmarks.apg_vs_ppo --replot     # redraw the plot and table from the JSON

Both run as one compiled program over the seeds (vmapped). APG: `rlpg.algos.apg` defaults
(32 envs × 32-step windows, Adam 1e-2, no critic) for 300k env steps; PPO: the Pendulum-v1
settings of `benchmarks.ppo_targets` (1M env steps). The curve is the seeds' mean episode return
during training (the last finished episodes' mean, carried forward); wall seconds are the
train time (compile excluded) spread evenly over the updates of the one program. Writes
benchmarks/results/apg-vs-ppo.{json,md} and apg-vs-ppo-Pendulum-v1.png.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rlpg import algos, experiment
from rlpg.algos import apg, ppo

RESULTS = Path(__file__).resolve().parent / "results"
ENV_ID, SEEDS, EVAL_EPISODES = "Pendulum-v1", 5, 64
RUNS = {
    "apg": (apg, dict(total_timesteps=300_000)),
    "ppo": (ppo, dict(num_envs=16, num_steps=128, total_timesteps=1_000_000, num_epochs=10, num_minibatches=32,
                      lr=1e-3, gamma=0.95, normalize_obs=True, normalize_reward=True, anneal_lr=True)),
}  # fmt: skip


def run(name: str) -> dict:
    module, overrides = RUNS[name]
    config = module.Config(env_id=ENV_ID, **overrides)
    algorithm = module.make_algorithm(config)
    train = jax.jit(algos.over_seeds(algos.train_fn(algorithm), vectorize=True))
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(SEEDS))
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(keys))
    train_s = time.perf_counter() - t0
    evaluate = algos.make_evaluate(algorithm, EVAL_EPISODES)
    evals = np.asarray(evaluate(jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys), state.params["policy"])).mean(1)
    curve = np.nanmean(experiment.latest_finished_returns(metrics["episode_return"]), axis=0)
    steps = np.asarray(metrics["env_steps"][0], np.float64)
    return {
        "config": {k: v for k, v in overrides.items()},
        "env_steps": steps.tolist(),
        "wall_seconds": (train_s * np.arange(1, steps.size + 1) / steps.size).tolist(),
        "mean_return": curve.tolist(),
        "greedy_eval_per_seed": [round(float(x), 1) for x in evals],
        "greedy_eval_median": float(np.median(evals)),
        "compile_seconds": compile_s,
        "train_seconds": train_s,
    }


def main() -> None:
    """Train both and write the results; `--replot` only redraws the plot and table from the JSON."""
    if "--replot" in sys.argv:
        results = json.loads((RESULTS / "apg-vs-ppo.json").read_text())["runs"]
    else:
        results = {name: run(name) for name in RUNS}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "apg-vs-ppo.json").write_text(json.dumps({"env": ENV_ID, "seeds": SEEDS, "runs": results}, indent=1))
    for name, r in results.items():
        r["greedy_eval_per_seed"] = [round(float(x), 1) for x in r["greedy_eval_per_seed"]]
        print(f"{name}: eval {r['greedy_eval_per_seed']} (median {r['greedy_eval_median']:.1f}), "
              f"compile {r['compile_seconds']:.0f}s, train {r['train_seconds']:.0f}s", flush=True)
    plt = experiment.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for name, r in results.items():
        axes[0].plot(r["env_steps"], r["mean_return"], label=name)
        axes[1].plot(r["wall_seconds"], r["mean_return"], label=name)
    for ax in axes:
        ax.set_xscale("log")
    axes[0].set_xlabel("env steps per seed")
    axes[1].set_xlabel("wall seconds (5 seeds in one program, compile excluded)")
    for ax in axes:
        ax.set_ylabel("mean episode return (5 seeds)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"APG (pathwise through the dynamics) vs PPO on {ENV_ID}")
    experiment.save_figure(fig, RESULTS / "apg-vs-ppo-Pendulum-v1.png")
    lines = [
        f"# APG vs PPO on {ENV_ID} ({SEEDS} seeds each, one vmapped program; 2 shared CPU cores)",
        "",
        "| algo | env steps per seed | greedy eval per seed (median) | compile s | train s |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {int(r['env_steps'][-1]):,} | {r['greedy_eval_per_seed']} ({r['greedy_eval_median']:.1f}) | "
                     f"{r['compile_seconds']:.0f} | {r['train_seconds']:.0f} |")
    lines += ["", "Learning curves: [apg-vs-ppo-Pendulum-v1.png](apg-vs-ppo-Pendulum-v1.png)", "",
              "Settings: " + "; ".join(f"{n}: {json.dumps(r['config'])}" for n, r in results.items()), ""]
    (RESULTS / "apg-vs-ppo.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'apg-vs-ppo.md'}", flush=True)


if __name__ == "__main__":
    main()
