"""PPO beyond CartPole: Acrobot-v1, Pendulum-v1 (1M steps) and MinAtar Breakout, several seeds.

    python -m benchmarks.ppo_targets                       # all three
    python -m benchmarks.ppo_targets --only Pendulum-v1    # one of them

Measurements for the record, not tests: final greedy AND stochastic evaluation (64 episodes per
seed, after training), per seed, and learning curves. Writes
benchmarks/results/ppo-targets.{json,md} and ppo-<env>.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rlpg import algos, compile_cache, experiment
from rlpg.algos import ppo

RESULTS = Path(__file__).parent / "results"
RUNS = {
    "Acrobot-v1": dict(seeds=5, config=dict(num_envs=16, num_steps=128, total_timesteps=500_000, num_epochs=4,
                                            num_minibatches=8, lr=2.5e-3)),
    "Pendulum-v1": dict(seeds=5, config=dict(num_envs=16, num_steps=128, total_timesteps=1_000_000, num_epochs=10,
                                             num_minibatches=32, lr=1e-3, gamma=0.95, normalize_obs=True,
                                             normalize_reward=True, anneal_lr=True)),
    "Breakout-MinAtar": dict(seeds=3, config=dict(num_envs=64, num_steps=128, total_timesteps=3_000_000, num_epochs=4,
                                                  num_minibatches=8, lr=1e-3, ent_coef=0.01, anneal_lr=True,
                                                  hidden=(128, 128), activation="relu")),
}


def run(env_id: str, seeds: int, config: dict, eval_episodes: int = 64) -> dict:
    algorithm = ppo.make_algorithm(ppo.Config(env_id=env_id, **config))
    train = jax.jit(algos.over_seeds(algos.train_fn(algorithm), vectorize=True))
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds))
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    t1 = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(keys))
    t2 = time.perf_counter()
    result = {"env": env_id, "seeds": seeds, "config": config, "compile_s": t1 - t0, "train_s": t2 - t1}
    for greedy in (True, False):
        evaluate = algos.make_evaluate(algorithm, eval_episodes, greedy)
        returns = np.asarray(evaluate(jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys), state.params["policy"]))
        name = "greedy" if greedy else "stochastic"
        result[f"{name}_eval"] = returns.mean(axis=1).tolist()
        result[f"{name}_median"] = float(np.median(returns.mean(axis=1)))
    curve = experiment.latest_finished_returns(metrics["episode_return"]).mean(0)  # the plot's mean line
    steps = np.asarray(metrics["env_steps"])[0]
    idx = np.unique(np.linspace(0, len(steps) - 1, 21).astype(int))
    result["curve"] = {"env_steps": steps[idx].tolist(), "mean_return": curve[idx].tolist()}
    RESULTS.mkdir(exist_ok=True)
    experiment.plot_learning_curve(RESULTS / f"ppo-{env_id}.png", metrics, f"rlpg PPO on {env_id}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(RUNS), action="append")
    args = parser.parse_args()
    compile_cache.enable()  # $RLPG_COMPILE_CACHE or ~/.cache/rlpg/jax; RLPG_COMPILE_CACHE=off for cold compiles
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    path = RESULTS / "ppo-targets.json"
    results = json.loads(path.read_text())["runs"] if path.exists() else {}
    for env_id in args.only or RUNS:
        r = run(env_id, **RUNS[env_id])
        results[env_id] = {**r, "device": device, "jax": jax.__version__}
        print(f"{env_id}: greedy {np.round(r['greedy_eval'], 1).tolist()} (median {r['greedy_median']:.1f}), "
              f"stochastic {np.round(r['stochastic_eval'], 1).tolist()} (median {r['stochastic_median']:.1f}); "
              f"compile {r['compile_s']:.0f}s, train {r['train_s']:.0f}s", flush=True)
        path.write_text(json.dumps({"runs": results}, indent=2) + "\n")
    lines = ["# rlpg PPO beyond CartPole", "",
             "Final evaluation after training, 64 episodes per seed; seeds vmapped in one program; the machine's 2 "
             "CPU cores were shared with other jobs (times are wall seconds).", "",
             "| env | seeds | env steps per seed | greedy eval per seed (median) | stochastic eval per seed (median) | compile s | train s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for env_id, r in results.items():
        lines.append(f"| {env_id} | {r['seeds']} | {r['config']['total_timesteps']:,} | "
                     f"{np.round(r['greedy_eval'], 1).tolist()} ({r['greedy_median']:.1f}) | "
                     f"{np.round(r['stochastic_eval'], 1).tolist()} ({r['stochastic_median']:.1f}) | "
                     f"{r['compile_s']:.0f} | {r['train_s']:.0f} |")
    lines += ["", "Learning curves (mean episode return of the seeds during training): "
              + ", ".join(f"[{e}](ppo-{e}.png)" for e in results), "",
              "Settings: " + "; ".join(f"{e}: {json.dumps(r['config'])}" for e, r in results.items()), ""]
    (RESULTS / "ppo-targets.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS}/ppo-targets.json and .md")


if __name__ == "__main__":
    sys.exit(main())
