"""Train a policy-gradient agent on a gymnax environment, many seeds in one XLA program.

    python -m experiments.train                          # REINFORCE on CartPole-v1, 5 seeds
    python -m experiments.train --env Acrobot-v1 --num-seeds 3 --out runs/acrobot

Seed i of a run (i = 0 .. num_seeds − 1) uses PRNG seed `seed + i`, so `--seed 3 --num-seeds 1`
reproduces the fourth seed of `--seed 0 --num-seeds 5`, bit for bit (unless --vectorize-seeds).
Writes config.json, metrics.csv, summary.json, learning_curve.png and checkpoint/ into --out.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from rlpg import algos, experiment, rollout


@dataclasses.dataclass
class Args:
    """Flags left at None take the algorithm's default (its `Config`)."""

    algo: Literal["reinforce", "a2c", "ppo", "npg"] = "reinforce"
    """training algorithm"""
    env: str = "CartPole-v1"
    """gymnax environment id"""
    num_seeds: int = 5
    """independent runs, in one program"""
    seed: int = 0
    """PRNG seed of the first run; run i uses seed + i"""
    total_timesteps: int | None = None
    """environment steps per seed"""
    num_envs: int | None = None
    """parallel environments per seed"""
    num_steps: int | None = None
    """steps per environment per update (the rollout window)"""
    lr: float | None = None
    """Adam learning rate (NPG: of the value network)"""
    gamma: float | None = None
    """discount"""
    returns: Literal["reward_to_go", "total"] | None = None
    """REINFORCE: weight of each log-prob, reward-to-go G_t or the whole episode's return R(τ)"""
    baseline: Literal["none", "mean", "value"] | None = None
    """REINFORCE: subtracted from the returns, none, the batch mean, or a learned V(s)"""
    normalize: bool | None = None
    """standardize the weights (advantages) over each batch"""
    value_coef: float | None = None
    """weight of the value loss"""
    ent_coef: float | None = None
    """entropy bonus"""
    max_grad_norm: float | None = None
    """global-norm gradient clipping"""
    reward_scale: float | None = None
    """rewards are multiplied by this before returns are formed (metrics stay unscaled)"""
    lam: float | None = None
    """GAE λ (actor-critic algorithms)"""
    clip_eps: float | None = None
    """PPO: clipping range ε of the probability ratio (and of the value, with --clip-value)"""
    num_epochs: int | None = None
    """PPO: passes over each batch"""
    num_minibatches: int | None = None
    """PPO: minibatches per pass (must divide num_envs × num_steps)"""
    normalize_advantages: bool | None = None
    """A2C, PPO: standardize the advantages of each batch (PPO: of each minibatch)"""
    clip_value: bool | None = None
    """PPO: clipped value loss"""
    anneal_lr: bool | None = None
    """A2C, PPO: decay the learning rate linearly to 0"""
    normalize_obs: bool | None = None
    """PPO: standardize observations with one running mean/variance (kept in the policy's parameters)"""
    normalize_reward: bool | None = None
    """PPO: divide rewards by the running std of the discounted return"""
    max_kl: float | None = None
    """NPG: trust region δ, the KL each natural-gradient step aims at"""
    cg_iters: int | None = None
    """NPG: conjugate-gradient iterations for F⁻¹g"""
    damping: float | None = None
    """NPG: ζ added to the Fisher's diagonal"""
    value_steps: int | None = None
    """NPG: full-batch Adam steps of the value network per update"""
    hidden: tuple[int, ...] | None = None
    """hidden layer widths of the MLPs"""
    vectorize_seeds: bool = False
    """vmap the seeds (faster on accelerators) instead of looping over them in the program
    (the default: seed i equals the same seed run alone, bit for bit)"""
    log_every: int = 10
    """print a progress line every this many updates (0: never)"""
    eval_episodes: int = 32
    """episodes per seed in the final evaluation"""
    greedy_eval: bool = True
    """evaluate the distribution's mode (else sample actions)"""
    out: Path | None = None
    """run folder (default: runs/<algo>-<env>-<time>)"""
    overwrite: bool = False
    """replace an existing run folder"""


# Flags of the script itself; every other flag is a field of the algorithm's Config.
SCRIPT_FLAGS = ("algo", "env", "num_seeds", "seed", "vectorize_seeds", "eval_episodes", "greedy_eval", "out", "overwrite")


def make_config(args: Args):
    """(algorithm module, its validated Config) from the command-line arguments.

    A flag the chosen algorithm has no field for is an error, not silently ignored.
    """
    module = experiment.algo_module(args.algo)
    fields = {f.name for f in dataclasses.fields(module.Config)}
    values = {"env_id": args.env, "log_every": args.log_every}
    for flag in dataclasses.fields(Args):
        value = getattr(args, flag.name)
        if flag.name in SCRIPT_FLAGS or flag.name == "log_every" or value is None:
            continue
        if flag.name not in fields:
            raise ValueError(f"`--{flag.name.replace('_', '-')}` does not apply to --algo {args.algo}.")
        values[flag.name] = tuple(value) if isinstance(value, (list, tuple)) else value
    return module, module.Config(**values).validate()


def run(args: Args) -> dict:
    """Train, evaluate and write the run folder; returns the summary."""
    if args.num_seeds < 1:
        raise ValueError(f"`num_seeds` must be >= 1; got {args.num_seeds}.")
    if args.eval_episodes < 1:
        raise ValueError(f"`eval_episodes` must be >= 1; got {args.eval_episodes}.")
    module, config = make_config(args)
    out = args.out or Path("runs") / f"{args.algo}-{args.env}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = experiment.prepare_run_dir(out, args.overwrite)
    experiment.write_json(out / experiment.CONFIG_FILE, {
        "algo": args.algo, "num_seeds": args.num_seeds, "seed": args.seed,
        "config": dataclasses.asdict(config), "args": dataclasses.asdict(args),
    })
    print(f"{args.algo} on {args.env}: {args.num_seeds} seeds x {config.num_updates} updates x "
          f"{config.steps_per_update} env steps -> {out}", flush=True)

    # One program for all seeds. Compile first, so the two times are apart.
    progress = experiment.ProgressPrinter(args.num_seeds, config.num_updates, args.vectorize_seeds)
    algorithm = module.make_algorithm(config, progress)
    train = jax.jit(algos.over_seeds(algos.train_fn(algorithm), args.vectorize_seeds))
    keys = jax.vmap(jax.random.PRNGKey)(args.seed + jnp.arange(args.num_seeds))
    t0 = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(keys))
    train_s = time.perf_counter() - t0

    evaluate = jax.jit(jax.vmap(lambda key, params: rollout.evaluate(
        key, algorithm.policy, params, algorithm.env, algorithm.env_params, args.eval_episodes, args.greedy_eval
    )))
    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    eval_returns = np.asarray(evaluate(eval_keys, state.params["policy"]))

    total_steps = config.num_updates * config.steps_per_update
    summary = {
        "algo": args.algo,
        "env": args.env,
        "num_seeds": args.num_seeds,
        "env_steps_per_seed": total_steps,
        "eval_greedy": args.greedy_eval,
        "eval_return_mean": eval_returns.mean(axis=1).tolist(),
        "eval_return_std": eval_returns.std(axis=1).tolist(),
        "eval_return_median_over_seeds": float(np.median(eval_returns.mean(axis=1))),
        "compile_seconds": compile_s,
        "train_seconds": train_s,
        "env_steps_per_second": total_steps * args.num_seeds / train_s,
    }
    experiment.write_json(out / experiment.SUMMARY_FILE, summary)
    experiment.write_metrics_csv(out / experiment.METRICS_FILE, metrics)
    experiment.plot_learning_curve(out / experiment.CURVE_FILE, metrics, f"{args.algo} on {args.env}")
    experiment.save_params(out / experiment.CHECKPOINT_DIR, jax.device_get(state.params))
    print(f"done: final {'greedy' if args.greedy_eval else 'stochastic'} evaluation return per seed "
          f"{np.round(summary['eval_return_mean'], 1).tolist()} (median {summary['eval_return_median_over_seeds']:.1f}); "
          f"compile {compile_s:.1f}s, train {train_s:.1f}s, {summary['env_steps_per_second']:,.0f} env-steps/s; "
          f"wrote {out}", flush=True)
    return summary


def main() -> None:
    run(tyro.cli(Args))


if __name__ == "__main__":
    main()
