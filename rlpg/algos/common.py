"""What every training algorithm shares: the `Algorithm` triple, hyperparameter overrides,
the scan that makes `train(key)`, and the in-program progress line.

An algorithm is `init(key, hparams) -> state` and `update(state) -> (state, metrics)`, pure
and jit-able; `train` runs `update` `num_updates` times in one `lax.scan`. Keeping the update
separate lets a caller run the same updates in chunks (checkpointing between them) with the
numbers of one uninterrupted scan.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from rlpg.policies import Policy


class Algorithm(NamedTuple):
    """A training algorithm built from a config.

    init: `(key, hparams=None) -> state`; the state carries `hparams` so `update` sees them.
    update: `state -> (state, metrics)`, one update; metrics are scalars.
    num_updates: how many updates `train` runs.
    policy: the acting policy; `state.params["policy"]` are its parameters.
    env, env_params: the gymnax environment it trains on.
    """

    init: Callable[..., Any]
    update: Callable[[Any], tuple[Any, dict]]
    num_updates: int
    policy: Policy
    env: Any
    env_params: Any


def check_hparams(hparams: dict | None, numeric_fields: tuple[str, ...]) -> dict:
    """`hparams` as a dict, after checking it overrides only the config's numeric fields."""
    hparams = dict(hparams or {})
    unknown = set(hparams) - set(numeric_fields)
    if unknown:
        raise ValueError(f"`hparams` may override only {numeric_fields}; got {sorted(unknown)}.")
    return hparams


def train_fn(algorithm: Algorithm) -> Callable:
    """`train(key, hparams=None) -> (state, metrics)`: init, then `num_updates` updates in one scan.

    metrics: the per-update metrics stacked, arrays [num_updates].
    """

    def train(key: jax.Array, hparams: dict | None = None):
        state = algorithm.init(key, hparams)
        return run_updates(algorithm.update, state, algorithm.num_updates)

    return train


def run_updates(update: Callable, state: Any, num_updates: int):
    """`num_updates` updates from `state` in one `lax.scan` -> (state, metrics [num_updates])."""
    return jax.lax.scan(lambda s, _: update(s), state, None, length=num_updates)


def report(progress: Callable[[dict], None], log_every: int, metrics: dict) -> None:
    """Call `progress(metrics)` from inside the program when metrics["update"] % log_every == 0."""
    if log_every:
        jax.lax.cond(
            metrics["update"] % log_every == 0,
            lambda m: jax.debug.callback(progress, m),
            lambda m: None,
            metrics,
        )


def print_progress(metrics: dict) -> None:
    """Default progress line: update, env steps, mean episode return, and the entropy and ε if known."""
    line = (
        f"update {int(metrics['update']):>5d}  env steps {int(metrics['env_steps']):>9,d}  "
        f"return {float(metrics['episode_return']):8.2f}"
    )
    for name in ("entropy", "epsilon"):
        if name in metrics:
            line += f"  {name} {float(metrics[name]):.3f}"
    print(line, flush=True)
