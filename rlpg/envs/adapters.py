"""Adapters from other environment interfaces onto the gymnax 1.x semantics rlpg relies on.

Both are `gymnax.environments.environment.Environment`s: gymnax's `step` runs the wrapped
env's step, then auto-resets with a fresh key on `terminated | truncated`, returning the
reached observation as `info["final_observation"]` (what a truncated step bootstraps from)
and the new episode's first observation as `obs`. Neither imports its suite at import time.

`BraxEnv` (ids `brax/<name>`, extra `rlpg[brax]`): a brax `Env` (`reset(rng) -> State`,
`step(State, action) -> State`) with a time limit and auto-reset.
- terminated: brax's `done` (e.g. the pole fell), on the step that reached it.
- truncated: the step count reaches `params.max_steps_in_episode` without `done` — what brax's
  `EpisodeWrapper` calls `truncation` (steps ≥ episode_length and not done). Both on one step
  count as a termination (rlpg's returns never bootstrap a terminated step).
- reset: every episode starts from `brax_env.reset(key)` with a fresh key. brax's own
  `AutoResetWrapper` instead restores the *first* state of the batch slot (`info['first_obs']`,
  drawn once at the start of training), so its later episodes of one slot all start from the
  same state; the fresh reset costs one `reset` per step (gymnax's `step` computes it and selects).
- spaces: observations Box(−inf, inf, [observation_size]); actions Box(−1, 1, [action_size]), the
  range brax envs map onto their actuators. rlpg clips a Gaussian's samples into it, or use a
  tanh-squashed Gaussian (`continuous_actions="tanh"` in PPO's Config).

`LegacyGymnaxEnv` (ids `craftax/<name>`, extra `rlpg[craftax]`): an env written against the
older gymnax interface, whose `step_env(key, state, action, params)` returns the 5 values
`(obs, state, reward, done, info)` (Craftax, gymnax 0.0.x and suites built on it). `done` is
split by the env's time counter:
- time limit reached: the counter `state.<counter>` ≥ `params.<limit>`, found by name —
  (`time`, `max_steps_in_episode`) of gymnax or (`timestep`, `max_timesteps`) of Craftax.
- terminated = done and (not at the limit, or the env's `is_terminal` still holds with the counter
  set to 0, i.e. the episode would have ended anyway: Craftax's death or lava on the last step);
  truncated = done and not terminated.
- Where the env has no such counter, nothing can tell a time limit from a real end: every `done`
  is a termination (never bootstrapped), as the older interface itself treats it.
- Spaces are converted to gymnax `spaces.Discrete` / `spaces.Box`. The adapter's params wrap the
  env's: `LegacyParams(env_params, max_steps_in_episode)`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

# ----------------------------------------------------------------------------- brax


@struct.dataclass
class BraxEnvState(environment.EnvState):
    """time: [] steps taken in this episode. brax_state: the wrapped env's `brax.envs.State`."""

    brax_state: Any


class BraxEnv(environment.Environment[BraxEnvState, environment.EnvParams]):
    """A brax environment as an auto-resetting gymnax environment with a time limit (see the
    module docstring for terminated/truncated and the reset).

    Args:
      brax_env: a `brax.envs.Env`, e.g. `brax.envs.get_environment("inverted_pendulum")`.
      episode_length: the default `params.max_steps_in_episode` (brax's default 1000).
      name: the env's name (default: its class name).
    """

    def __init__(self, brax_env: Any, episode_length: int = 1000, name: str | None = None):
        super().__init__()
        if not isinstance(episode_length, int) or isinstance(episode_length, bool) or episode_length < 1:
            raise ValueError(f"`episode_length` must be a positive int; got {episode_length!r}.")
        self.brax_env = brax_env
        self.episode_length = episode_length
        self._name = name or type(brax_env).__name__

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> environment.EnvParams:
        return environment.EnvParams(max_steps_in_episode=self.episode_length)

    def reset_env(self, key: jax.Array, params: environment.EnvParams) -> tuple[jax.Array, BraxEnvState]:
        brax_state = self.brax_env.reset(key)
        return brax_state.obs, BraxEnvState(time=jnp.int32(0), brax_state=brax_state)

    def step_env(self, key: jax.Array, state: BraxEnvState, action: jax.Array, params: environment.EnvParams):
        del key  # brax dynamics are deterministic
        brax_state = self.brax_env.step(state.brax_state, action)
        terminated = brax_state.done > 0.5
        info = {"discount": 1.0 - terminated.astype(jnp.float32)}
        return brax_state.obs, BraxEnvState(time=state.time + 1, brax_state=brax_state), brax_state.reward, terminated, info

    @functools.cached_property
    def observation_size(self) -> int:
        """The size of `brax_env.reset`'s observation, from the reset's abstract shape (`jax.eval_shape`):
        nothing runs or compiles. brax's own `observation_size` runs a reset op by op on every read,
        compiling each op the first time (26 s for halfcheetah on a 2-core CPU; 0.5 s here)."""
        return int(jax.eval_shape(self.brax_env.reset, jax.random.PRNGKey(0)).obs.shape[-1])

    def observation_space(self, params: environment.EnvParams) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.observation_size,), jnp.float32)

    def action_space(self, params: environment.EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (int(self.brax_env.action_size),), jnp.float32)


def make_brax(name: str, episode_length: int = 1000, **brax_kwargs) -> tuple[BraxEnv, environment.EnvParams]:
    """(BraxEnv, params) of `brax.envs.get_environment(name, **brax_kwargs)`; what id `brax/<name>` makes."""
    try:
        from brax import envs as brax_envs
    except ImportError:
        raise ImportError(f"brax/{name} needs brax: pip install 'rlpg[brax]'.") from None
    if name not in brax_envs._envs:  # brax's registry; get_environment raises a bare KeyError
        raise ValueError(f"`env_id` 'brax/{name}': brax has no environment {name!r}; it has {sorted(brax_envs._envs)}.")
    env = BraxEnv(brax_envs.get_environment(name, **brax_kwargs), episode_length, name=f"brax/{name}")
    return env, env.default_params


# ----------------------------------------------------------------------------- older gymnax interface

# (state counter, params limit) conventions, tried in order.
TIME_COUNTERS = (("time", "max_steps_in_episode"), ("timestep", "max_timesteps"))


@struct.dataclass
class LegacyParams:
    """env_params: the wrapped env's params. max_steps_in_episode: its time limit (for rollout.evaluate)."""

    env_params: Any
    max_steps_in_episode: int


@struct.dataclass
class LegacyState(environment.EnvState):
    """env_state: the wrapped env's state. truncated: [] bool, the last step hit the time limit."""

    env_state: Any
    truncated: jax.Array


class LegacyGymnaxEnv(environment.Environment[LegacyState, LegacyParams]):
    """An env with the older 5-value `step_env` as a gymnax 1.x environment (see the module
    docstring for how `done` is split into terminated and truncated).

    Args:
      env: the wrapped environment; needs `step_env`, `reset_env`, `default_params`,
        `observation_space(params)` and `action_space(params)` (its `step`, which would reset
        without keeping the final observation, is not used).
      max_steps_in_episode: the time limit `rollout.evaluate` plays to; default: the env's limit
        `params.<limit>` of `TIME_COUNTERS`.
    """

    def __init__(self, env: Any, max_steps_in_episode: int | None = None):
        super().__init__()
        for method in ("step_env", "reset_env", "default_params", "observation_space", "action_space"):
            if not hasattr(env, method):
                raise ValueError(f"`env` ({type(env).__name__}) has no `{method}`; LegacyGymnaxEnv wraps envs with the older gymnax interface.")
        self.env = env
        self._counter = self._find_counter(env)
        if max_steps_in_episode is None:
            if self._counter is None:
                raise ValueError(
                    f"`max_steps_in_episode` must be given: {type(env).__name__} has no time counter of {TIME_COUNTERS}."
                )
            max_steps_in_episode = int(getattr(env.default_params, self._counter[1]))
        self.max_steps_in_episode = max_steps_in_episode

    @staticmethod
    def _find_counter(env: Any) -> tuple[str, str] | None:
        """The (state counter, params limit) pair both of whose fields exist, else None."""
        params = env.default_params
        _, state = jax.eval_shape(env.reset_env, jax.ShapeDtypeStruct((2,), jnp.uint32), params)
        for counter, limit in TIME_COUNTERS:
            if hasattr(state, counter) and hasattr(params, limit):
                return counter, limit
        return None

    @property
    def name(self) -> str:
        return getattr(self.env, "name", type(self.env).__name__)

    @property
    def default_params(self) -> LegacyParams:
        return LegacyParams(env_params=self.env.default_params, max_steps_in_episode=self.max_steps_in_episode)

    def reset_env(self, key: jax.Array, params: LegacyParams) -> tuple[jax.Array, LegacyState]:
        obs, env_state = self.env.reset_env(key, params.env_params)
        return obs, LegacyState(time=jnp.int32(0), env_state=env_state, truncated=jnp.bool_(False))

    def split_done(self, env_state: Any, done: jax.Array, env_params: Any) -> tuple[jax.Array, jax.Array]:
        """(terminated, truncated) [] bool of a step that reached `env_state` with the env's `done`."""
        done = jnp.asarray(done, bool)
        if self._counter is None:
            return done, jnp.zeros_like(done)
        counter, limit = self._counter
        at_limit = getattr(env_state, counter) >= getattr(env_params, limit)
        would_end_anyway = jnp.asarray(self.env.is_terminal(env_state.replace(**{counter: 0}), env_params), bool) \
            if hasattr(self.env, "is_terminal") else jnp.zeros_like(done)
        terminated = done & (~at_limit | would_end_anyway)
        return terminated, done & ~terminated

    def step_env(self, key: jax.Array, state: LegacyState, action: jax.Array, params: LegacyParams):
        obs, env_state, reward, done, info = self.env.step_env(key, state.env_state, action, params.env_params)
        terminated, truncated = self.split_done(env_state, done, params.env_params)
        new_state = LegacyState(time=state.time + 1, env_state=env_state, truncated=truncated)
        return obs, new_state, jnp.asarray(reward, jnp.float32), terminated, info

    def is_truncated(self, state: LegacyState, params: LegacyParams) -> jax.Array:
        return state.truncated

    def observation_space(self, params: LegacyParams) -> spaces.Box | spaces.Discrete:
        return to_gymnax_space(self.env.observation_space(params.env_params))

    def action_space(self, params: LegacyParams | None = None) -> spaces.Box | spaces.Discrete:
        return to_gymnax_space(self.env.action_space(self.default_params.env_params if params is None else params.env_params))


def to_gymnax_space(space: Any) -> spaces.Box | spaces.Discrete:
    """A gymnax `spaces.Discrete` (anything with `n`) or `spaces.Box` (low, high, shape) of another suite's space."""
    if isinstance(space, (spaces.Box, spaces.Discrete)):
        return space
    if hasattr(space, "n"):
        return spaces.Discrete(int(space.n))
    if all(hasattr(space, a) for a in ("low", "high", "shape")):
        return spaces.Box(space.low, space.high, tuple(space.shape), getattr(space, "dtype", jnp.float32))
    raise ValueError(f"cannot convert space {type(space).__name__} to a gymnax Box or Discrete.")


def make_craftax(name: str) -> tuple[LegacyGymnaxEnv, LegacyParams]:
    """(LegacyGymnaxEnv, params) of Craftax's `name` without auto-reset; what id `craftax/<name>` makes."""
    try:
        from craftax.craftax_env import make_craftax_env_from_name
    except ImportError:
        raise ImportError(f"craftax/{name} needs craftax: pip install 'rlpg[craftax]'.") from None
    try:
        env = LegacyGymnaxEnv(make_craftax_env_from_name(name, auto_reset=False))
    except ValueError as error:
        raise ValueError(f"`env_id` 'craftax/{name}': {error}") from None
    return env, env.default_params
