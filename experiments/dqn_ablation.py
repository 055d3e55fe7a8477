"""The value-based contrast: DQN's classic ablation (replay × target network), and the aliased
gridworld where a greedy Q-policy loses to REINFORCE's stochastic one.

    python -m experiments.dqn_ablation --out runs/dqn-ablation           # the full table
    python -m experiments.dqn_ablation --out runs/dqn-quick --quick      # a small preset (about 2 minutes on 2 cores)

1. Ablation. For each environment (CartPole-v1 and a MinAtar game) and each of the four
   switch settings — replay on/off × target network on/off, all else the `rlpg.algos.dqn`
   defaults — trains `num_seeds` seeds in one program (seeds vmapped; with --no-vectorize-seeds one seed's program called seed by seed) and evaluates each
   seed's final greedy policy (argmax Q) over `eval_episodes` episodes. Reports the median
   over seeds and their spread (min, quartiles, max).
2. Aliased gridworld (`rlpg.envs.AliasedGridworld`: cells 1 and 3 look alike). DQN learns a
   Q-function over observations; its greedy policy takes the same action in both grey cells
   and cannot reach the goal from one side. REINFORCE with the linear softmax over the same
   observations (`env.linear_softmax_policy()`, reward-to-go with the batch-mean baseline,
   whole episodes from reset) learns to randomize there. Both are played for
   `gridworld_episodes` episodes (DQN greedy, REINFORCE sampling its policy): steps to goal
   (an episode that never arrives counts its time limit H) and success rate within H; with
   the exact expected steps of each policy (`rlpg.exact.finite_horizon_expected_return`) and
   of the best deterministic policy over observations, found by enumerating all of them.

Writes results.json, results.md and ablation.png into --out (which must not hold a run).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro

from experiments import train as train_cli
from rlpg import algos, envs, estimators, exact, experiment, returns, rollout
from rlpg.algos import dqn

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
ABLATION_PLOT = "ablation.png"
SWITCHES = ((True, True), (True, False), (False, True), (False, False))  # (replay, target_network)


@dataclasses.dataclass
class Args:
    out: Path = Path("runs/dqn_ablation")
    """output folder"""
    overwrite: bool = False
    """replace an existing output folder"""
    envs: tuple[str, ...] = ("CartPole-v1", "Breakout-MinAtar")
    """gymnax environment ids of the ablation"""
    total_timesteps: tuple[int, ...] = (200_000, 500_000)
    """env steps per seed, one per environment"""
    num_seeds: int = 5
    """seeds per switch setting"""
    seed: int = 0
    """PRNG seed of the first run; run i uses seed + i"""
    eval_episodes: int = 32
    """greedy evaluation episodes per seed"""
    gridworld_timesteps: int = 20_000
    """env steps per seed of each learner on the aliased gridworld"""
    gridworld_episodes: int = 1000
    """evaluation episodes per seed on the aliased gridworld"""
    vectorize_seeds: bool = True
    """vmap the seeds (faster runs) instead of calling one seed's program seed by seed (faster
    compiles; each seed then equals the same seed run alone, bit for bit)"""
    quick: bool = False
    """small preset: a few thousand steps, 2 seeds looped (checks the pipeline, not the numbers)"""


def apply_preset(args: Args) -> Args:
    """`--quick` shrinks every budget."""
    if args.quick:
        return dataclasses.replace(
            args, total_timesteps=(2048,) * len(args.envs), num_seeds=2, eval_episodes=2,
            gridworld_timesteps=2048, gridworld_episodes=50, vectorize_seeds=False,
        )
    return args


def check_args(args: Args) -> None:
    if len(args.total_timesteps) != len(args.envs):
        raise ValueError(
            f"`total_timesteps` must give one budget per environment ({len(args.envs)}); got {args.total_timesteps}."
        )
    for name in ("num_seeds", "eval_episodes", "gridworld_timesteps", "gridworld_episodes"):
        if getattr(args, name) < 1:
            raise ValueError(f"`{name}` must be >= 1; got {getattr(args, name)}.")


def dqn_config(env_id: str, total_timesteps: int, **switches) -> dqn.Config:
    """The library's DQN defaults, with learning_starts capped at a quarter of short budgets."""
    default = dqn.Config()
    return dqn.Config(
        env_id=env_id, total_timesteps=total_timesteps,
        learning_starts=min(default.learning_starts, total_timesteps // 4), **switches,
    ).validate()


def seed_keys(args: Args) -> jax.Array:
    return jax.vmap(jax.random.PRNGKey)(args.seed + jnp.arange(args.num_seeds))


def spread(values) -> dict:
    """Median, quartiles, min and max of per-seed values, and the values."""
    v = np.asarray(values, float)
    q25, median, q75 = np.percentile(v, [25, 50, 75])
    return {"median": median, "q25": q25, "q75": q75, "min": v.min(), "max": v.max(), "per_seed": v.tolist()}


# ----------------------------------------------------------------------------- 1. the ablation


def train_and_evaluate(config: dqn.Config, keys: jax.Array, eval_episodes: int, vectorize: bool, env=None, env_params=None):
    """Train `config` on every key and play each final greedy policy (argmax Q), in one program.

    Returns (state, metrics, final greedy returns [S, eval_episodes]), leading axis the seeds.
    """
    algorithm = dqn.make_algorithm(config, env=env, env_params=env_params)
    train = algos.train_fn(algorithm)

    def train_and_play(key, hparams=None):
        state, metrics = train(key, hparams)
        final = rollout.evaluate(
            jax.random.fold_in(key, 1), algorithm.policy, state.params["policy"], algorithm.env,
            algorithm.env_params, eval_episodes, greedy=True,
        )
        return state, metrics, final

    state, metrics, final = train_cli.compile_over_seeds(train_and_play, (keys,), mesh=None, vectorize=vectorize)(keys)
    return state, metrics, np.asarray(final)


def run_ablation(args: Args) -> list[dict]:
    rows = []
    for env_id, steps in zip(args.envs, args.total_timesteps):
        for replay, target in SWITCHES:
            t0 = time.perf_counter()
            config = dqn_config(env_id, steps, replay=replay, target_network=target)
            _, metrics, final = train_and_evaluate(config, seed_keys(args), args.eval_episodes, args.vectorize_seeds)
            q_final = np.asarray(metrics["q_mean"])[:, -max(1, config.num_updates // 10):].mean(axis=1)
            rows.append({
                "env": env_id, "replay": replay, "target_network": target, "env_steps_per_seed": steps,
                "final_greedy_return": spread(final.mean(axis=1)),
                "final_q_mean": spread(q_final),
                "seconds": time.perf_counter() - t0,
            })
            r = rows[-1]["final_greedy_return"]
            print(f"{env_id:>18s}  replay {replay!s:5s}  target {target!s:5s}  median {r['median']:8.2f}  "
                  f"[{r['min']:.1f}, {r['max']:.1f}]  ({rows[-1]['seconds']:.0f}s)", flush=True)
    return rows


# ----------------------------------------------------------------------------- 2. the aliased gridworld


def train_reinforce(key: jax.Array, env, env_params, num_iterations: int, num_episodes: int, lr: float = 0.1):
    """REINFORCE on the linear softmax over observations: each iteration plays `num_episodes`
    whole episodes from reset (H steps) and takes one Adam step on the reward-to-go estimator
    with the batch-mean baseline. Returns θ [F·A]."""
    policy = env.linear_softmax_policy()
    horizon = int(env_params.max_steps_in_episode)
    optimizer = optax.adam(lr)

    def loss_fn(theta, traj: rollout.Trajectory, mask):
        log_prob = policy.distribution.log_prob(policy.apply(theta, traj.obs), traj.action)
        g = returns.reward_to_go(traj.reward, traj.done, 1.0)
        weights = estimators.reinforce_weights(g, estimators.batch_mean_baseline(g, mask), False, mask)
        return estimators.reinforce_loss(log_prob, weights, mask)

    def iteration(carry, key):
        theta, opt_state = carry
        reset_key, run_key = jax.random.split(key)
        batch = rollout.reset(reset_key, env, env_params, num_episodes)
        _, traj = rollout.rollout(run_key, policy, theta, env, env_params, batch, horizon)
        grads = jax.grad(loss_fn)(theta, traj, returns.first_episode_mask(traj.done))
        updates, opt_state = optimizer.update(grads, opt_state)
        return (optax.apply_updates(theta, updates), opt_state), None

    theta = policy.init(key)
    (theta, _), _ = jax.lax.scan(iteration, (theta, optimizer.init(theta)), jax.random.split(key, num_iterations))
    return theta


def episode_outcomes(episode_returns: np.ndarray, horizon: int) -> dict:
    """Steps to goal and success from returns of −1 per step: steps = −return; success = steps < H
    (an episode that reaches the goal on its H-th step is counted as a failure)."""
    steps = -np.asarray(episode_returns)
    success = steps < horizon
    per_seed_success = success.mean(axis=-1)
    per_seed_steps = steps.mean(axis=-1)
    return {"success_rate": spread(per_seed_success), "steps_to_goal": spread(per_seed_steps)}


def best_deterministic_steps(env, env_params) -> tuple[float, list[int]]:
    """Exact expected steps (capped at H) of the best deterministic policy over observations, by enumeration."""
    mdp, horizon = env.tabular_mdp(env_params), int(env_params.max_steps_in_episode)
    obs = np.asarray(env_params.observations)
    classes = np.unique(obs, axis=0, return_inverse=True)[1].reshape(-1)  # state -> observation class
    choices = np.array(list(itertools.product(range(env.num_actions), repeat=int(classes.max()) + 1)))
    logits = 50.0 * jax.nn.one_hot(choices[:, classes], env.num_actions)  # [P, S, A], deterministic
    expected = jax.vmap(lambda l: exact.finite_horizon_expected_return(mdp, l, horizon))(logits)
    best = int(jnp.argmax(expected))
    return float(-expected[best]), choices[best].tolist()


def run_gridworld(args: Args) -> dict:
    env = envs.AliasedGridworld()
    env_params = env.default_params
    horizon = int(env_params.max_steps_in_episode)
    mdp = env.tabular_mdp(env_params)
    keys = seed_keys(args)

    config = dqn.Config(
        env_id="CartPole-v1",  # a label only: the env instance is passed
        total_timesteps=args.gridworld_timesteps, learning_starts=min(1000, args.gridworld_timesteps // 4),
        gamma=0.9, hidden=(32,),
    ).validate()
    q_network = dqn.make_algorithm(config, env=env, env_params=env_params).policy
    dqn_state, _, dqn_returns = train_and_evaluate(config, keys, args.gridworld_episodes, args.vectorize_seeds, env, env_params)
    q_logits = jax.vmap(lambda p: q_network.apply(p, env_params.observations))(dqn_state.params["policy"])
    greedy_logits = 50.0 * jax.nn.one_hot(jnp.argmax(q_logits, -1), env.num_actions)
    dqn_exact = -np.asarray(jax.vmap(lambda l: exact.finite_horizon_expected_return(mdp, l, horizon))(greedy_logits))

    num_episodes = 16
    num_iterations = max(1, args.gridworld_timesteps // (num_episodes * horizon))
    policy = env.linear_softmax_policy()

    def train_and_play(key, hparams=None):
        theta = train_reinforce(key, env, env_params, num_iterations, num_episodes)
        play_key = jax.random.fold_in(key, 1)
        return theta, rollout.evaluate(play_key, policy, theta, env, env_params, args.gridworld_episodes, greedy=False)

    thetas, pg_returns = train_cli.compile_over_seeds(train_and_play, (keys,), mesh=None, vectorize=args.vectorize_seeds)(keys)
    pg_returns = np.asarray(pg_returns)
    phi = env.features(env_params)
    pg_exact = -np.asarray(jax.vmap(lambda th: exact.finite_horizon_expected_return(mdp, phi @ th, horizon))(thetas))
    grey_probs = jax.vmap(lambda th: jax.nn.softmax(policy.apply(th, env_params.observations[env.GREY[0]])))(thetas)

    best_steps, best_actions = best_deterministic_steps(env, env_params)
    return {
        "horizon": horizon,
        "dqn": {
            "env_steps_per_seed": config.num_updates * config.steps_per_update, "acting": "greedy (argmax Q)",
            **episode_outcomes(dqn_returns, horizon), "exact_expected_steps": spread(dqn_exact),
            "grey_cell_action": np.asarray(jnp.argmax(q_logits[:, env.GREY[0]], -1)).tolist(),
        },
        "reinforce": {
            "env_steps_per_seed": num_iterations * num_episodes * horizon, "acting": "sampled from π_θ",
            **episode_outcomes(pg_returns, horizon), "exact_expected_steps": spread(pg_exact),
            "grey_cell_probs": np.round(np.asarray(grey_probs), 3).tolist(),
        },
        "best_deterministic": {"exact_expected_steps": best_steps, "actions_per_observation_class": best_actions},
    }


# ----------------------------------------------------------------------------- outputs


def _fmt(s: dict, digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def markdown(results: dict) -> str:
    lines = [
        "# DQN ablation: experience replay × target network", "",
        f"Final greedy return per seed (mean of {results['args']['eval_episodes']} episodes); "
        f"median over {results['args']['num_seeds']} seeds [min, max], and the interquartile range.", "",
        "| env | replay | target network | median [min, max] | IQR | per seed | mean Q (last 10%) |",
        "| --- | :---: | :---: | ---: | ---: | --- | ---: |",
    ]
    for r in results["ablation"]:
        g = r["final_greedy_return"]
        lines.append(
            f"| {r['env']} ({r['env_steps_per_seed']:,} steps) | {'on' if r['replay'] else 'off'} | "
            f"{'on' if r['target_network'] else 'off'} | {_fmt(g)} | {g['q25']:.1f}–{g['q75']:.1f} | "
            f"{', '.join(f'{v:.0f}' for v in g['per_seed'])} | {r['final_q_mean']['median']:.3g} |"
        )
    grid = results["gridworld"]
    lines += [
        "", f"## Aliased gridworld (time limit H = {grid['horizon']})", "",
        "| learner | acting | env steps | success rate | steps to goal (H if never) | exact expected steps |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name in ("dqn", "reinforce"):
        g = grid[name]
        lines.append(
            f"| {name.upper() if name == 'dqn' else 'REINFORCE'} | {g['acting']} | {g['env_steps_per_seed']:,} | "
            f"{_fmt(g['success_rate'], 3)} | {_fmt(g['steps_to_goal'])} | {_fmt(g['exact_expected_steps'])} |"
        )
    lines += [
        f"| best deterministic policy over observations | exact | – | – | – | "
        f"{grid['best_deterministic']['exact_expected_steps']:.1f} |",
        "", "Median over seeds [min, max].", "",
    ]
    return "\n".join(lines)


def plot_ablation(path: Path, results: dict) -> None:
    plt = experiment.pyplot()
    env_ids = list(dict.fromkeys(r["env"] for r in results["ablation"]))
    fig, axes = plt.subplots(1, len(env_ids), figsize=(5.2 * len(env_ids), 4.0), dpi=120, squeeze=False)
    for ax, env_id in zip(axes[0], env_ids):
        rows = [r for r in results["ablation"] if r["env"] == env_id]
        labels = [f"replay {'on' if r['replay'] else 'off'}\ntarget {'on' if r['target_network'] else 'off'}" for r in rows]
        values = [r["final_greedy_return"]["per_seed"] for r in rows]
        ax.boxplot(values, showfliers=False)
        ax.set_xticks(range(1, len(rows) + 1), labels, fontsize=8)
        for i, v in enumerate(values, start=1):
            ax.scatter(np.full(len(v), i) + np.linspace(-0.08, 0.08, len(v)), v, s=14, color="tab:blue", zorder=3)
        ax.set_ylabel("final greedy return")
        ax.set_title(f"{env_id} ({rows[0]['env_steps_per_seed']:,} steps)")
        ax.grid(alpha=0.3, axis="y")
    experiment.save_figure(fig, path)


def run(args: Args) -> dict:
    """Run the ablation and the gridworld comparison, write the output folder; returns the results."""
    args = apply_preset(args)
    check_args(args)
    for env_id, steps in zip(args.envs, args.total_timesteps):
        dqn_config(env_id, steps)  # bad ids or budgets fail before any training
    out = experiment.prepare_run_dir(args.out, args.overwrite, marker=RESULTS_JSON)
    t0 = time.perf_counter()
    results = {"args": dataclasses.asdict(args), "dqn_defaults": dataclasses.asdict(dqn.Config())}
    results["ablation"] = run_ablation(args)
    results["gridworld"] = run_gridworld(args)
    results["seconds"] = time.perf_counter() - t0
    experiment.write_json(out / RESULTS_JSON, results)
    (out / RESULTS_MD).write_text(markdown(results))
    plot_ablation(out / ABLATION_PLOT, results)
    print(markdown(results), flush=True)
    print(f"wrote {out} ({results['seconds']:.0f}s)", flush=True)
    return results


def main() -> None:
    run(tyro.cli(Args))


if __name__ == "__main__":
    main()
