"""Returns and advantages over time-major windows `[T, ...]` (any batch axes after T).

Episode boundaries come as flags per step: `terminated[t]` (the MDP ended: no bootstrap),
`truncated[t]` (a time limit cut it: bootstrap from the true next state), or
`dones = terminated | truncated` where the two need not be told apart. Step t's reward and
flags belong to the transition s_t -> s_{t+1}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlpg._checks import (
    as_array, check_binary, check_floating, check_in_interval, check_integer, check_min_rank, check_nonnegative,
    check_positive, check_same_shape, check_some,
)


def _check_window(rewards, **flags) -> None:
    """rewards [T, ...] float and the 0/1 `flags` (dones, terminated, truncated) of its shape."""
    check_min_rank("rewards", rewards, 1, "[T, ...]")
    _check_steps("rewards", rewards)
    check_floating("rewards", rewards)
    check_same_shape(rewards=rewards, **flags)
    for name, x in flags.items():
        check_binary(name, x)


def _check_steps(name: str, x) -> None:
    """A window holds at least one step: T >= 1."""
    if jnp.shape(x)[0] < 1:
        raise ValueError(f"`{name}` must hold at least one step, shape [T >= 1, ...]; got {jnp.shape(x)}.")


def _check_episode_time(name: str, x) -> None:
    """Steps taken so far: integers >= 0 (checked when concrete)."""
    check_integer(name, x)
    check_nonnegative(name, x)


def _not(flags: jax.Array, dtype) -> jax.Array:
    return 1.0 - jnp.asarray(flags).astype(dtype)


def reward_to_go(
    rewards: jax.Array,
    dones: jax.Array,
    gamma: float | jax.Array,
    bootstrap_value: jax.Array | None = None,
) -> jax.Array:
    """G_t = r_t + γ (1 − done_t) G_{t+1}, with G_T = `bootstrap_value` (default 0).

    The Monte-Carlo return from step t to the end of its episode (γ = 1: the undiscounted
    sum of the rewards still to come). A step whose episode runs past the window gets only
    the rewards inside it plus γ^k·bootstrap_value.

    Args:
      rewards: [T, ...] float.
      dones: [T, ...] bool or {0, 1}: the episode ended at step t.
      gamma: discount in [0, 1] (a scalar, possibly traced).
      bootstrap_value: [...] value of the state after the window, or None.
    Returns:
      [T, ...] returns.
    """
    rewards, dones = as_array("rewards", rewards), as_array("dones", dones)
    _check_window(rewards, dones=dones)
    check_in_interval("gamma", gamma, 0.0, 1.0)
    tail = jnp.zeros_like(rewards[0]) if bootstrap_value is None else as_array("bootstrap_value", bootstrap_value)
    if bootstrap_value is not None:
        check_same_shape(**{"bootstrap_value": tail, "rewards[0]": rewards[0]})
    continues = gamma * _not(dones, rewards.dtype)

    def step(g_next, x):
        r, c = x
        g = r + c * g_next
        return g, g

    _, returns = jax.lax.scan(step, tail.astype(rewards.dtype), (rewards, continues), reverse=True)
    return returns


def total_return(
    rewards: jax.Array,
    dones: jax.Array,
    gamma: float | jax.Array = 1.0,
    bootstrap_value: jax.Array | None = None,
    initial_time: jax.Array | None = None,
) -> jax.Array:
    """R(τ) = Σ_k γ^τ_k r_k over the episode containing step t (its steps in the window, τ_k the
    steps the episode had taken before step k), broadcast to each of its steps.

    The weight of the textbook estimator ĝ = R(τ) Σ_t ∇ log π(a_t|s_t). The whole return for
    episodes that start and end inside the window; an episode running past the window adds
    γ^τ_T·`bootstrap_value`, as in `reward_to_go`. An episode already under way at the window's
    start (a window carried over from the last update, `initial_time` τ_0 > 0) is discounted
    from its own start: γ^τ_0 times its rewards' sum discounted from the window's start. Its
    rewards before the window are left out: they do not depend on the window's actions, so
    leaving them out changes no expected gradient.

    Args:
      rewards: [T, ...] float; dones: [T, ...]; gamma: discount in [0, 1].
      bootstrap_value: [...] value of the state after the window, or None (0).
      initial_time: [...] int, steps the episodes at the window's start had taken
        (`rollout.EnvBatch.episode_length`), or None (0: every window starts at resets).
    Returns:
      [T, ...] returns, constant within each episode.
    """
    dones = as_array("dones", dones)
    g = reward_to_go(rewards, dones, gamma, bootstrap_value)
    starts = jnp.concatenate([jnp.ones_like(dones[:1], bool), jnp.asarray(dones[:-1], bool)], axis=0)
    if initial_time is not None:
        initial_time = as_array("initial_time", initial_time)
        _check_episode_time("initial_time", initial_time)
        check_same_shape(**{"initial_time": initial_time, "rewards[0]": g[0]})
        under_way = jnp.cumsum(starts, axis=0) == 1  # the window's first episode of each env
        g = jnp.where(under_way, jnp.power(gamma, initial_time.astype(g.dtype)) * g, g)

    def step(episode_return, x):
        g_t, start = x
        episode_return = jnp.where(start, g_t, episode_return)
        return episode_return, episode_return

    _, returns = jax.lax.scan(step, jnp.zeros_like(g[0]), (g, starts))
    return returns


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float | jax.Array,
    lam: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Generalized advantage estimation, GAE(γ, λ).

    δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t),
    A_t = δ_t + γ λ (1 − terminated_t)(1 − truncated_t) A_{t+1},   A_T = 0.

    `next_values[t]` is V of the true next state s'_t: on a truncated step, the final
    observation before the reset. So a time limit bootstraps and a termination does not;
    the last step of the window bootstraps from `next_values[T-1]`. λ = 1 gives the
    bootstrapped discounted return minus V; λ = 0 the one-step TD error.

    Args:
      rewards, values, next_values: [T, ...] float.
      terminated, truncated: [T, ...] bool or {0, 1}.
      gamma, lam: scalars in [0, 1] (possibly traced).
    Returns:
      (advantages [T, ...], value targets A + V [T, ...]).
    """
    rewards, values, next_values = (as_array(n, x) for n, x in (("rewards", rewards), ("values", values), ("next_values", next_values)))
    _check_window(rewards, terminated=terminated, truncated=truncated)
    check_same_shape(rewards=rewards, values=values, next_values=next_values)
    check_floating("values", values)
    check_floating("next_values", next_values)
    check_in_interval("gamma", gamma, 0.0, 1.0)
    check_in_interval("lam", lam, 0.0, 1.0)
    not_terminated = _not(terminated, rewards.dtype)
    deltas = rewards + gamma * not_terminated * next_values - values
    trace = gamma * lam * not_terminated * _not(truncated, rewards.dtype)

    def step(a_next, x):
        delta, c = x
        a = delta + c * a_next
        return a, a

    _, advantages = jax.lax.scan(step, jnp.zeros_like(deltas[0]), (deltas, trace), reverse=True)
    return advantages, advantages + values


def running_discounted_return(
    rewards: jax.Array, dones: jax.Array, gamma: float | jax.Array, initial: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Forward-in-time discounted return so far: g_t = r_t + γ (1 − done_{t−1}) g_{t−1}.

    What reward normalization divides by the spread of (as gymnasium's `NormalizeReward`):
    the return accumulated since the episode began, discounted towards the past.

    Args:
      rewards: [T, ...] float; dones: [T, ...] bool or {0, 1}.
      gamma: discount in [0, 1].
      initial: [...] γ-discounted carry from the previous window, 0 where an episode just began.
    Returns:
      (g [T, ...], carry [...] for the next window: g_{T−1}, zeroed where done_{T−1}).
    """
    rewards, dones, initial = as_array("rewards", rewards), as_array("dones", dones), as_array("initial", initial)
    _check_window(rewards, dones=dones)
    check_in_interval("gamma", gamma, 0.0, 1.0)
    check_same_shape(**{"initial": initial, "rewards[0]": rewards[0]})
    not_done = _not(dones, rewards.dtype)

    def step(carry, x):
        r, keep = x
        g = r + gamma * carry
        return g * keep, g

    carry, g = jax.lax.scan(step, initial.astype(rewards.dtype), (rewards, not_done))
    return g, carry


def episode_time(dones: jax.Array, initial: jax.Array) -> jax.Array:
    """τ_t, the steps step t's episode had taken before it: τ_0 = `initial`, τ_{t+1} = (τ_t + 1)(1 − done_t).

    The t of γ^t in the gradient of the discounted return, counted from the episode's start
    (a window carried over from the last update starts mid-episode).

    Args:
      dones: [T, ...] bool or {0, 1}. initial: [...] int, steps the episodes at the window's
        start have taken (`rollout.EnvBatch.episode_length`), 0 at a reset.
    Returns:
      [T, ...] int32.
    """
    dones, initial = as_array("dones", dones), as_array("initial", initial)
    _check_dones(dones)
    _check_episode_time("initial", initial)
    check_same_shape(**{"initial": initial, "dones[0]": dones[0]})
    not_done = jnp.logical_not(jnp.asarray(dones, bool))

    def step(tau, keep):
        return (tau + 1) * keep, tau

    _, times = jax.lax.scan(step, jnp.asarray(initial, jnp.int32), not_done.astype(jnp.int32))
    return times


# ----------------------------------------------------------------------------- masks


def _check_dones(dones) -> None:
    check_min_rank("dones", dones, 1, "[T, ...]")
    _check_steps("dones", dones)
    check_binary("dones", dones)


def episode_ends_mask(dones: jax.Array) -> jax.Array:
    """1 where step t's episode ends inside the window (some done at t' >= t), else 0.

    Exactly the steps whose un-bootstrapped reward-to-go is the true Monte-Carlo return.
    dones [T, ...] -> [T, ...] float32.
    """
    _check_dones(dones)
    d = jnp.asarray(dones, bool)
    return jax.lax.cummax(d.astype(jnp.int32), axis=0, reverse=True).astype(jnp.float32)


def episode_starts_mask(dones: jax.Array) -> jax.Array:
    """1 where step t's episode began inside the window (some done at t' < t), else 0: for
    windows whose step 0 continues an earlier episode (so step 0 is always 0).
    dones [T, ...] -> [T, ...] float32."""
    _check_dones(dones)
    d = jnp.asarray(dones, bool)
    before = jnp.concatenate([jnp.zeros_like(d[:1]), d[:-1]], axis=0)
    return jax.lax.cummax(before.astype(jnp.int32), axis=0).astype(jnp.float32)


def first_episode_mask(dones: jax.Array) -> jax.Array:
    """1 up to and including the first done, 0 after: the first episode of a window that
    starts at a reset. dones [T, ...] -> [T, ...] float32."""
    _check_dones(dones)
    d = jnp.asarray(dones, bool).astype(jnp.int32)
    done_before = jnp.cumsum(d, axis=0) - d
    return (done_before == 0).astype(jnp.float32)


# ----------------------------------------------------------------------------- normalization


def normalize(x: jax.Array, mask: jax.Array | None = None, eps: float = 1e-8) -> jax.Array:
    """(x − mean) / (std + eps), statistics over all entries (or over `mask == 1`).

    Args:
      x: [...] float; mask: [...] of the same shape, 0/1 (checked when concrete: not all 0), or None.
    Returns:
      [...] normalized values (masked-out entries are normalized too, but did not count).
    """
    x = as_array("x", x)
    check_floating("x", x)
    check_positive("eps", eps)
    if mask is None:
        mask = jnp.ones_like(x)
    else:
        mask = as_array("mask", mask)
        check_same_shape(x=x, mask=mask)
        check_binary("mask", mask)
        check_some("mask", mask)
    mask = jnp.asarray(mask, x.dtype)
    count = jnp.maximum(mask.sum(), 1.0)
    mean = (x * mask).sum() / count
    var = (jnp.square(x - mean) * mask).sum() / count
    return (x - mean) / (jnp.sqrt(var) + eps)
