"""What every training algorithm shares: the `Algorithm` triple, hyperparameter overrides,
the scan that makes `train(key)`, and the in-program progress line.

An algorithm is `init(key, hparams) -> state` and `update(state) -> (state, metrics)`, pure
and jit-able; `train` runs `update` `num_updates` times in one `lax.scan`. Keeping the update
separate lets a caller run the same updates in chunks (checkpointing between them) with the
numbers of one uninterrupted scan.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax

from rlpg import rollout
from rlpg._checks import _CHECKIFY, check_bool, check_hidden, check_key, check_number, check_size  # noqa: F401 (check_hidden: re-exported)
from rlpg.policies import Policy, _check_activation


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


class RolloutSizes:
    """`steps_per_update` and `num_updates` of a config with num_envs, num_steps, total_timesteps."""

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update


def check_run_sizes(config: Any, names: tuple[str, ...], per_update: str = "num_envs × num_steps") -> None:
    """Raise ValueError unless every field in `names` is a positive int and the run has an update,
    total_timesteps >= `per_update` (the config's `steps_per_update`); also checks log_every >= 0,
    that the config's bool switches are bools (TypeError), and `activation` if it has one."""
    for field in dataclasses.fields(config):
        if field.type in ("bool", bool):
            check_bool(field.name, getattr(config, field.name))
    if hasattr(config, "activation"):
        _check_activation(config.activation)
    for name in names:
        check_size(name, getattr(config, name))
    check_size("log_every", config.log_every, minimum=0)
    if config.num_updates < 1:
        raise ValueError(
            f"`total_timesteps` ({config.total_timesteps}) must be at least {per_update} "
            f"= {config.steps_per_update} (one update)."
        )


def check_hparams(hparams: dict | None, numeric_fields: tuple[str, ...], config: Any = None) -> dict:
    """`hparams` as a dict, after checking it overrides only the config's numeric fields, each
    with a number (TypeError naming the field otherwise), and, given the `config`, that
    `config.replace(**hparams).validate()` accepts the values: the Config's own checks and
    messages, on the values that are concrete (traced ones are checked only under
    `rlpg.checked`). Values may be arrays, e.g. one per seed: each entry is checked."""
    hparams = dict(hparams or {})
    unknown = set(hparams) - set(numeric_fields)
    if unknown:
        raise ValueError(f"`hparams` may override only {numeric_fields}; got {sorted(unknown)}.")
    for name, value in hparams.items():
        check_number(name, value)
    traced = all(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(hparams))
    if config is not None and hparams and (_CHECKIFY.get() or not traced):  # traced values: only `checked` checks them
        # Under jit, validate's own constant work (building the env and policy) runs eagerly
        # rather than being staged: a tabular env converts its tables with numpy.
        with jax.ensure_compile_time_eval():
            config.replace(**hparams).validate()
    return hparams


def checks_hparams(config: Any, numeric_fields: tuple[str, ...]) -> Callable:
    """Decorator for an algorithm's `init(key, hparams)`: checks `key` (`check_key`) and passes
    `check_hparams(hparams, numeric_fields, config)`; the hparams check stays reachable as
    `init.check_hparams(hparams)`, which `over_seeds` and `train_fn` use on the host."""

    def decorate(init: Callable) -> Callable:
        check = functools.partial(check_hparams, numeric_fields=numeric_fields, config=config)

        @functools.wraps(init)
        def checked_init(key: jax.Array, hparams: dict | None = None):
            check_key("key", key)
            return init(key, check(hparams))

        checked_init.check_hparams = check
        return checked_init

    return decorate


def train_fn(algorithm: Algorithm) -> Callable:
    """`train(key, hparams=None) -> (state, metrics)`: init, then `num_updates` updates in one scan.

    metrics: the per-update metrics stacked, arrays [num_updates].
    """

    def train(key: jax.Array, hparams: dict | None = None):
        state = algorithm.init(key, hparams)
        return run_updates(algorithm.update, state, algorithm.num_updates)

    if hasattr(algorithm.init, "check_hparams"):
        train.check_hparams = algorithm.init.check_hparams
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


def update_metrics(config: Any, progress: Callable[[dict], None], update: jax.Array, traj: Any, **stats) -> dict:
    """One update's metrics, reported every `config.log_every` updates (see `report`):
    update, env_steps (= update × config.steps_per_update), the mean return, length and count of
    the episodes that finished in `traj` (`rollout.episode_stats`), and the scalars in `stats`."""
    metrics = {
        "update": update,
        "env_steps": update * config.steps_per_update,
        **rollout.episode_stats(traj),
        **stats,
    }
    report(progress, config.log_every, metrics)
    return metrics


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
