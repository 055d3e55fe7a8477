"""PPO on Craftax-Classic-Symbolic through the older-gymnax adapter (`craftax/<name>` ids,
`rlpg.envs.LegacyGymnaxEnv`): a learning curve.

    python -m benchmarks.craftax_ppo                          # 1,048,576 env steps, 1 seed
    python -m benchmarks.craftax_ppo --total-timesteps 65536 --chunks 4    # what fits a loaded 2-core CPU

Settings (PureJaxRL's Craftax baseline, shrunk for a CPU): 16 envs × 64 steps, 4 epochs × 4
minibatches, 256-256 tanh MLPs, Adam lr 2e-4 (gradient norm 1.0), γ 0.99, GAE λ 0.8, clip 0.2,
entropy 0.01. The curve is the mean return of the training episodes that ended in each update
(Craftax's reward: +1 per first-time achievement, ±0.1 per health point gained or lost), plotted
with the number of episodes; no separate evaluation (an episode may last 10,000 steps). Training
runs in chunks of updates, one compiled program, with the chunk times printed.
Writes benchmarks/results/craftax-ppo.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

import rlpg
from rlpg.algos import ppo, run_updates

RESULTS = Path(__file__).parent / "results"
ENV_ID = "craftax/Craftax-Classic-Symbolic-v1"
SETTINGS = dict(num_envs=16, num_steps=64, num_epochs=4, num_minibatches=4, hidden=(256, 256), activation="tanh",
                lr=2e-4, gamma=0.99, lam=0.8, clip_eps=0.2, ent_coef=0.01, max_grad_norm=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total-timesteps", type=int, default=1_048_576)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    print(f"rlpg {rlpg.__version__}, jax {jax.__version__}, {device}", flush=True)
    config = ppo.Config(env_id=ENV_ID, total_timesteps=args.total_timesteps, **SETTINGS)
    algo = ppo.make_algorithm(config)
    if algo.num_updates % args.chunks:
        raise ValueError(f"{algo.num_updates} updates do not split into --chunks {args.chunks}.")
    per_chunk = algo.num_updates // args.chunks
    chunk = jax.jit(lambda state: run_updates(algo.update, state, per_chunk))
    state = jax.jit(algo.init)(jax.random.PRNGKey(args.seed))
    chunks, chunk_s = [], []
    for i in range(args.chunks):  # the results so far are written after every chunk
        t0 = time.perf_counter()
        state, m = jax.block_until_ready(chunk(state))
        chunk_s.append(time.perf_counter() - t0)
        chunks.append(jax.tree.map(np.asarray, m))
        print(f"chunk {i + 1}/{args.chunks}: {int(m['env_steps'][-1]):>9,d} env steps, {chunk_s[-1]:6.1f}s, "
              f"mean episode return {np.nanmean(m['episode_return']):.2f} ({int(m['episodes'].sum())} episodes)", flush=True)
        metrics = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        steady = float(np.min(chunk_s[1:])) if len(chunk_s) > 1 else chunk_s[0]
        write({
            "env": ENV_ID, "device": device, "jax": jax.__version__, "seed": args.seed, "settings": {
                k: list(v) if isinstance(v, tuple) else v for k, v in SETTINGS.items()},
            "total_timesteps": int(metrics["env_steps"][-1]), "planned_timesteps": algo.num_updates * config.steps_per_update,
            "chunk_s": chunk_s, "compile_s": chunk_s[0] - steady, "steps_per_s": per_chunk * config.steps_per_update / steady,
            "env_steps": metrics["env_steps"].tolist(), "episode_return": metrics["episode_return"].tolist(),
            "episodes": metrics["episodes"].tolist(),
        }, quiet=i + 1 < args.chunks)


def smoothed(x: np.ndarray, width: int) -> np.ndarray:
    """Mean over a trailing window of `width` updates, ignoring updates where no episode ended."""
    out = np.full(x.shape, np.nan)
    for i in range(len(x)):
        window = x[max(0, i - width + 1): i + 1]
        if np.isfinite(window).any():
            out[i] = np.nanmean(window)
    return out


def write(result: dict, quiet: bool = False) -> None:
    from rlpg.experiment import pyplot

    plt = pyplot()
    steps, returns = np.asarray(result["env_steps"]), np.asarray(result["episode_return"], float)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.plot(steps, returns, color="tab:blue", alpha=0.25, lw=0.8, label="per update")
    ax.plot(steps, smoothed(returns, 20), color="tab:blue", lw=2, label="mean of the last 20 updates")
    ax.set_xlabel("env steps")
    ax.set_ylabel("training episode return")
    ax.set_title("rlpg PPO on Craftax-Classic-Symbolic (LegacyGymnaxEnv)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "craftax-ppo.png")
    plt.close(fig)
    first, last = smoothed(returns, 20)[[min(19, len(returns) - 1), -1]]
    lines = [f"# PPO on {result['env']} ({result['device']}, jax {result['jax']})", "",
             f"{result['total_timesteps']:,} env steps"
             + (f" (of {result['planned_timesteps']:,} planned; stopped early)" if result["total_timesteps"] < result["planned_timesteps"] else "")
             + f", seed {result['seed']}, settings in benchmarks/craftax_ppo.py "
             "(16 envs × 64 steps, 256-256 MLPs: PureJaxRL's baseline shrunk for a CPU).", "",
             "| env steps | compile s | env-steps/s | training episode return, mean of updates 1–20 | ... of the last 20 |",
             "| --- | --- | --- | --- | --- |",
             f"| {result['total_timesteps']:,} | {result['compile_s']:.0f} | {result['steps_per_s']:,.0f} | {first:.2f} | {last:.2f} |",
             "", "Learning curve: `craftax-ppo.png`. A 2-core CPU shared with other jobs (timings noisy)."]
    (RESULTS / "craftax-ppo.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "craftax-ppo.md").write_text("\n".join(lines) + "\n")
    if not quiet:
        print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
