"""The horizon table: score-function vs pathwise vs their mixture, as the horizon grows.

    python -m experiments.pathwise_lab --out runs/pathwise_lab            # the full table (minutes)
    python -m experiments.pathwise_lab --out runs/pathwise_lab --quick    # a small preset (about a minute)

Worlds: a 2-D LQR (`rlpg.envs.LQR`, truth `rlpg.exact.lqr_policy_gradient`) under a
stabilizing and an unstable linear policy, and Pendulum-v1 (two linear Gaussian policies) and
Reacher-misc (two undamped joints reaching for a goal; a random linear policy) with gymnax's
transition gradients (time limit set to H; truth: the mean of a large independent
reference batch, per parameter the inverse-variance combination of the pathwise and the
score-function means over `--reference-episodes` episodes, both unbiased as these dynamics and
rewards are continuous; its standard error is reported). For every H in --horizons and each
world, N episodes give per-episode gradients (`rlpg.pathwise.per_episode_gradients`) of

- score: reward-to-go with a leave-one-out time-indexed baseline b_t (the best of the
  estimator lab's unbiased variants that needs no critic) from the other episodes of the same
  half of the estimate's m (`per_episode_gradients`' default, which keeps `mixed` unbiased),
- pathwise: backpropagation through all H steps (`rollout_return`),
- pathwise_h: the gradient cut every `--truncation` steps (biased; listed where h < H),
- mixed: the cross-fitted inverse-variance mixture of score and pathwise (`mixed_gradient`),

grouped into N/m estimates of m episodes each. Reported per estimator: relative bias
‖E ĝ − g‖/‖g‖ (and its standard error), relative variance tr Cov(ĝ)/‖g‖², the mean cosine
with g, and the wall time per estimate (a second, compiled run of all N episodes, divided by
N/m). Writes results.json, results.md and horizon.png into --out.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import tyro

from rlpg import envs, exact, experiment, pathwise, policies

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
HORIZON_PLOT = "horizon.png"
ESTIMATORS = ("score", "pathwise", "pathwise_h", "mixed")


@dataclasses.dataclass
class Args:
    out: Path = Path("runs/pathwise_lab")
    """output folder"""
    overwrite: bool = False
    """replace an existing output folder"""
    horizons: tuple[int, ...] = (1, 4, 16, 64, 256)
    """episode lengths H"""
    num_episodes: int = 1024
    """N episodes per (world, H) for each estimator"""
    batch_size: int = 16
    """m episodes per estimate (N/m estimates)"""
    reference_episodes: int = 8192
    """episodes of the Pendulum reference gradient"""
    truncation: int = 16
    """gradient horizon h of pathwise_h"""
    gamma: float = 0.99
    """discount of every objective"""
    seed: int = 0
    """PRNG seed"""
    quick: bool = False
    """small preset: H in (1, 4, 16), N = 256, reference 1024"""


def apply_preset(args: Args) -> Args:
    if args.quick:
        return dataclasses.replace(args, horizons=(1, 4, 16), num_episodes=256, reference_episodes=1024)
    return args


def lqr_world(horizon: int, gamma: float):
    """A discretized double integrator with a slowly unstable mode (dt = 0.1)."""
    return envs.LQR(
        A=[[1.02, 0.1], [0.0, 1.0]], B=[[0.005], [0.1]], Q=np.eye(2), R=[[0.1]],
        initial_mean=[1.0, 0.0], initial_cov=0.1 * np.eye(2), noise_cov=0.01 * np.eye(2),
        horizon=horizon, gamma=gamma,
    ).with_transition_gradients()  # fmt: skip


def worlds(horizon: int, gamma: float) -> dict:
    """{family: (env, env_params, policy, {policy name: params})} for one horizon; the policies
    of a family share one compiled program (their parameters are arguments)."""
    lqr = lqr_world(horizon, gamma)
    pendulum, pendulum_params = gymnax.make("Pendulum-v1")
    pendulum_params = pendulum_params.replace(max_steps_in_episode=horizon)
    reacher, reacher_params = gymnax.make("Reacher-misc")
    reacher_params = reacher_params.replace(max_steps_in_episode=horizon)
    return {
        "lqr": (lqr, lqr.default_params, lqr.linear_policy(), {
            "stabilizing": {"theta": jnp.array([[-1.0], [-1.5]]), "log_std": jnp.array([-1.0])},
            "unstable": {"theta": jnp.array([[0.0], [0.0]]), "log_std": jnp.array([-1.0])},
        }),
        "pendulum": (pendulum.with_transition_gradients(), pendulum_params, policies.linear_gaussian(lambda obs: obs, 3, 1), {
            "zero": {"theta": jnp.zeros((3, 1)), "log_std": jnp.array([0.0])},
            "damping": {"theta": jnp.array([[0.0], [-1.0], [-0.5]]), "log_std": jnp.array([-0.5])},
        }),
        "reacher": (reacher.with_transition_gradients(), reacher_params, policies.linear_gaussian(lambda obs: obs, 8, 2), {
            # Linear in (cos, sin, velocities, goal): random, as the zero policy's gradient vanishes by symmetry.
            "random": {"theta": 0.5 * jax.random.normal(jax.random.PRNGKey(0), (8, 2)), "log_std": jnp.full((2,), -0.5)},
        }),
    }  # fmt: skip


def flat(tree) -> jax.Array:
    """A pytree of per-sample gradients [N, ...] -> [N, P]."""
    return jnp.concatenate([x.reshape(x.shape[0], -1) for x in jax.tree.leaves(tree)], axis=1)


def combine_references(pathwise_grads: np.ndarray, score_grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unbiased large-batch means [N, P] -> their per-parameter inverse-variance combination
    and its standard error, both [P] (the gymnax worlds here are continuous, so pathwise is unbiased)."""
    n = pathwise_grads.shape[0]
    var_p, var_s = pathwise_grads.var(0) / n, score_grads.var(0) / n
    w = var_s / np.maximum(var_p + var_s, 1e-300)
    mean = w * pathwise_grads.mean(0) + (1 - w) * score_grads.mean(0)
    return mean, np.sqrt(var_p * var_s / np.maximum(var_p + var_s, 1e-300))


def summarize(estimates: np.ndarray, truth: np.ndarray, seconds: float) -> dict:
    """estimates [E, P] of m episodes each against truth [P]."""
    norm = float(np.linalg.norm(truth))
    mean = estimates.mean(0)
    bias_se = float(np.sqrt(estimates.var(0).sum() / estimates.shape[0]))
    cos = (estimates @ truth) / np.maximum(np.linalg.norm(estimates, axis=1) * norm, 1e-30)
    return {
        "relative_bias": float(np.linalg.norm(mean - truth)) / norm,
        "relative_bias_se": bias_se / norm,
        "relative_variance": float(estimates.var(0).sum()) / norm**2,
        "cosine": float(np.nanmean(cos)),
        "seconds_per_estimate": seconds,
    }


def measure(family: str, horizon: int, args: Args, key) -> list[dict]:
    """Rows of every policy of `family` at horizon H."""
    env, env_params, policy, policy_params = worlds(horizon, args.gamma)[family]
    num_estimates = args.num_episodes // args.batch_size
    cut = args.truncation if args.truncation < horizon else None

    @jax.jit
    def gradients(params, keys):
        # One call per m episodes, as a user estimating from m episodes makes it: the score's
        # baselines come from the same estimate's episodes (each half's own, for `mixed_gradient`).
        per_estimate = jax.vmap(lambda k: pathwise.per_episode_gradients(k, policy, params, env, env_params, horizon, args.gamma))
        out = per_estimate(keys.reshape((-1, args.batch_size) + keys.shape[1:]))
        out = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), out)  # [N, ...], estimates consecutive
        grads = {"score": flat(out["score"]), "pathwise": flat(out["pathwise"])}
        batched = jax.tree.map(lambda x: x.reshape((-1, args.batch_size) + x.shape[1:]), grads)
        grads["mixed"] = jax.vmap(pathwise.mixed_gradient)(batched["pathwise"], batched["score"])
        if cut:
            truncated = jax.vmap(
                jax.grad(lambda prm, k: pathwise.rollout_return(k, policy, prm, env, env_params, horizon, args.gamma, cut)),
                in_axes=(None, 0),
            )(params, keys)
            grads["pathwise_h"] = flat(truncated)
        return grads

    rows = []
    for i, (name, params) in enumerate(policy_params.items()):
        truth_key, run_key = jax.random.split(jax.random.fold_in(key, i))
        if family == "lqr":
            grad_gain, grad_log_std = exact.lqr_policy_gradient(env, env_params, params["theta"].T, params["log_std"])
            truth, truth_se = np.asarray(flat({"log_std": grad_log_std[None], "theta": grad_gain.T[None]})[0]), np.zeros(3)
        else:
            ref_keys = jax.random.split(truth_key, args.reference_episodes // args.num_episodes * args.num_episodes)
            ref = [gradients(params, k) for k in ref_keys.reshape(-1, args.num_episodes, *ref_keys.shape[1:])]
            truth, truth_se = combine_references(*(np.concatenate([np.asarray(r[e], np.float64) for r in ref]) for e in ("pathwise", "score")))
        keys = jax.random.split(run_key, args.num_episodes)
        jax.block_until_ready(gradients(params, keys))  # compile (once per family and H)
        t0 = time.perf_counter()
        grads = jax.block_until_ready(gradients(params, keys))
        seconds = (time.perf_counter() - t0) / num_estimates  # every estimator of one estimate, together
        world = f"{family}/{name}"
        for estimator in ESTIMATORS:
            if estimator in grads:
                g = np.asarray(grads[estimator], np.float64)
                estimates = g if estimator == "mixed" else g.reshape(num_estimates, args.batch_size, -1).mean(1)
                rows.append({"world": world, "H": horizon, "estimator": estimator, **summarize(estimates, truth, seconds)})
        rows.append({"world": world, "H": horizon, "estimator": "truth", "grad_norm": float(np.linalg.norm(truth)),
                     "truth_se_norm": float(np.linalg.norm(truth_se))})  # fmt: skip
    return rows


def time_estimators(args: Args) -> dict:
    """Wall seconds of one m-episode estimate of each estimator alone on Pendulum, H = max horizon."""
    horizon = max(args.horizons)
    env, env_params, policy, policy_params = worlds(horizon, args.gamma)["pendulum"]
    params = policy_params["damping"]
    keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), args.batch_size)
    fns = {
        "score": lambda k: pathwise.per_episode_gradients(k, policy, params, env, env_params, horizon, args.gamma)["score"],
        "pathwise": lambda k: jax.vmap(jax.grad(lambda prm, kk: pathwise.rollout_return(kk, policy, prm, env, env_params, horizon, args.gamma)), in_axes=(None, 0))(params, k),
        "mixed": lambda k: pathwise.mixed_gradient(*(lambda o: (o["pathwise"], o["score"]))(pathwise.per_episode_gradients(k, policy, params, env, env_params, horizon, args.gamma))),
    }  # fmt: skip
    seconds = {}
    for name, fn in fns.items():
        fn = jax.jit(fn)
        jax.block_until_ready(fn(keys))
        t0 = time.perf_counter()
        for _ in range(5):
            jax.block_until_ready(fn(keys))
        seconds[name] = (time.perf_counter() - t0) / 5
    return {"H": horizon, "m": args.batch_size, "seconds": seconds}


def markdown(results: dict) -> str:
    a = results["args"]
    lines = [
        "# Score-function vs pathwise: the horizon table",
        "",
        f"N = {a['num_episodes']} episodes per (world, H), estimates of m = {a['batch_size']} episodes, γ = {a['gamma']}, "
        f"pathwise_h cuts the gradient every h = {a['truncation']} steps. Bias is relative to ‖∇J‖, variance to ‖∇J‖²; "
        "`bias` counts as real when it exceeds 3 × its standard error (SE).",
        "",
    ]
    timing = results["timing"]
    lines += [
        f"Wall time of one estimate alone (Pendulum, H = {timing['H']}, m = {timing['m']}, compiled, this CPU): "
        + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in timing["seconds"].items()),
        "",
    ]
    for world in dict.fromkeys(r["world"] for r in results["rows"]):
        rows = [r for r in results["rows"] if r["world"] == world]
        lines += [f"## {world}", "", "| H | ‖∇J‖ (SE of truth) | estimator | rel. bias (SE) | rel. variance | cosine | ms / estimate (all) |",
                  "| ---: | ---: | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for h in sorted({r["H"] for r in rows}):
            t = next(r for r in rows if r["H"] == h and r["estimator"] == "truth")
            for r in (r for r in rows if r["H"] == h and r["estimator"] != "truth"):
                flag = " *" if r["relative_bias"] > 3 * r["relative_bias_se"] else ""
                lines.append(
                    f"| {h} | {t['grad_norm']:.3g} ({t['truth_se_norm']:.2g}) | {r['estimator']} | "
                    f"{r['relative_bias']:.3g} ({r['relative_bias_se']:.2g}){flag} | {r['relative_variance']:.3g} | "
                    f"{r['cosine']:.3f} | {1e3 * r['seconds_per_estimate']:.2f} |"
                )
        lines.append("")
    lines.append("`*`: bias larger than 3 SE. ms / estimate: all four estimators computed together, per estimate.")
    return "\n".join(lines) + "\n"


def plot(path: Path, results: dict) -> None:
    plt = experiment.pyplot()
    world_names = list(dict.fromkeys(r["world"] for r in results["rows"]))
    metrics = (("relative_variance", "tr Cov(ĝ) / ‖∇J‖²", True), ("relative_bias", "‖E ĝ − ∇J‖ / ‖∇J‖", True), ("cosine", "mean cos(ĝ, ∇J)", False))
    fig, axes = plt.subplots(len(world_names), 3, figsize=(13, 3.0 * len(world_names)), dpi=110, squeeze=False)
    for i, world in enumerate(world_names):
        for j, (key, label, log) in enumerate(metrics):
            ax = axes[i][j]
            for estimator in ESTIMATORS:
                rows = sorted((r for r in results["rows"] if r["world"] == world and r["estimator"] == estimator), key=lambda r: r["H"])
                if rows:
                    ax.plot([r["H"] for r in rows], [max(r[key], 1e-12) if log else r[key] for r in rows], marker="o", label=estimator)
            ax.set_xscale("log", base=2)
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("horizon H")
            ax.set_ylabel(label)
            ax.set_title(world, fontsize=9)
            ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    experiment.save_figure(fig, path)


def run(args: Args) -> dict:
    args = apply_preset(args)
    if args.num_episodes % args.batch_size or args.num_episodes // args.batch_size < 2 or args.batch_size < 4 or args.batch_size % 2:
        raise ValueError(
            f"`batch_size` must be even, >= 4 and divide `num_episodes` into >= 2 estimates; "
            f"got batch_size={args.batch_size}, num_episodes={args.num_episodes}."
        )
    if not args.horizons or min(args.horizons) < 1:
        raise ValueError(f"`horizons` must be positive; got {args.horizons}.")
    out = experiment.prepare_run_dir(args.out, args.overwrite, marker=RESULTS_JSON)
    t0 = time.perf_counter()
    key = jax.random.PRNGKey(args.seed)
    rows = []
    for i, horizon in enumerate(args.horizons):
        for j, family in enumerate(worlds(horizon, args.gamma)):
            rows += measure(family, horizon, args, jax.random.fold_in(key, 100 * i + j))
        print(f"H = {horizon}: measured ({time.perf_counter() - t0:.1f}s)", flush=True)
    results = {"args": dataclasses.asdict(args), "rows": rows, "timing": time_estimators(args)}
    results["seconds"] = time.perf_counter() - t0
    experiment.write_json(out / RESULTS_JSON, results)
    (out / RESULTS_MD).write_text(markdown(results))
    plot(out / HORIZON_PLOT, results)
    print(f"wrote {out} ({results['seconds']:.0f}s)", flush=True)
    return results


def main() -> None:
    run(tyro.cli(Args))


if __name__ == "__main__":
    main()
