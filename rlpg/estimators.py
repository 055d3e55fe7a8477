"""The score-function (likelihood-ratio, REINFORCE) gradient estimator.

∇J(θ) = E_τ[Σ_t w_t ∇ log π_θ(a_t|s_t)], with weights w_t = R(τ) (whole return), G_t
(reward-to-go), G_t − b(s_t) (baseline), or their normalized forms. Each estimator is a
surrogate loss whose gradient is the estimate: L(θ) = −mean_t[stop_gradient(w_t) log π_θ(a_t|s_t)].
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from rlpg import returns as returns_lib
from rlpg._checks import check_floating, check_same_shape


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Σ mask·x / max(Σ mask, 1); the plain mean when `mask` is None. [...] -> []."""
    if mask is None:
        return jnp.mean(x)
    check_same_shape(x=x, mask=mask)
    mask = jnp.asarray(mask, x.dtype)
    return jnp.sum(mask * x) / jnp.maximum(jnp.sum(mask), 1.0)


def reinforce_loss(log_probs: jax.Array, weights: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """L(θ) = −mean[stop_gradient(w) · log π_θ(a|s)] over the steps where mask = 1.

    ∇L = −(1/N) Σ_t w_t ∇ log π(a_t|s_t), N = Σ mask: the REINFORCE estimate, scaled per step
    rather than per trajectory (a constant factor the learning rate absorbs).

    Args:
      log_probs: [T, ...] log π_θ(a_t|s_t), differentiable in θ.
      weights: [T, ...] the estimator's weights (returns, advantages); no gradient flows.
      mask: [T, ...] 1 for steps that count, or None for all.
    Returns:
      [] scalar loss.
    """
    check_floating("log_probs", log_probs)
    check_floating("weights", weights)
    check_same_shape(log_probs=log_probs, weights=weights)
    return -masked_mean(jax.lax.stop_gradient(weights) * log_probs, mask)


def batch_mean_baseline(returns: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """b = mean of the batch's returns (over mask = 1). [T, ...] -> [] scalar."""
    return masked_mean(returns, mask)


def reinforce_weights(
    returns: jax.Array,
    baseline: jax.Array | float | None = None,
    normalize: bool = False,
    mask: jax.Array | None = None,
) -> jax.Array:
    """w_t = G_t − b(s_t), then optionally (w − mean w) / std w over mask = 1.

    Args:
      returns: [T, ...] R(τ) or G_t from `rlpg.returns`.
      baseline: [T, ...] state baseline b(s_t), a scalar constant, or None.
      normalize: standardize the weights (biased, but often more stable).
      mask: [T, ...] steps that count for the normalization statistics.
    Returns:
      [T, ...] weights (no gradient).
    """
    check_floating("returns", returns)
    weights = returns if baseline is None else returns - baseline
    if normalize:
        weights = returns_lib.normalize(weights, mask)
    return jax.lax.stop_gradient(weights)


def value_loss(values: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """½ mean[(V(s_t) − stop_gradient(target_t))²] over mask = 1. [T, ...] -> []."""
    check_same_shape(values=values, targets=targets)
    return 0.5 * masked_mean(jnp.square(values - jax.lax.stop_gradient(targets)), mask)


def entropy_bonus(entropies: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """mean_t H[π(·|s_t)] over mask = 1; subtract coef × this from the loss. [T, ...] -> []."""
    return masked_mean(entropies, mask)


def per_sample_grads(fn: Callable[..., jax.Array], params: Any, *batch: Any) -> Any:
    """[∇_θ fn(θ, x_i)]_i: one gradient per sample, stacked on a new leading axis.

    With fn = log π_θ(a|s) these are the per-sample scores; with fn = the loss of one
    trajectory they are per-trajectory estimates, whose spread is the estimator's variance.

    Args:
      fn: (params, *sample) -> [] scalar.
      params: pytree θ.
      *batch: pytrees whose leaves share a leading axis N.
    Returns:
      A pytree shaped like `params` with a leading axis N on every leaf.
    """
    in_axes = (None,) + (0,) * len(batch)
    return jax.vmap(jax.grad(fn), in_axes=in_axes)(params, *batch)
