"""Environments by id beyond gymnax's own: `register(env_id, factory)` and the adapted suites.

An id reaches `rlpg.envs.make`, so `Config.env_id` of every algorithm,
`experiments.train --env` and `rlpg.load_policy` (which rebuilds a run's env from its saved id)
all take it. Ids are resolved in this order:

| id | environment |
| --- | --- |
| registered with `register(env_id, factory)` | `factory()` |
| `brax/<name>`, e.g. `brax/inverted_pendulum` | `BraxEnv` over `brax.envs.get_environment(name)` (extra `rlpg[brax]`) |
| `craftax/<name>`, e.g. `craftax/Craftax-Classic-Symbolic-v1` | `LegacyGymnaxEnv` over Craftax's env without auto-reset (extra `rlpg[craftax]`) |
| `package.module:env_id` | imports `package.module` (which registers `env_id` when imported), then as above |
| a textbook world of `REGISTRY`, or a gymnax id | `rlpg.envs.make`, `gymnax.make` |

The `module:id` form (gymnasium's convention) lets a fresh process — the command line, or
`load_policy` on a saved run — find an environment that a user's module registers on import.

What rlpg needs of an environment (checked the first time a registered id is made, by tracing
`reset` and `step` with `jax.eval_shape`: nothing runs): gymnax 1.x's interface,

    reset(key, params) -> (obs, state)
    step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)

with auto-reset inside `step` (on a done step `obs` is the next episode's first observation)
and `info["final_observation"]`, the observation the step reached before that reset, which
truncated steps bootstrap from; `observation_space(params)` and `action_space(params)` as
gymnax `spaces.Box` / `spaces.Discrete`; and `params.max_steps_in_episode`, the time limit
`rollout.evaluate` plays to. Subclassing `gymnax.environments.environment.Environment`
and writing `step_env`/`reset_env` gives all of it. Environments written against the older
5-value step (`obs, state, reward, done, info`) are wrapped with `LegacyGymnaxEnv`.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import gymnax
import jax
import jax.numpy as jnp
from gymnax.environments import spaces

Factory = Callable[[], tuple[Any, Any]]

_REGISTERED: dict[str, Factory] = {}
_CHECKED: set[str] = set()


def register(env_id: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Make `factory() -> (env, env_params)` reachable by `env_id` everywhere rlpg takes an id.

    The factory runs (and its env is checked against the interface rlpg needs, see the module
    docstring) the first time the id is made, not here. An id that is already registered, a
    gymnax id or a textbook world raises ValueError unless `overwrite=True` (which replaces a
    registered factory, e.g. when a notebook cell runs twice; built-in ids cannot be replaced).
    """
    from rlpg import envs

    if not isinstance(env_id, str) or not env_id or env_id != env_id.strip():
        raise ValueError(f"`env_id` must be a non-empty string without surrounding spaces; got {env_id!r}.")
    if not callable(factory):
        raise TypeError(f"`factory` of {env_id!r} must be callable `() -> (env, env_params)`; got {type(factory).__name__}.")
    if env_id in gymnax.registered_envs or env_id in envs.REGISTRY:
        raise ValueError(f"`env_id` {env_id!r} is already built in (a gymnax id or rlpg.envs.REGISTRY); choose another id.")
    if env_id.split("/", 1)[0] in _FAMILIES and "/" in env_id:
        raise ValueError(f"`env_id` {env_id!r} uses the reserved prefix {env_id.split('/', 1)[0]!r}/; choose another id.")
    if env_id in _REGISTERED and not overwrite:
        raise ValueError(
            f"`env_id` {env_id!r} is already registered (by {_REGISTERED[env_id]!r}); "
            f"pass overwrite=True to replace it."
        )
    _REGISTERED[env_id] = factory
    _CHECKED.discard(env_id)


def registered_ids() -> list[str]:
    """The ids given to `register` so far (sorted); the `brax/` and `craftax/` families are not listed."""
    return sorted(_REGISTERED)


def is_registered(env_id: str) -> bool:
    """True for an id `make_registered` builds: registered, `brax/...`, `craftax/...` or `module:id`."""
    return _factory(env_id) is not None


def make_registered(env_id: str) -> tuple[Any, Any]:
    """(env, env_params) of a registered or adapted id (see the module docstring), checked
    against rlpg's interface the first time; ValueError naming the id on any mismatch."""
    factory = _factory(env_id)
    if factory is None:
        raise ValueError(f"`env_id` {env_id!r} is not registered; registered: {registered_ids()}.")
    made = factory()
    if not (isinstance(made, tuple) and len(made) == 2):
        raise TypeError(f"the factory of {env_id!r} must return (env, env_params); got {type(made).__name__}.")
    env, env_params = made
    if env_id not in _CHECKED and not _is_family(env_id):  # the adapters are tested, not traced each time
        check_interface(env_id, env, env_params)
        _CHECKED.add(env_id)
    return env, env_params


def _is_family(env_id: str) -> bool:
    family, _, name = env_id.partition("/")
    return bool(name) and family in _FAMILIES and env_id not in _REGISTERED


def _factory(env_id: str) -> Factory | None:
    if not isinstance(env_id, str):
        return None
    if env_id in _REGISTERED:
        return _REGISTERED[env_id]
    family, _, name = env_id.partition("/")
    if name and family in _FAMILIES:
        return lambda: _FAMILIES[family](name)
    module, sep, inner_id = env_id.partition(":")
    if sep and module and inner_id:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            raise ValueError(f"`env_id` {env_id!r}: cannot import module {module!r} ({error}).") from None
        if inner_id not in _REGISTERED:
            raise ValueError(f"`env_id` {env_id!r}: importing {module!r} did not register {inner_id!r}.")
        return _REGISTERED[inner_id]
    return None


def check_interface(env_id: str, env: Any, env_params: Any) -> None:
    """Raise ValueError naming `env_id` and what is missing unless `env` has the interface of the
    module docstring: reset/step traced abstractly (`jax.eval_shape`) on one environment."""

    def fail(what: str) -> None:
        raise ValueError(f"environment {env_id!r} ({type(env).__name__}): {what}")

    for method in ("reset", "step", "observation_space", "action_space"):
        if not callable(getattr(env, method, None)):
            fail(f"has no `{method}` method; rlpg needs reset, step, observation_space and action_space (gymnax's interface).")
    obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
    for name, space in (("observation_space", obs_space), ("action_space", action_space)):
        if not isinstance(space, (spaces.Box, spaces.Discrete)):
            fail(
                f"`{name}` is a {type(space).__module__}.{type(space).__name__}; rlpg needs gymnax spaces.Box "
                f"or spaces.Discrete (rlpg.envs.LegacyGymnaxEnv converts other suites' spaces)."
            )
    if not hasattr(env_params, "max_steps_in_episode"):
        fail("`env_params.max_steps_in_episode` (the time limit rollout.evaluate plays to) is missing.")
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    obs, state = jax.eval_shape(env.reset, key, env_params)
    if tuple(obs.shape) != tuple(obs_space.shape):
        fail(f"reset's observation has shape {tuple(obs.shape)}, observation_space says {tuple(obs_space.shape)}.")
    action = jax.ShapeDtypeStruct(tuple(action_space.shape), jnp.int32 if isinstance(action_space, spaces.Discrete) else jnp.float32)
    out = jax.eval_shape(env.step, key, state, action, env_params)
    if not isinstance(out, tuple) or len(out) != 6:
        hint = (
            " Five values are the older gymnax step (obs, state, reward, done, info): wrap the env in rlpg.envs.LegacyGymnaxEnv."
            if isinstance(out, tuple) and len(out) == 5 else ""
        )
        fail(f"step returns {len(out) if isinstance(out, tuple) else type(out).__name__} values; rlpg needs "
             f"(obs, state, reward, terminated, truncated, info).{hint}")
    _, _, reward, terminated, truncated, info = out
    for name, value in (("reward", reward), ("terminated", terminated), ("truncated", truncated)):
        if tuple(value.shape) != ():
            fail(f"step's `{name}` has shape {tuple(value.shape)}; one environment's must be a scalar.")
    if not isinstance(info, dict) or "final_observation" not in info:
        fail(
            "step's info has no 'final_observation' (the observation before the auto-reset, which truncated "
            "steps bootstrap from); gymnax.environments.environment.Environment.step provides it."
        )
    if tuple(info["final_observation"].shape) != tuple(obs.shape):
        fail(f"info['final_observation'] has shape {tuple(info['final_observation'].shape)}, the observation {tuple(obs.shape)}.")


def _make_brax(name: str) -> tuple[Any, Any]:
    from rlpg.envs.adapters import make_brax

    return make_brax(name)


def _make_craftax(name: str) -> tuple[Any, Any]:
    from rlpg.envs.adapters import make_craftax

    return make_craftax(name)


_FAMILIES: dict[str, Callable[[str], tuple[Any, Any]]] = {"brax": _make_brax, "craftax": _make_craftax}
