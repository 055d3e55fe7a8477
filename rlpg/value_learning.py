"""Value learning: the TD target and loss of Q-learning (DQN and double DQN), pure functions
apart from the policy-gradient estimators (as rlax keeps them), shapes [B] / [B, A]."""

from __future__ import annotations

import typing
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from rlpg._checks import as_array, check_binary, check_choice, check_floating, check_in_interval, check_rank, check_same_shape, check_shape

TDLoss = Literal["huber", "mse"]
LOSSES = typing.get_args(TDLoss)


def td_target(
    reward: jax.Array,
    terminated: jax.Array,
    next_q_target: jax.Array,
    gamma: float | jax.Array,
    next_q_online: jax.Array | None = None,
) -> jax.Array:
    """y = r + γ (1 − terminated) Q⁻(s', a*), with no gradient.

    a* = argmax_a Q⁻(s', a) (DQN), or argmax_a Q(s', a) when `next_q_online` is given (double
    DQN: the online network selects, the target network evaluates).

    Args:
      reward: [B] float.  terminated: [B] bool (truncation must not be passed here: it bootstraps).
      next_q_target: [B, A] Q⁻(s', ·).  next_q_online: [B, A] Q(s', ·) or None.
      gamma: [] discount.
    Returns:
      [B] targets.
    """
    reward, terminated = as_array("reward", reward), as_array("terminated", terminated)
    next_q_target = as_array("next_q_target", next_q_target)
    check_rank("reward", reward, 1, "[B]")
    check_floating("reward", reward)
    check_same_shape(reward=reward, terminated=terminated)
    check_binary("terminated", terminated)
    check_rank("next_q_target", next_q_target, 2, "[B, A]")
    check_shape("next_q_target", next_q_target, (reward.shape[0], next_q_target.shape[1]), "[B, A] with B = len(reward)")
    if next_q_target.shape[1] < 1:
        raise ValueError(f"`next_q_target` must have at least one action, A >= 1 in [B, A]; got shape {next_q_target.shape}.")
    check_in_interval("gamma", gamma, 0.0, 1.0)
    if next_q_online is None:
        next_value = next_q_target.max(axis=-1)
    else:
        next_q_online = as_array("next_q_online", next_q_online)
        check_shape("next_q_online", next_q_online, next_q_target.shape, "the shape of next_q_target")
        best = jnp.argmax(next_q_online, axis=-1)
        next_value = jnp.take_along_axis(next_q_target, best[:, None], axis=-1)[:, 0]
    not_terminated = 1.0 - terminated.astype(reward.dtype)
    return jax.lax.stop_gradient(reward + gamma * not_terminated * next_value)


def td_loss(q_taken: jax.Array, target: jax.Array, loss: str = "huber") -> jax.Array:
    """mean ℓ(Q(s, a) − y): Huber (δ = 1) or ½ squared error. q_taken, target [B] float -> []."""
    q_taken, target = as_array("q_taken", q_taken), as_array("target", target)
    check_floating("q_taken", q_taken)
    check_floating("target", target)
    check_same_shape(q_taken=q_taken, target=target)
    check_choice("loss", loss, LOSSES)
    error = q_taken - target
    per_sample = optax.huber_loss(error, delta=1.0) if loss == "huber" else 0.5 * error**2
    return per_sample.mean()
