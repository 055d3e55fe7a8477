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
from rlpg._checks import as_array, check_binary, check_floating, check_positive, check_rank, check_same_shape, check_size


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Σ mask·x / max(Σ mask, 1); the plain mean when `mask` is None. [...] -> []."""
    x = as_array("x", x)
    if mask is None:
        return jnp.mean(x)
    mask = as_array("mask", mask)
    check_same_shape(x=x, mask=mask)
    check_binary("mask", mask)
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
    log_probs, weights = as_array("log_probs", log_probs), as_array("weights", weights)
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
    returns = as_array("returns", returns)
    check_floating("returns", returns)
    if baseline is not None:
        baseline = as_array("baseline", baseline)
        if jnp.ndim(baseline) and jnp.shape(baseline) != jnp.shape(returns):
            raise ValueError(
                f"`baseline` must be a scalar or have the shape of `returns` {jnp.shape(returns)}; "
                f"got {jnp.shape(baseline)}."
            )
    weights = returns if baseline is None else returns - baseline
    if normalize:
        weights = returns_lib.normalize(weights, mask)
    return jax.lax.stop_gradient(weights)


def value_loss(values: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """½ mean[(V(s_t) − stop_gradient(target_t))²] over mask = 1. [T, ...] -> []."""
    values, targets = as_array("values", values), as_array("targets", targets)
    check_same_shape(values=values, targets=targets)
    return 0.5 * masked_mean(jnp.square(values - jax.lax.stop_gradient(targets)), mask)


def entropy_bonus(entropies: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """mean_t H[π(·|s_t)] over mask = 1; subtract coef × this from the loss. [T, ...] -> []."""
    entropies = as_array("entropies", entropies)
    check_floating("entropies", entropies)
    if mask is not None:
        check_same_shape(entropies=entropies, mask=mask)
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


def ppo_clip_loss(
    log_probs: jax.Array,
    old_log_probs: jax.Array,
    advantages: jax.Array,
    clip_eps: float | jax.Array,
    mask: jax.Array | None = None,
) -> jax.Array:
    """PPO's clipped surrogate: L(θ) = −mean[min(ρ_t A_t, clip(ρ_t, 1 − ε, 1 + ε) A_t)],
    ρ_t = π_θ(a_t|s_t) / π_old(a_t|s_t) = exp(log π_θ − log π_old).

    At θ = θ_old its gradient is the score-function estimate −mean[A ∇log π]; once ρ leaves
    [1 − ε, 1 + ε] in the direction A favours, the step gets no further gradient.

    Args:
      log_probs: [T, ...] log π_θ(a_t|s_t), differentiable in θ.
      old_log_probs: [T, ...] log-probabilities under the acting policy (no gradient).
      advantages: [T, ...] A_t (no gradient).
      clip_eps: ε > 0 (possibly traced).
      mask: [T, ...] 1 for steps that count, or None for all.
    Returns:
      [] scalar loss.
    """
    log_probs, old_log_probs, advantages = (
        as_array(n, x) for n, x in (("log_probs", log_probs), ("old_log_probs", old_log_probs), ("advantages", advantages))
    )
    check_floating("log_probs", log_probs)
    check_floating("advantages", advantages)
    check_same_shape(log_probs=log_probs, old_log_probs=old_log_probs, advantages=advantages)
    check_positive("clip_eps", clip_eps)
    ratio = jnp.exp(log_probs - jax.lax.stop_gradient(old_log_probs))
    advantages = jax.lax.stop_gradient(advantages)
    surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages)
    return -masked_mean(surrogate, mask)


def clipped_value_loss(
    values: jax.Array,
    old_values: jax.Array,
    targets: jax.Array,
    clip_eps: float | jax.Array,
    mask: jax.Array | None = None,
) -> jax.Array:
    """½ mean[max((V − G)², (V_old + clip(V − V_old, −ε, ε) − G)²)]: PPO's value loss that does
    not reward moving V further than ε from the values it had when the data was collected.

    values: [T, ...] V(s_t) (differentiable); old_values, targets: [T, ...] (no gradient). -> [].
    """
    check_same_shape(values=values, old_values=old_values, targets=targets)
    check_positive("clip_eps", clip_eps)
    old_values, targets = jax.lax.stop_gradient(old_values), jax.lax.stop_gradient(targets)
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    return 0.5 * masked_mean(jnp.maximum(jnp.square(values - targets), jnp.square(clipped - targets)), mask)


def ratio_diagnostics(
    log_probs: jax.Array, old_log_probs: jax.Array, clip_eps: float | jax.Array, mask: jax.Array | None = None
) -> dict[str, jax.Array]:
    """How far an update moved the policy on the batch, from ρ = exp(log π − log π_old):

    approx_kl = mean[(ρ − 1) − log ρ] (an unbiased, non-negative estimate of KL(π_old ‖ π)),
    clip_fraction = mean[|ρ − 1| > ε]. [T, ...] -> {name: []}, no gradient.
    """
    check_same_shape(log_probs=log_probs, old_log_probs=old_log_probs)
    check_positive("clip_eps", clip_eps)
    log_ratio = jax.lax.stop_gradient(log_probs - old_log_probs)
    ratio = jnp.exp(log_ratio)
    return {
        "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
        "clip_fraction": masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(log_ratio.dtype), mask),
    }


def fisher_vector_product(log_prob_fn: Callable[[jax.Array], jax.Array], theta: jax.Array, v: jax.Array) -> jax.Array:
    """F v with F = (1/N) Σ_i ∇log π_θ(a_i|s_i) ∇log π_θ(a_i|s_i)ᵀ, the Fisher of the per-sample scores.

    Never forms F: with J = ∂ log π / ∂θ [N, P], F v = Jᵀ (J v) / N, one forward-mode product
    (`jax.jvp`) and one reverse-mode product (`jax.vjp`). With actions drawn from π_θ this is an
    unbiased estimate of the Fisher information E_{s, a~π}[∇log π ∇log π ᵀ].

    Args:
      log_prob_fn: θ [P] -> [...] log π_θ(a_i|s_i) of the N samples (any shape).
      theta: [P] flat parameters.
      v: [P] vector.
    Returns:
      [P] F v.
    """
    check_rank("theta", theta, 1, "[P] (flatten a pytree with jax.flatten_util.ravel_pytree)")
    check_same_shape(theta=theta, v=v)
    log_probs, jv = jax.jvp(log_prob_fn, (theta,), (v,))
    _, vjp = jax.vjp(log_prob_fn, theta)
    (fv,) = vjp(jv)
    return fv / log_probs.size


def conjugate_gradient(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, iters: int) -> jax.Array:
    """x ≈ A⁻¹ b for symmetric positive-definite A given as `matvec(x) = A x`, `iters` steps of CG
    from x = 0 (a fixed count: the same program under jit and vmap). b [P] -> x [P]."""
    check_rank("b", b, 1, "[P]")
    if not isinstance(iters, jax.core.Tracer):
        check_size("iters", iters, minimum=0)

    def step(_, carry):
        x, r, p, rr = carry
        ap = matvec(p)
        alpha = rr / jnp.maximum(p @ ap, 1e-30)
        x, r = x + alpha * p, r - alpha * ap
        rr_new = r @ r
        return x, r, r + (rr_new / jnp.maximum(rr, 1e-30)) * p, rr_new

    x, *_ = jax.lax.fori_loop(0, iters, step, (jnp.zeros_like(b), b, b, b @ b))
    return x


def natural_gradient_step(
    grad: jax.Array, fvp: Callable[[jax.Array], jax.Array], max_kl: float | jax.Array, cg_iters: int
) -> jax.Array:
    """Δθ = sqrt(2δ / (gᵀ F⁻¹ g)) F⁻¹ g: the natural gradient scaled so that the quadratic model of
    KL(π_θ ‖ π_θ+Δθ) ≈ ½ Δθᵀ F Δθ equals δ = `max_kl` (NPG / TRPO's step), F⁻¹ g by conjugate
    gradient with `fvp(v) = F v`. grad [P] (ascent direction) -> [P]."""
    check_positive("max_kl", max_kl)
    check_size("cg_iters", cg_iters)
    direction = conjugate_gradient(fvp, grad, cg_iters)
    return jnp.sqrt(2.0 * max_kl / jnp.maximum(grad @ direction, 1e-12)) * direction
