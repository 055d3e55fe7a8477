"""Nota & Thomas's counterexample ("Is the policy gradient a gradient?", 2019), reproduced:
the common update (G_t, no γ^t) converges to a poor policy where the gradient (γ^t G_t) does not.

    python -m experiments.nota_thomas --out experiments/results/estimator_lab

`DiscountTrap-v0` (two aliased states, γ = 0.4): REINFORCE with reward-to-go, no baseline, a
linear softmax policy, from the uniform policy, for each seed and each `discount_weighting`;
each final policy is scored by its exact J_γ = E[Σ_t γ^t r_t] (best 1.0, the trap 0.8).
Writes nota_thomas.json and nota_thomas.md into --out (kept beside the estimator lab's files).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import tyro

from rlpg import envs, exact, experiment
from rlpg.algos import reinforce


@dataclasses.dataclass
class Args:
    out: Path = Path("runs/nota_thomas")
    """output folder (created if missing; the two files are replaced)"""
    num_seeds: int = 5
    """seeds per weighting"""
    gamma: float = 0.4
    """discount γ of the objective and of both updates"""
    total_timesteps: int = 8 * 8 * 300
    """env steps per seed (8 envs × 8 steps per update)"""
    lr: float = 0.1
    """Adam learning rate"""


def final_returns(args: Args, weighting: str) -> list[float]:
    config = reinforce.Config(
        env_id="DiscountTrap-v0", policy="linear", num_envs=8, num_steps=8, total_timesteps=args.total_timesteps,
        returns="reward_to_go", baseline="none", normalize=False, discount_weighting=weighting, gamma=args.gamma,
        lr=args.lr, hidden=(8,),
    )
    keys = jax.vmap(jax.random.PRNGKey)(np.arange(args.num_seeds))
    state, _ = jax.jit(jax.vmap(reinforce.make_train(config)))(keys)
    env, env_params = envs.make(config.env_id)
    obs, H = env_params.observations, int(env_params.max_steps_in_episode)
    theta = np.asarray(state.params["policy"]).reshape(args.num_seeds, obs.shape[1], env.num_actions)
    return [float(exact.finite_horizon_expected_return(env.tabular_mdp(), obs @ t, H, args.gamma)) for t in theta]


def run(args: Args) -> dict:
    results = {"args": {k: str(v) for k, v in dataclasses.asdict(args).items()}, "best_J": 1.0, "trap_J": 2 * args.gamma}
    for weighting in reinforce.DISCOUNT_WEIGHTINGS:
        results[weighting] = final_returns(args, weighting)
        print(weighting, np.round(results[weighting], 4), flush=True)
    lines = [
        "# Nota & Thomas's counterexample: common vs gradient weighting",
        "",
        f"DiscountTrap-v0, γ = {args.gamma}: best J_γ = 1.0 (always left), the trap J_γ = {2 * args.gamma:.1f} "
        f"(always right); uniform start J_γ = {0.5 + 0.5 * args.gamma:.2f}. REINFORCE, reward-to-go, no baseline, "
        f"{args.total_timesteps} env steps per seed; final exact J_γ per seed.",
        "",
        "| discount_weighting | " + " | ".join(f"seed {i}" for i in range(args.num_seeds)) + " | median |",
        "| --- | " + " | ".join("---:" for _ in range(args.num_seeds)) + " | ---: |",
    ]
    for weighting in reinforce.DISCOUNT_WEIGHTINGS:
        js = results[weighting]
        lines.append(f"| {weighting} | " + " | ".join(f"{j:.3f}" for j in js) + f" | {np.median(js):.3f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    experiment.write_json(args.out / "nota_thomas.json", results)
    (args.out / "nota_thomas.md").write_text("\n".join(lines) + "\n")
    return results


def main() -> None:
    run(tyro.cli(Args))


if __name__ == "__main__":
    main()
