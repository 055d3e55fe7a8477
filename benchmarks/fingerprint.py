"""Fingerprints of small training runs of every algorithm: SHA-256 of each run's metrics and final
state, to show that a refactor changed no number (compare two runs of this script on the same
machine, before and after; float32 results differ between machines).

    python -m benchmarks.fingerprint --out before.json
    python -m benchmarks.fingerprint --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from rlpg import algos

RUNS = {
    "reinforce-value": ("reinforce", dict(num_envs=4, num_steps=64, total_timesteps=4 * 64 * 3)),
    "reinforce-rloo-gradient": ("reinforce", dict(num_envs=4, num_steps=64, total_timesteps=4 * 64 * 3, baseline="rloo",
                                                  normalize=False, discount_weighting="gradient", returns="reward_to_go")),
    "reinforce-linear-total": ("reinforce", dict(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 3, baseline="none",
                                                 returns="total", policy="linear")),
    "reinforce-bootstrap": ("reinforce", dict(env_id="Pendulum-v1", num_envs=4, num_steps=32, total_timesteps=4 * 32 * 3,
                                              time_limits="bootstrap")),
    "a2c": ("a2c", dict(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 4)),
    "ppo": ("ppo", dict(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 3, num_epochs=2, num_minibatches=2)),
    "ppo-normalized": ("ppo", dict(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 3, num_epochs=2, num_minibatches=2,
                                   normalize_obs=True, normalize_reward=True, clip_value=True, anneal_lr=True)),
    "ppo-tanh": ("ppo", dict(env_id="Pendulum-v1", num_envs=4, num_steps=32, total_timesteps=4 * 32 * 3, num_epochs=2,
                             num_minibatches=2, continuous_actions="tanh")),
    "npg": ("npg", dict(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 3, cg_iters=3, value_steps=2)),
    "dqn": ("dqn", dict(num_envs=2, train_freq=8, gradient_steps=2, total_timesteps=2 * 8 * 6, buffer_size=64,
                        batch_size=8, learning_starts=16, target_update_every=3, double=True)),
    "dqn-online": ("dqn", dict(num_envs=2, train_freq=8, gradient_steps=2, total_timesteps=2 * 8 * 6, learning_starts=16,
                               replay=False, target_network=False, loss="huber")),
    "apg": ("apg", dict(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3, hidden=(8,))),
    "apg-critic": ("apg", dict(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3, hidden=(8,), critic=True, value_steps=2)),
}


def digest(tree) -> str:
    """SHA-256 over the bytes, shapes and dtypes of a pytree's leaves (in flattening order)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        leaf = np.asarray(leaf)
        h.update(f"{leaf.dtype}{leaf.shape}".encode())
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()


def fingerprint(name: str) -> dict:
    algo, fields = RUNS[name]
    module = algos.ALGOS[algo]
    train = module.make_train(module.Config(**fields))
    state, metrics = jax.jit(train)(jax.random.PRNGKey(0))
    swept = algos.over_seeds(train)  # two seeds, a traced lr override
    swept_state, swept_metrics = jax.jit(swept)(jax.random.split(jax.random.PRNGKey(1), 2), {"lr": jnp.array([1e-3, 3e-3])})
    return {
        "metrics": digest({k: metrics[k] for k in sorted(metrics)}),
        "params": digest(state.params),
        "opt_state": digest(state.opt_state),
        "swept_metrics": digest({k: swept_metrics[k] for k in sorted(swept_metrics)}),
        "swept_params": digest(swept_state.params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the fingerprints to this JSON file")
    parser.add_argument("--compare", help="compare with the fingerprints in this JSON file")
    args = parser.parse_args()
    prints = {name: fingerprint(name) for name in RUNS}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(prints, f, indent=2)
    differ = []
    for name, print_ in prints.items():
        if args.compare:
            before = json.load(open(args.compare)).get(name, {})
            diff = [k for k in print_ if before.get(k) != print_[k]]
            differ += [f"{name}.{k}" for k in diff]
            print(f"{name:26s} {'same' if not diff else 'DIFFERS: ' + ', '.join(diff)}")
        else:
            print(f"{name:26s} {print_['metrics'][:16]} {print_['params'][:16]}")
    if differ:
        sys.exit(f"{len(differ)} fingerprints differ: {differ}")


if __name__ == "__main__":
    main()
