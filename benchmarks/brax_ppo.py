"""rlpg's PPO against brax's own trainer (`brax.training.agents.ppo.train`) on brax environments,
at the same settings, in one process.

    python -m benchmarks.brax_ppo                 # inverted_pendulum, inverted_double_pendulum; 2 seeds
    python -m benchmarks.brax_ppo --seeds 3 --quick

Same settings on both sides: 128 envs, unroll (rollout window) 16, so one training step is one
window of every env = 2048 env steps (brax: batch_size 32 × num_minibatches 4 sequences of 16);
4 epochs × 4 minibatches of 512 transitions; policy and value MLPs 64-64 tanh; a tanh-squashed
Gaussian with a state-independent log-std starting at 0 (rlpg `continuous_actions="tanh"`; brax
`distribution_type="tanh_normal"`, `noise_std_type="log"`); Adam lr 1e-3, gradient norm clipped
at 0.5; γ 0.97, GAE λ 0.95, clip ε 0.2, entropy 1e-2, value coefficient 0.5; observation
normalization; episodes of 1000 steps. What cannot be made equal: brax recomputes GAE with the
current value network in every minibatch, clips the policy and value gradient jointly (rlpg: each
network), estimates the entropy from a sample (rlpg: quadrature), and restores the first state on
auto-reset (rlpg draws a fresh reset; see `rlpg.envs.adapters`); brax bootstraps no time-outs here
(`bootstrap_on_timeout=False`), rlpg bootstraps truncations from the reached state.

Both train in 4 equal chunks (brax: `num_evals=5`) with a greedy evaluation (tanh of the mean;
brax `deterministic_eval=True`) of 16 whole episodes from reset before and after each: the
learning curve. env-steps/s counts training only, from the fastest chunk (chunk 1 compiles, and
brax's trainer compiles again on its second chunk); compile seconds = all chunks − 4 × the fastest. Runs alternate (brax seed s, rlpg seed s) so both see
the same machine load; the ratio is taken from the same process. brax recompiles on every call to
its `train`, rlpg compiles once per environment (the program does not depend on the seed).
Also: rlpg PPO's env-steps/s on halfcheetah (same settings, one short chunk after compiling).
Writes benchmarks/results/brax-ppo.{json,md} and brax-ppo-<env>.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

import rlpg
from rlpg import rollout
from rlpg.algos import ppo, run_updates

RESULTS = Path(__file__).parent / "results"
NUM_ENVS, UNROLL, EPOCHS, MINIBATCHES, HIDDEN = 128, 16, 4, 4, (64, 64)
LR, GAMMA, LAM, CLIP, ENT, VALUE_COEF, MAX_GRAD_NORM = 1e-3, 0.97, 0.95, 0.2, 1e-2, 0.5, 0.5
EPISODE_LENGTH, EVAL_EPISODES, CHUNKS = 1000, 16, 4
STEPS = {"inverted_pendulum": 131_072, "inverted_double_pendulum": 262_144}


def rlpg_config(env_name: str, total_timesteps: int) -> ppo.Config:
    return ppo.Config(
        env_id=f"brax/{env_name}", num_envs=NUM_ENVS, num_steps=UNROLL, total_timesteps=total_timesteps,
        num_epochs=EPOCHS, num_minibatches=MINIBATCHES, hidden=HIDDEN, activation="tanh", normalize_obs=True,
        continuous_actions="tanh", lr=LR, gamma=GAMMA, lam=LAM, clip_eps=CLIP, value_coef=VALUE_COEF,
        ent_coef=ENT, max_grad_norm=MAX_GRAD_NORM,
    )


class RlpgRunner:
    """rlpg PPO in CHUNKS compiled chunks with a greedy evaluation around each; compiled once per env."""

    def __init__(self, env_name: str, total_timesteps: int):
        self.algorithm = ppo.make_algorithm(rlpg_config(env_name, total_timesteps))
        if self.algorithm.num_updates % CHUNKS:
            raise ValueError(f"{self.algorithm.num_updates} updates do not split into {CHUNKS} chunks.")
        algo = self.algorithm
        self.chunk_updates = algo.num_updates // CHUNKS
        self.init = jax.jit(algo.init)
        self.chunk = jax.jit(lambda state: run_updates(algo.update, state, self.chunk_updates)[0])
        self.evaluate = jax.jit(lambda key, params: rollout.evaluate(
            key, algo.policy, params, algo.env, algo.env_params, EVAL_EPISODES, greedy=True).mean())

    def run(self, seed: int) -> dict:
        state = jax.block_until_ready(self.init(jax.random.PRNGKey(seed)))
        eval_key = jax.random.PRNGKey(10_000 + seed)
        curve, chunk_s = [float(self.evaluate(eval_key, state.params["policy"]))], []
        for _ in range(CHUNKS):
            t0 = time.perf_counter()
            state = jax.block_until_ready(self.chunk(state))
            chunk_s.append(time.perf_counter() - t0)
            curve.append(float(self.evaluate(eval_key, state.params["policy"])))
        return summarize(curve, chunk_s, self.chunk_updates * NUM_ENVS * UNROLL)


def _device_put_replicated(x, devices):
    """jax < 0.10's `device_put_replicated`, which brax 0.14.2's trainer calls and jax 0.10 removed:
    every leaf stacked once per device along a new leading axis (what its `pmap` expects)."""
    return jax.tree.map(lambda a: jax.numpy.stack([jax.numpy.asarray(a)] * len(devices)), x)


def brax_run(env_name: str, total_timesteps: int, seed: int) -> dict:
    if not hasattr(jax, "device_put_replicated") or jax.__version_info__ >= (0, 10):
        jax.device_put_replicated = _device_put_replicated
    from brax import envs as brax_envs
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as brax_ppo
    from flax import linen

    network_factory = lambda obs_size, action_size, preprocess_observations_fn: ppo_networks.make_ppo_networks(  # noqa: E731
        obs_size, action_size, preprocess_observations_fn=preprocess_observations_fn,
        policy_hidden_layer_sizes=HIDDEN, value_hidden_layer_sizes=HIDDEN, activation=linen.tanh,
        distribution_type="tanh_normal", noise_std_type="log", init_noise_std=1.0, state_dependent_std=False,
    )
    curve, chunk_s = [], []

    def progress(step, metrics):
        curve.append(float(metrics["eval/episode_reward"]))
        if "training/sps" in metrics:
            chunk_s.append(float(metrics["training/walltime"]) - sum(chunk_s))

    brax_ppo.train(
        environment=brax_envs.get_environment(env_name), num_timesteps=total_timesteps, num_evals=CHUNKS + 1,
        episode_length=EPISODE_LENGTH, num_envs=NUM_ENVS, unroll_length=UNROLL, batch_size=NUM_ENVS // MINIBATCHES,
        num_minibatches=MINIBATCHES, num_updates_per_batch=EPOCHS, learning_rate=LR, discounting=GAMMA,
        gae_lambda=LAM, clipping_epsilon=CLIP, entropy_cost=ENT, vf_loss_coefficient=VALUE_COEF,
        max_grad_norm=MAX_GRAD_NORM, normalize_observations=True, reward_scaling=1.0, num_eval_envs=EVAL_EPISODES,
        deterministic_eval=True, network_factory=network_factory, seed=seed, progress_fn=progress,
    )
    return summarize(curve, chunk_s, total_timesteps // CHUNKS)


def summarize(curve: list[float], chunk_s: list[float], steps_per_chunk: int) -> dict:
    """Steady speed from the fastest chunk (other jobs on a shared machine only slow a chunk down);
    compile = all chunks − CHUNKS × the fastest (brax's trainer compiles its epoch on its first and
    again on its second call)."""
    steady = float(np.min(chunk_s))
    return {"curve": curve, "final_return": curve[-1], "chunk_s": chunk_s, "steps_per_s": steps_per_chunk / steady,
            "compile_s": float(sum(chunk_s)) - CHUNKS * steady}


def halfcheetah_steps_per_s(chunk_updates: int = 4) -> dict:
    """rlpg PPO on brax/halfcheetah at the same settings: compile, then env-steps/s of one chunk."""
    algo = ppo.make_algorithm(rlpg_config("halfcheetah", chunk_updates * NUM_ENVS * UNROLL))
    chunk = jax.jit(lambda state: run_updates(algo.update, state, chunk_updates)[0])
    state = jax.jit(algo.init)(jax.random.PRNGKey(0))
    t0 = time.perf_counter()
    state = jax.block_until_ready(chunk(state))
    t1 = time.perf_counter()
    jax.block_until_ready(chunk(state))
    t2 = time.perf_counter()
    return {"compile_s": (t1 - t0) - (t2 - t1), "steps_per_s": chunk_updates * NUM_ENVS * UNROLL / (t2 - t1)}


def plot(env_name: str, runs: dict, steps: int) -> Path:
    from rlpg.experiment import pyplot

    plt = pyplot()
    x = np.linspace(0, steps, CHUNKS + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for name, color in (("rlpg", "tab:blue"), ("brax", "tab:orange")):
        curves = np.array([r["curve"] for r in runs[name]])
        for c in curves:
            ax.plot(x, c, color=color, alpha=0.25, lw=0.8)
        ax.plot(x, curves.mean(0), color=color, lw=2, marker="o", label=f"{name} PPO (mean of {len(curves)} seeds)")
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel(f"greedy evaluation return ({EVAL_EPISODES} episodes)")
    ax.set_title(f"PPO on brax {env_name}, same settings")
    ax.legend()
    ax.grid(alpha=0.3)
    path = RESULTS / f"brax-ppo-{env_name}.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a quarter of the steps (a smoke run)")
    parser.add_argument("--no-halfcheetah", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Brax System")
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    print(f"rlpg {rlpg.__version__}, jax {jax.__version__}, {device}", flush=True)
    t_start = time.perf_counter()
    results = {}
    for env_name, steps in STEPS.items():
        steps = steps // 4 if args.quick else steps
        runner = RlpgRunner(env_name, steps)
        runs = {"rlpg": [], "brax": []}
        for seed in range(args.seeds):
            runs["brax"].append(brax_run(env_name, steps, seed))
            runs["rlpg"].append(runner.run(seed))
            for name in ("brax", "rlpg"):
                r = runs[name][-1]
                print(f"{env_name} seed {seed} {name:4s}: final return {r['final_return']:7.1f}  "
                      f"{r['steps_per_s']:8,.0f} env-steps/s  compile {r['compile_s']:5.1f}s  curve {np.round(r['curve'], 1).tolist()}",
                      flush=True)
        ratios = [a["steps_per_s"] / b["steps_per_s"] for a, b in zip(runs["rlpg"], runs["brax"])]
        results[env_name] = {"env_steps": steps, **runs, "speed_ratios": ratios, "plot": plot(env_name, runs, steps).name}
    if not args.no_halfcheetah:
        results["halfcheetah"] = halfcheetah_steps_per_s()
        print(f"halfcheetah rlpg: {results['halfcheetah']['steps_per_s']:,.0f} env-steps/s, "
              f"compile {results['halfcheetah']['compile_s']:.1f}s", flush=True)
    total_s = time.perf_counter() - t_start
    write(results, args, device, total_s)


def write(results: dict, args, device: str, total_s: float) -> None:
    lines = [f"# PPO on brax: rlpg vs brax's own trainer ({device}, jax {jax.__version__})", "",
             f"Same settings (see benchmarks/brax_ppo.py): {NUM_ENVS} envs × unroll {UNROLL}, {EPOCHS} epochs × "
             f"{MINIBATCHES} minibatches, 64-64 tanh, tanh-Gaussian, lr {LR}, γ {GAMMA}, λ {LAM}, obs normalization; "
             f"{args.seeds} seeds; greedy evaluation over {EVAL_EPISODES} episodes of {EPISODE_LENGTH} steps. "
             "Runs alternate brax/rlpg per seed in one process on a 2-core CPU shared with other jobs (timings noisy). "
             f"Whole benchmark: {total_s / 60:.1f} min. env-steps/s: training only, the fastest of 4 chunks, mean over "
             "seeds; rlpg compiles once per env (its second seed reuses the program), brax's trainer compiles on every "
             "call, twice (its first and second epoch). brax 0.14.2's trainer runs here on jax 0.10.2 through a "
             "`jax.device_put_replicated` shim (removed in jax 0.10).", "",
             "| env | env steps | final return rlpg (per seed) | final return brax (per seed) | env-steps/s rlpg | "
             "env-steps/s brax | rlpg / brax speed (per seed) | compile s rlpg (once) | compile s brax (each seed) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for env_name in STEPS:
        r = results[env_name]
        mean = lambda side, key: float(np.mean([x[key] for x in r[side]]))  # noqa: E731
        finals = {side: [round(x["final_return"], 1) for x in r[side]] for side in ("rlpg", "brax")}
        lines.append(f"| {env_name} | {r['env_steps']:,} | {finals['rlpg']} (mean {np.mean(finals['rlpg']):.1f}) | "
                     f"{finals['brax']} (mean {np.mean(finals['brax']):.1f}) | {mean('rlpg', 'steps_per_s'):,.0f} | "
                     f"{mean('brax', 'steps_per_s'):,.0f} | {np.round(r['speed_ratios'], 2).tolist()} | "
                     f"{r['rlpg'][0]['compile_s']:.1f} | {np.round([x['compile_s'] for x in r['brax']], 1).tolist()} |")
    if "halfcheetah" in results:
        h = results["halfcheetah"]
        lines += ["", f"halfcheetah (rlpg PPO, same settings, speed only): {h['steps_per_s']:,.0f} env-steps/s after "
                  f"{h['compile_s']:.0f} s of compilation — 1M steps would take {1e6 / h['steps_per_s'] / 60:.0f} min here, "
                  "and the published halfcheetah budgets (tens of millions of steps, thousands of envs) need an accelerator."]
    lines += ["", "Learning curves: " + ", ".join(f"`{results[e]['plot']}`" for e in STEPS) + "."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "brax-ppo.json").write_text(json.dumps(
        {"device": device, "jax": jax.__version__, "seeds": args.seeds, "total_minutes": total_s / 60, **results}, indent=2) + "\n")
    (RESULTS / "brax-ppo.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
