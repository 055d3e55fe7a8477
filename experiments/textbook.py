"""The classic textbook examples as REINFORCE runs, scored by exact values.

    python -m experiments.textbook --out runs/textbook            # 5 seeds per world
    python -m experiments.textbook --out runs/textbook-q --num-seeds 2 --quick

REINFORCE (`rlpg.algos.reinforce`, linear policies: softmax over observation ⊗ action
features, or a Gaussian with linear mean) on the textbook worlds of `rlpg.envs`:
- MultiArmedBandit-v0 (arms 1, 2, 4, 3): exact J = Σ_a π(a) mean_a, best 4;
- ContinuousBandit-v0 (optimum 1.5): exact E[r] = −((μ − 1.5)² + σ²), best 0 as σ → 0;
- CliffWalking-v0: exact undiscounted return over the 200-step limit, best −13 (the edge path);
- AliasedGridworld-v0: exact return over the 100-step limit, against the best deterministic
  policy over observations (it must take one action in both grey cells) and the best
  stochastic one (exact gradient ascent over the same features).
Writes results.json, results.md and learning_curves.png into --out.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from experiments import train as train_cli
from rlpg import algos, exact, experiment
from rlpg.algos import reinforce

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CURVES_PLOT = "learning_curves.png"

# One REINFORCE config per world (policy="linear"); gamma = 1 where the score is the
# undiscounted episode return.
RUNS = {
    "MultiArmedBandit-v0": dict(num_envs=16, num_steps=8, total_timesteps=12_800, lr=0.05, baseline="mean"),
    "ContinuousBandit-v0": dict(num_envs=16, num_steps=8, total_timesteps=25_600, lr=0.05, baseline="mean"),
    "CliffWalking-v0": dict(num_envs=16, num_steps=200, total_timesteps=640_000, lr=0.05, gamma=1.0, reward_scale=0.01),
    "AliasedGridworld-v0": dict(num_envs=16, num_steps=100, total_timesteps=160_000, lr=0.05, gamma=1.0),
}


@dataclasses.dataclass
class Args:
    out: Path = Path("runs/textbook")
    """output folder"""
    overwrite: bool = False
    """replace an existing output folder"""
    num_seeds: int = 5
    """REINFORCE seeds per world (one seed's program, called seed by seed)"""
    seed: int = 0
    """PRNG seed of the first run"""
    quick: bool = False
    """a quarter of each run's env steps"""


def textbook_config(env_id: str, quick: bool = False) -> reinforce.Config:
    """The REINFORCE config of `RUNS[env_id]` (a quarter of the steps when `quick`)."""
    values = dict(RUNS[env_id], env_id=env_id, policy="linear")
    if quick:
        values["total_timesteps"] //= 4
    return reinforce.Config(**values).validate()


def exact_score(env, env_params, policy_params) -> jax.Array:
    """The exact expected episode return of the linear policy `policy_params` in `env`.

    Finite worlds: `finite_horizon_expected_return` with logits φθ over the time limit H.
    The continuous bandit: its closed-form `expected_reward(μ, log σ)`.
    """
    if hasattr(env, "tabular_mdp"):
        horizon = int(env_params.max_steps_in_episode)
        return exact.finite_horizon_expected_return(env.tabular_mdp(), env.features() @ policy_params, horizon)
    mean = policy_params["theta"][0]  # μ = φᵀθ with the constant observation φ = [1]
    return env.expected_reward(mean, policy_params["log_std"])


def reference_scores(env_id: str, env, env_params) -> dict[str, float]:
    """What the runs are measured against: the best possible score, and for the aliased
    gridworld the best deterministic and the best stochastic policy over observations."""
    if not hasattr(env, "tabular_mdp"):
        return {"best": 0.0}
    mdp, horizon = env.tabular_mdp(), int(env_params.max_steps_in_episode)

    @jax.jit  # one program per world: op by op, these compile some 50 small kernels
    def scores():
        out = {"best": exact.finite_horizon_optimal_return(mdp, horizon)}
        if env_id == "AliasedGridworld-v0":
            logits = exact.deterministic_observation_policies(env_params.observations, env.num_actions)
            values = jax.vmap(exact.finite_horizon_expected_return, in_axes=(None, 0, None))(mdp, logits, horizon)
            out["best_deterministic_over_observations"] = values.max()
            phi = env.features()
            grad = jax.grad(lambda th: exact.finite_horizon_expected_return(mdp, phi @ th, horizon))
            theta = jax.lax.fori_loop(0, 2000, lambda _, th: th + 0.05 * grad(th), jnp.zeros(phi.shape[-1]))
            out["best_stochastic_over_observations"] = exact.finite_horizon_expected_return(mdp, phi @ theta, horizon)
        return out

    return {name: float(value) for name, value in scores().items()}


def run_world(env_id: str, num_seeds: int, seed: int, quick: bool) -> dict:
    """Train `num_seeds` REINFORCE runs on one world; their exact scores, curves and references."""
    config = textbook_config(env_id, quick)
    algorithm = reinforce.make_algorithm(config)
    env, env_params = algorithm.env, algorithm.env_params
    keys = jax.vmap(jax.random.PRNGKey)(seed + jnp.arange(num_seeds))
    t0 = time.perf_counter()
    run = train_cli.compile_over_seeds(algos.train_fn(algorithm), (keys,), mesh=None, vectorize=False)  # seed by seed
    state, metrics = jax.block_until_ready(run(keys))
    seconds = time.perf_counter() - t0
    score = jax.jit(jax.vmap(lambda p: exact_score(env, env_params, p)))  # one program for both calls, not op by op
    initial = score(jax.vmap(algorithm.policy.init)(keys))[0]  # seed 0's initial policy
    return {
        "env": env_id,
        "config": dataclasses.asdict(config),
        "env_steps_per_seed": config.num_updates * config.steps_per_update,
        "seconds": seconds,
        "initial_exact_return": float(initial),
        "final_exact_return": np.asarray(score(state.params["policy"])).tolist(),
        **reference_scores(env_id, env, env_params),
        "curve_env_steps": np.asarray(metrics["env_steps"][0]).tolist(),
        "curve_episode_return": np.asarray(metrics["episode_return"]).tolist(),
    }


def markdown_table(results: list[dict]) -> str:
    """One row per world: initial, final (median and range over seeds) and reference scores."""
    lines = [
        "| world | env steps/seed | initial | final median [min, max] | best | best deterministic over obs | best stochastic over obs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        final = np.asarray(r["final_exact_return"])
        cell = lambda key: f"{r[key]:.2f}" if key in r else "—"
        lines.append(
            f"| {r['env']} | {r['env_steps_per_seed']:,} | {r['initial_exact_return']:.2f} | "
            f"{np.median(final):.2f} [{final.min():.2f}, {final.max():.2f}] | {cell('best')} | "
            f"{cell('best_deterministic_over_observations')} | {cell('best_stochastic_over_observations')} |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(path: Path, results: list[dict]) -> None:
    """Episode return against env steps, one panel per world, one line per seed."""
    plt = experiment.pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4))
    for ax, r in zip(np.atleast_1d(axes), results):
        steps = np.asarray(r["curve_env_steps"])
        for curve in np.asarray(r["curve_episode_return"]):
            ax.plot(steps, curve, lw=1, alpha=0.8)
        if "best" in r:
            ax.axhline(r["best"], color="k", ls="--", lw=1, label="best")
        if "best_deterministic_over_observations" in r:
            ax.axhline(r["best_deterministic_over_observations"], color="r", ls=":", lw=1, label="best deterministic")
        ax.set_title(r["env"])
        ax.set_xlabel("env steps")
        ax.legend(loc="lower right", fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("episode return (REINFORCE seeds)")
    experiment.save_figure(fig, path)


def main(args: Args) -> list[dict]:
    if args.num_seeds < 1:
        raise ValueError(f"`num_seeds` must be >= 1; got {args.num_seeds}.")
    out = experiment.prepare_run_dir(args.out, args.overwrite, marker=RESULTS_JSON)
    results = []
    for env_id in RUNS:
        result = run_world(env_id, args.num_seeds, args.seed, args.quick)
        final = np.asarray(result["final_exact_return"])
        print(f"{env_id}: exact return {result['initial_exact_return']:.2f} -> median {np.median(final):.2f} "
              f"(best {result['best']:.2f}) in {result['seconds']:.1f}s", flush=True)
        results.append(result)
    experiment.write_json(out / RESULTS_JSON, results)
    (out / RESULTS_MD).write_text(markdown_table(results))
    plot_curves(out / CURVES_PLOT, results)
    print(markdown_table(results), f"wrote {out}", sep="\n", flush=True)
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
