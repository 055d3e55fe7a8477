"""The estimator lab: how far is a batch's score-function gradient from the exact one?

    python -m experiments.estimator_lab --out runs/lab                 # the full table
    python -m experiments.estimator_lab --out runs/lab-quick --quick   # a small preset (about 2 minutes on 2 cores)

For a random tabular MDP (horizon H) and a Gaussian multi-armed bandit, with a fixed random
tabular softmax policy, draws N independent batches of m whole episodes for each m and
computes each estimator variant's gradient estimate w.r.t. the logits (`rlpg.lab.VARIANTS`:
whole return, reward-to-go, reward-to-go − J, reward-to-go − V_t(s_t), reward-to-go − a
V̂ fitted on other episodes, normalized reward-to-go). Against the exact gradient `rlpg.exact.finite_horizon_policy_gradient` it
reports bias (with a 3σ half-width), total variance tr Cov, RMSE and mean cosine.
Writes results.json, results.md, error_vs_m.png and variance_by_variant.png into --out.

The training path (`rlpg.lab.measure_training_path`): every `reinforce.Config` variant's own
update, over carried windows of the training loop (continuations included), on three worlds
where the variants differ (LongEpisodeChain-v0: episode length depends on the action;
AliasedGridworld-v0; RandomMDP-v0, multi-step), at γ = 1 and γ = 0.9 (both discount
weightings), against the exact ∇J_γ. Writes training_path.md, training_path.json and
training_path_error.png.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from rlpg import envs, experiment, lab

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
ERROR_PLOT = "error_vs_m.png"
VARIANCE_PLOT = "variance_by_variant.png"


@dataclasses.dataclass
class Args:
    out: Path = Path("runs/estimator_lab")
    """output folder"""
    overwrite: bool = False
    """replace an existing output folder"""
    num_batches: int = 1000
    """N independent batches per batch size"""
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64, 256)
    """episodes per batch, m"""
    seed: int = 0
    """PRNG seed (MDP, policy logits and episodes)"""
    num_states: int = 5
    """states of the random tabular MDP"""
    num_actions: int = 3
    """actions of the random tabular MDP"""
    horizon: int = 5
    """episode length H of the random tabular MDP"""
    arm_means: tuple[float, ...] = (1.0, 2.0, 4.0)
    """mean rewards of the bandit's arms (reward noise N(0, 1))"""
    quick: bool = False
    """small preset: N = 200, m in (1, 4, 16)"""
    path_windows: int = 2000
    """training path: windows per variant"""
    path_worlds: tuple[str, ...] = ("LongEpisodeChain-v0", "AliasedGridworld-v0", "RandomMDP-v0")
    """training path: the worlds (ids of rlpg.envs.REGISTRY)"""


def apply_preset(args: Args) -> Args:
    """`--quick` overrides N and the batch sizes."""
    if args.quick:
        return dataclasses.replace(args, num_batches=200, batch_sizes=(1, 4, 16), path_windows=200)
    return args


def make_worlds(args: Args) -> dict:
    """{name: (env, tabular params, logits [S, A])} — the worlds the lab measures."""
    k_mdp, k_logits, k_bandit = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    mdp_env = envs.RandomTabularMDP.from_key(k_mdp, args.num_states, args.num_actions, max_steps_in_episode=args.horizon)
    bandit = envs.MultiArmedBandit(jnp.asarray(args.arm_means, jnp.float32))
    worlds = {}
    for name, env, key in (("random_mdp", mdp_env, k_logits), ("bandit", bandit, k_bandit)):
        logits = jax.random.normal(key, (env.num_states, env.num_actions))
        worlds[name] = (env, lab.tabular_params(env), logits)
    return worlds


def markdown(results: dict) -> str:
    lines = ["# Estimator lab", ""]
    for name, res in results["worlds"].items():
        note = (
            ["A bandit has one decision per episode: total = reward_to_go and every baseline is a constant, "
             "so those rows coincide and show nothing about temporal structure.", ""]
            if res["horizon"] == 1 else []
        )
        note += ["rtg_learned_baseline: its band assumes independent batches, which its fitting (on the next "
                 "batch) breaks; treat it as approximate.", ""]
        lines += [
            f"## {name} (H = {res['horizon']}, exact J = {res['exact_J']:.4f}, ‖∇J‖ = {res['exact_grad_norm']:.4f}, "
            f"N = {results['num_batches']})",
            "",
            *note,
            "| variant | m | bias | ±3σ | biased? | variance tr Cov | RMSE | cosine |",
            "| --- | ---: | ---: | ---: | :---: | ---: | ---: | ---: |",
        ]
        for r in sorted(res["rows"], key=lambda r: (lab.VARIANTS.index(r["variant"]), r["m"])):
            flag = "yes" if r["bias"] > r["bias_ci"] else "no"
            lines.append(
                f"| {r['variant']} | {r['m']} | {r['bias']:.4g} | {r['bias_ci']:.4g} | {flag} | "
                f"{r['variance']:.4g} | {r['rmse']:.4g} | {r['cosine']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _series(rows, variant, key):
    rows = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["m"])
    return np.array([r["m"] for r in rows]), np.array([r[key] for r in rows])


def plot_error_vs_m(path: Path, results: dict) -> None:
    plt = experiment.pyplot()
    worlds = results["worlds"]
    fig, axes = plt.subplots(1, len(worlds), figsize=(5.2 * len(worlds), 4.0), dpi=120, squeeze=False)
    for ax, (name, res) in zip(axes[0], worlds.items()):
        for variant in lab.VARIANTS:
            m, rmse = _series(res["rows"], variant, "rmse")
            ax.plot(m, rmse, marker="o", label=variant)
        m, rmse = _series(res["rows"], "reward_to_go", "rmse")
        ax.plot(m, rmse[0] * np.sqrt(m[0] / m), "k--", lw=1, label="∝ 1/√m")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("episodes per batch m")
        ax.set_ylabel("RMSE to exact ∇J")
        ax.set_title(name)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    experiment.save_figure(fig, path)


def plot_variance_by_variant(path: Path, results: dict) -> None:
    plt = experiment.pyplot()
    worlds = results["worlds"]
    fig, axes = plt.subplots(1, len(worlds), figsize=(5.2 * len(worlds), 4.0), dpi=120, squeeze=False)
    for ax, (name, res) in zip(axes[0], worlds.items()):
        sizes = sorted({r["m"] for r in res["rows"]})
        width = 0.8 / len(sizes)
        x = np.arange(len(lab.VARIANTS))
        for i, m in enumerate(sizes):
            var = [next(r["variance"] for r in res["rows"] if r["variant"] == v and r["m"] == m) for v in lab.VARIANTS]
            ax.bar(x + (i - (len(sizes) - 1) / 2) * width, np.maximum(var, 1e-12), width, label=f"m = {m}")
        ax.set_xticks(x, lab.VARIANTS, rotation=25, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("total variance tr Cov(ĝ)")
        ax.set_title(name)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    experiment.save_figure(fig, path)


PATH_JSON = "training_path.json"
PATH_MD = "training_path.md"
PATH_PLOT = "training_path_error.png"


def path_variants(gamma: float) -> dict:
    """{name: Config fields} of the REINFORCE variants at one γ (γ = 1: the weightings coincide)."""
    weightings = ("common",) if gamma == 1.0 else ("common", "gradient")
    out = {}
    for returns in ("reward_to_go", "total"):
        for baseline, normalize in (("none", False), ("mean", False), ("rloo", False), ("value", False), ("rloo", True), ("value", True)):
            for w in weightings:
                if returns == "total" and w == "gradient":
                    continue  # R_γ(τ) is already the gradient of J_γ: the weightings coincide
                name = f"{returns}/{baseline}" + ("/normalized" if normalize else "") + (f"/{w}" if gamma < 1 else "")
                out[name] = dict(returns=returns, baseline=baseline, normalize=normalize, discount_weighting=w, gamma=gamma)
    return out


def run_training_path(args: Args, key) -> dict:
    from rlpg import envs
    from rlpg.algos import reinforce

    results = {}
    for i, env_id in enumerate(args.path_worlds):
        env, _ = envs.make(env_id)
        theta = jax.random.normal(jax.random.fold_in(key, 200 + i), (env.num_features * env.num_actions,)) * 0.5
        base = reinforce.Config(env_id=env_id, policy="linear", num_envs=8, num_steps=8, total_timesteps=64, hidden=(16,))
        world = {"theta": np.asarray(theta).tolist(), "by_gamma": {}}
        for gamma in (1.0, 0.9):
            configs = {n: base.replace(**f) for n, f in path_variants(gamma).items()}
            world["by_gamma"][str(gamma)] = lab.measure_training_path(
                jax.random.fold_in(key, 300 + i), configs, theta, args.path_windows
            )
            print(f"training path {env_id} gamma {gamma}: {len(configs)} variants", flush=True)
        results[env_id] = world
    return results


def path_markdown(results: dict, windows: int) -> str:
    lines = [
        "# Estimator lab: the training path",
        "",
        f"Each variant's own update (`reinforce.make_policy_gradient` on `reinforce.collect`'s windows), "
        f"{windows} carried windows of 8 envs × 8 steps, fixed random linear-softmax θ, against the exact ∇J_γ "
        "(J_γ = E[Σ_(t<H) γ^t r_t] under the time limit). scale: c ≥ 0 of the best c·∇J (0 when the mean points "
        "against ∇J: then all of it is residual); residual: ‖mean − c∇J‖; "
        "band: 3σ with the windows' autocorrelation; relative variance: tr Cov / ‖c∇J‖²; error(m): "
        "E‖mean of m windows − c∇J‖ / ‖c∇J‖ (both relative to ‖∇J‖ where c = 0). "
        "The value baseline keeps its initial (untrained) critic.",
        "",
    ]
    for env_id, world in results.items():
        for gamma, res in world["by_gamma"].items():
            lines += [
                f"## {env_id}, γ = {gamma} (H = {res['horizon']}, exact J = {res['exact_J'][gamma]:.4f}, ‖∇J‖ = {res['exact_grad_norm'][gamma]:.4f})",
                "",
                "| variant | scale | cosine | residual | ±3σ | biased? | rel. variance | error(1) | error(16) | error(64) |",
                "| --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: |",
            ]
            for r in res["rows"]:
                e = r["relative_error"]
                lines.append(
                    f"| {r['variant']} | {r['scale']:.3f} | {r['cosine']:.4f} | {r['residual']:.4g} | {r['band']:.4g} | "
                    f"{'yes' if r['biased'] else 'no'} | {r['variance']:.3g} | {e.get('1', float('nan')):.3f} | "
                    f"{e.get('16', float('nan')):.3f} | {e.get('64', float('nan')):.3f} |"
                )
            lines.append("")
    return "\n".join(lines)


def plot_path_error(path: Path, results: dict) -> None:
    plt = experiment.pyplot()
    panels = [(env_id, g, res) for env_id, w in results.items() for g, res in w["by_gamma"].items()]
    fig, axes = plt.subplots(2, len(results), figsize=(5.2 * len(results), 8.0), dpi=110, squeeze=False)
    for k, (env_id, gamma, res) in enumerate(panels):
        ax = axes[k % 2][k // 2]
        for r in res["rows"]:
            m = np.array([int(x) for x in r["relative_error"]])
            ax.plot(m, list(r["relative_error"].values()), marker="o", lw=1, label=r["variant"], ls="--" if r["biased"] else "-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("windows averaged m")
        ax.set_ylabel("relative error to c·∇J_γ")
        ax.set_title(f"{env_id}, γ = {gamma} (dashed: biased)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=6)
    experiment.save_figure(fig, path)


def run(args: Args) -> dict:
    """Measure every world, write the output folder; returns the results."""
    args = apply_preset(args)
    if args.num_batches < 2:
        raise ValueError(f"`num_batches` must be >= 2; got {args.num_batches}.")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        raise ValueError(f"`batch_sizes` must be positive; got {args.batch_sizes}.")
    out = experiment.prepare_run_dir(args.out, args.overwrite, marker=RESULTS_JSON)
    t0 = time.perf_counter()
    results = {"args": dataclasses.asdict(args), "num_batches": args.num_batches, "worlds": {}}
    key = jax.random.PRNGKey(args.seed)
    for i, (name, (env, params, logits)) in enumerate(make_worlds(args).items()):
        res = lab.measure(jax.random.fold_in(key, 100 + i), env, params, logits, args.batch_sizes, args.num_batches)
        res["logits"] = np.asarray(logits).tolist()
        results["worlds"][name] = res
        print(f"{name}: measured {len(args.batch_sizes)} batch sizes x {args.num_batches} batches "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)
    path = run_training_path(args, key)
    experiment.write_json(out / PATH_JSON, path)
    (out / PATH_MD).write_text(path_markdown(path, args.path_windows))
    plot_path_error(out / PATH_PLOT, path)
    results["seconds"] = time.perf_counter() - t0
    experiment.write_json(out / RESULTS_JSON, results)
    (out / RESULTS_MD).write_text(markdown(results))
    plot_error_vs_m(out / ERROR_PLOT, results)
    plot_variance_by_variant(out / VARIANCE_PLOT, results)
    print(f"wrote {out}", flush=True)
    return results


def main() -> None:
    run(tyro.cli(Args))


if __name__ == "__main__":
    main()
