"""Rollouts of a policy in a batch of auto-resetting gymnax environments, one `lax.scan`.

Arrays are time-major: `[T, B, ...]` with T = num_steps, B = num_envs. gymnax 1.x resets an
environment inside `step` when it terminates or truncates; the pre-reset observation comes
back as `info["final_observation"]` and is kept as `Trajectory.next_obs`, so a truncated step
can bootstrap from the state it really reached.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from rlpg._checks import (
    as_array, check_binary, check_bool, check_floating, check_index, check_integer, check_key, check_same_shape, check_size,
)
from rlpg.policies import Policy


@struct.dataclass
class Trajectory:
    """One window of experience, time-major [T, B, ...].

    obs, next_obs: [T, B, *obs_shape] — s_t and the true s_{t+1} (pre-reset on done steps).
    action: [T, B] int or [T, B, D] float (as sampled, before clipping to the action space).
    reward: [T, B] float32.  terminated, truncated: [T, B] bool.
    log_prob: [T, B] log π(a_t|s_t) under the acting parameters.
    episode_return, episode_length: [T, B] the finished episode's totals on its last step, else 0.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    log_prob: jax.Array
    next_obs: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array

    @property
    def done(self) -> jax.Array:
        """[T, B] bool: the episode ended at step t (terminated or truncated)."""
        return jnp.logical_or(self.terminated, self.truncated)


@struct.dataclass
class EnvBatch:
    """The carried state of B environments: gymnax states, current obs [B, ...], and the
    running return [B] and length [B] of each one's current episode."""

    env_state: Any
    obs: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


def env_action(env, env_params, action: jax.Array) -> jax.Array:
    """The action as the env takes it: continuous ones shaped [..., *space.shape] from the
    policy's flat [..., D] (one env, or a batch), then clipped into the Box (bounds scalar or
    of the space's shape); discrete ones as they are."""
    action = as_array("action", action)
    space = env.action_space(env_params)
    if isinstance(space, spaces.Box):
        size = math.prod(space.shape)
        if jnp.ndim(action) < 1 or jnp.shape(action)[-1] != size:
            raise ValueError(f"`action` must end in the {_name(env)} action's size {size}, [..., {size}]; got {jnp.shape(action)}.")
        check_floating("action", action)
        return jnp.clip(action.reshape(action.shape[:-1] + tuple(space.shape)), space.low, space.high)
    check_integer("action", action)
    check_index("action", action, space.n)
    return action


def _name(env) -> str:
    return getattr(env, "name", type(env).__name__)


def _check_policy_fits(policy: Policy, params: Any, env, env_params, obs: jax.Array) -> None:
    """The policy acts in the env's action space: a categorical over its n actions, or D = the
    Box's size continuous actions (static shapes, from one abstract forward pass)."""
    space = env.action_space(env_params)
    dist = jax.eval_shape(policy.apply, params, obs)
    if isinstance(space, spaces.Discrete):
        shape = getattr(dist, "shape", None)
        if shape is None or shape[-1:] != (space.n,):
            got = f"shape {shape}" if shape is not None else f"{type(dist).__name__} of shapes {[x.shape for x in jax.tree.leaves(dist)]}"
            raise ValueError(f"`policy` must give {space.n} logits per observation, one per action of {_name(env)}; got {got}.")
    else:
        action = jax.eval_shape(policy.distribution.sample, jax.random.PRNGKey(0), dist)
        size = math.prod(space.shape)
        if action.shape[-1:] != (size,):
            raise ValueError(f"`policy` must give actions of size {size} for {_name(env)}'s Box {tuple(space.shape)}; "
                             f"got actions of shape {action.shape[1:]} per observation.")


def count_episodes(episode_return: jax.Array, episode_length: jax.Array, reward: jax.Array, done: jax.Array):
    """One step of the running totals of B episodes: ((return, length) [B] carried on, 0 after an
    end; (finished return, finished length) [B], nonzero on done steps only)."""
    episode_return, episode_length, reward, done = (
        as_array(n, x) for n, x in (("episode_return", episode_return), ("episode_length", episode_length), ("reward", reward), ("done", done))
    )
    check_same_shape(episode_return=episode_return, episode_length=episode_length, reward=reward, done=done)
    check_binary("done", done)
    ep_return, ep_length = episode_return + reward, episode_length + 1
    carried = (jnp.where(done, 0.0, ep_return), jnp.where(done, 0, ep_length))
    return carried, (jnp.where(done, ep_return, 0.0), jnp.where(done, ep_length, 0))


def reset(key: jax.Array, env, env_params, num_envs: int) -> EnvBatch:
    """Reset `num_envs` environments with independent keys."""
    check_key("key", key)
    check_size("num_envs", num_envs)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), env_params)
    return EnvBatch(
        env_state=env_state,
        obs=obs,
        episode_return=jnp.zeros((num_envs,), jnp.float32),
        episode_length=jnp.zeros((num_envs,), jnp.int32),
    )


def step(key: jax.Array, env, env_params, batch: EnvBatch, action: jax.Array):
    """Step B environments once with `action` [B, ...]; returns (batch, reward, terminated,
    truncated, next_obs, episode_return, episode_length), the last two nonzero on done steps."""
    check_key("key", key)
    action = as_array("action", action)
    if jnp.shape(action)[:1] != batch.obs.shape[:1]:
        raise ValueError(f"`action` must hold one action per environment of `batch`, [{batch.obs.shape[0]}, ...]; "
                         f"got {jnp.shape(action)}.")
    return _step_envs(jax.random.split(key, batch.obs.shape[0]), env, env_params, batch, action)


def _step_envs(env_keys: jax.Array, env, env_params, batch: EnvBatch, action: jax.Array):
    """`step` with the per-environment keys [B] given (those `step` splits from its key)."""
    obs, env_state, reward, terminated, truncated, info = jax.vmap(
        env.step, in_axes=(0, 0, 0, None)
    )(env_keys, batch.env_state, env_action(env, env_params, action), env_params)
    reward = reward.astype(jnp.float32)
    (ep_return, ep_length), (finished_return, finished_length) = count_episodes(
        batch.episode_return, batch.episode_length, reward, jnp.logical_or(terminated, truncated)
    )
    new_batch = EnvBatch(env_state=env_state, obs=obs, episode_return=ep_return, episode_length=ep_length)
    return new_batch, reward, terminated, truncated, info["final_observation"], finished_return, finished_length


def rollout(
    key: jax.Array, policy: Policy, params: Any, env, env_params, batch: EnvBatch, num_steps: int
) -> tuple[EnvBatch, Trajectory]:
    """Act with π_params for `num_steps` steps in every environment of `batch`.

    Returns the carried `EnvBatch` (continue from it next time) and a `Trajectory` [T, B, ...].
    """
    check_key("key", key)
    check_size("num_steps", num_steps)
    _check_policy_fits(policy, params, env, env_params, batch.obs)

    def body(batch: EnvBatch, keys):
        act_key, env_keys = keys
        return _act(act_key, env_keys, policy, params, env, env_params, batch)

    return jax.lax.scan(body, batch, _step_keys(key, num_steps, batch.obs.shape[0]))


def _act(act_key, env_keys, policy: Policy, params, env, env_params, batch: EnvBatch) -> tuple[EnvBatch, Trajectory]:
    """One step of every environment with an action sampled from π_params -> (batch, transition [B, ...])."""
    dist = policy.apply(params, batch.obs)
    action = policy.distribution.sample(act_key, dist)
    log_prob = policy.distribution.log_prob(dist, action)
    new_batch, reward, terminated, truncated, next_obs, ep_ret, ep_len = _step_envs(
        env_keys, env, env_params, batch, action
    )
    transition = Trajectory(
        obs=batch.obs,
        action=action,
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        log_prob=log_prob,
        next_obs=next_obs,
        episode_return=ep_ret,
        episode_length=ep_len,
    )
    return new_batch, transition


def finish_episodes(
    key: jax.Array, policy: Policy, params: Any, env, env_params, batch: EnvBatch, max_steps: int
) -> tuple[EnvBatch, Trajectory, jax.Array]:
    """Act until every environment's current episode has ended, starting no new one.

    The continuation of a window whose episodes are counted by where they start: an env whose
    episode is under way steps on with π_params; once its episode ends (and gymnax resets it)
    it stands still. A `lax.while_loop` that stops as soon as every episode has ended (at most
    `max_steps` steps, the env's time limit `env_params.max_steps_in_episode` being enough),
    writing into buffers of `max_steps` steps.

    Args:
      key: PRNG key. policy, params, env, env_params: as in `rollout`.
      batch: B environments, each at a reset or inside an episode.
      max_steps: the buffers' length L (static), at least the steps any episode can still take.
    Returns:
      (batch, every env at a reset; Trajectory [L, B, ...] of the continuation, zeros where an
      env stood still; active [L, B] float32, 1 on the steps that were taken).
    """
    check_key("key", key)
    check_size("max_steps", max_steps)
    _check_policy_fits(policy, params, env, env_params, batch.obs)
    num_envs = batch.obs.shape[0]
    active = batch.episode_length > 0
    _, template = jax.eval_shape(lambda: _act(key, jax.random.split(key, num_envs), policy, params, env, env_params, batch))
    buffers = jax.tree.map(lambda x: jnp.zeros((max_steps,) + x.shape, x.dtype), template)
    taken = jnp.zeros((max_steps, num_envs), jnp.float32)

    def cond(carry):
        i, _, active, _, _ = carry
        return jnp.logical_and(i < max_steps, jnp.any(active))

    def body(carry):
        i, batch, active, buffers, taken = carry
        act_key, env_key = jax.random.split(jax.random.fold_in(key, i))
        stepped, transition = _act(act_key, jax.random.split(env_key, num_envs), policy, params, env, env_params, batch)
        keep = lambda new, old: jnp.where(active.reshape(active.shape + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
        transition = jax.tree.map(lambda x: keep(x, jnp.zeros_like(x)), transition)
        buffers = jax.tree.map(lambda buf, x: buf.at[i].set(x), buffers, transition)
        taken = taken.at[i].set(active.astype(jnp.float32))
        batch = jax.tree.map(keep, stepped, batch)
        active = jnp.logical_and(active, jnp.logical_not(jnp.logical_or(transition.terminated, transition.truncated)))
        return i + 1, batch, active, buffers, taken

    _, batch, _, buffers, taken = jax.lax.while_loop(cond, body, (0, batch, active, buffers, taken))
    return batch, buffers, taken


def _step_keys(key: jax.Array, num_steps: int, num_envs: int) -> tuple[jax.Array, jax.Array]:
    """The keys of T steps: (act_keys [T], env_keys [T, B]), step t's from `split(key, T)[t]` as
    (act, env) = split(k_t) and env_keys = split(env, B). Drawn here in a few wide calls before
    the loop rather than three narrow ones inside each step, which on CPU cost more than the
    policy's forward pass; the keys, and so every result, are the same bit for bit."""
    act_keys, env_keys = jnp.moveaxis(jax.vmap(jax.random.split)(jax.random.split(key, num_steps)), 1, 0)
    return act_keys, jax.vmap(lambda k: jax.random.split(k, num_envs))(env_keys)


def episode_stats(traj: Trajectory) -> dict[str, jax.Array]:
    """Mean return and length of the episodes that finished in `traj`, and their count.

    Returns {"episode_return": [], "episode_length": [], "episodes": []}; the means are NaN
    when no episode finished.
    """
    done = traj.done
    count = done.sum()
    safe = jnp.maximum(count, 1)
    nan_if_none = jnp.where(count > 0, 1.0, jnp.nan)
    return {
        "episode_return": traj.episode_return.sum() / safe * nan_if_none,
        "episode_length": traj.episode_length.sum() / safe * nan_if_none,
        "episodes": count,
    }


def evaluate(
    key: jax.Array,
    policy: Policy,
    params: Any,
    env,
    env_params,
    num_episodes: int,
    greedy: bool = True,
    max_steps: int | None = None,
) -> jax.Array:
    """Play `num_episodes` whole episodes from reset; returns their returns [num_episodes].

    Acts with the distribution's mode when `greedy`, else samples. Runs `max_steps` steps
    (default: the env's time limit) and counts each episode up to its first end.
    """
    check_key("key", key)
    check_size("num_episodes", num_episodes)
    check_bool("greedy", greedy)
    if max_steps is None:
        max_steps = int(env_params.max_steps_in_episode)
    check_size("max_steps", max_steps)
    reset_key, run_key = jax.random.split(key)
    batch = reset(reset_key, env, env_params, num_episodes)
    _check_policy_fits(policy, params, env, env_params, batch.obs)

    def body(carry, keys):
        batch, alive, total = carry
        act_key, env_keys = keys
        dist = policy.apply(params, batch.obs)
        action = policy.distribution.mode(dist) if greedy else policy.distribution.sample(act_key, dist)
        batch, reward, terminated, truncated, *_ = _step_envs(env_keys, env, env_params, batch, action)
        total = total + alive * reward
        alive = alive * (1.0 - jnp.logical_or(terminated, truncated))
        return (batch, alive, total), None

    init = (batch, jnp.ones((num_episodes,)), jnp.zeros((num_episodes,)))
    (_, _, total), _ = jax.lax.scan(body, init, _step_keys(run_key, max_steps, num_episodes))
    return total
