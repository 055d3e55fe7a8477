"""The score-function (likelihood-ratio, REINFORCE) gradient estimator.

For the discounted return of an episode, J_γ(θ) = E_τ[Σ_t γ^t r_t],

    ∇J_γ(θ) = E_τ[Σ_t w_t ∇ log π_θ(a_t|s_t)]

for the weights w_t = R_γ(τ) (the whole discounted return), γ^t G_t (reward-to-go,
G_t = Σ_{k≥t} γ^{k−t} r_k, t counted from the episode's start), or γ^t (G_t − b_t) with a
baseline b_t that does not depend on a_t or on anything after it. The common update without
γ^t is ∇J_γ only for γ = 1 (Nota & Thomas 2019); the batch mean baseline, which contains the
sample's own return, and standardizing weights by their own batch's statistics are biased;
their leave-one-out forms (`leave_one_out_baseline`, `leave_one_out_normalize`) are not.
These identities hold for whole episodes: which episodes a batch counts must not depend on
how they went (`rlpg.algos.reinforce` counts them by where they start). Each estimator is a
surrogate loss whose gradient is the estimate: L(θ) = −Σ_t stop_gradient(w_t) log π_θ(a_t|s_t) / N.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from rlpg import returns as returns_lib
from rlpg._checks import (
    as_array, check_binary, check_bool, check_floating, check_positive, check_rank, check_same_shape, check_size, check_some,
)


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Σ mask·x / max(Σ mask, 1); the plain mean when `mask` is None. [...] -> [].

    A concrete all-zero mask is refused (nothing to average); a traced one, inside training,
    gives 0."""
    x = as_array("x", x)
    if mask is None:
        return jnp.mean(x)
    mask = as_array("mask", mask)
    check_same_shape(x=x, mask=mask)
    check_binary("mask", mask)
    check_some("mask", mask)
    mask = jnp.asarray(mask, x.dtype)
    return jnp.sum(mask * x) / jnp.maximum(jnp.sum(mask), 1.0)


def reinforce_loss(
    log_probs: jax.Array, weights: jax.Array, mask: jax.Array | None = None, count: float | None = None
) -> jax.Array:
    """L(θ) = −Σ mask · stop_gradient(w) · log π_θ(a|s) / N.

    ∇L = −(1/N) Σ_t mask_t w_t ∇ log π(a_t|s_t). With `count` given, N = count, a constant
    (e.g. the window's env steps), so E[∇L] is −1/N times the expected sum: a fixed positive
    multiple of the gradient that sum estimates. With `count=None`, N = max(Σ mask, 1); when
    the mask is random (it depends on the episodes drawn) dividing by it is not a constant
    factor, and the estimate is biased towards the batches with fewer counted steps.

    Args:
      log_probs: [T, ...] log π_θ(a_t|s_t), differentiable in θ.
      weights: [T, ...] the estimator's weights (returns, advantages); no gradient flows.
      mask: [T, ...] 1 for steps that count, or None for all.
      count: N > 0, or None for Σ mask.
    Returns:
      [] scalar loss.
    """
    log_probs, weights = as_array("log_probs", log_probs), as_array("weights", weights)
    check_floating("log_probs", log_probs)
    check_floating("weights", weights)
    check_same_shape(log_probs=log_probs, weights=weights)
    if count is None:
        return -masked_mean(jax.lax.stop_gradient(weights) * log_probs, mask)
    check_positive("count", count)
    terms = jax.lax.stop_gradient(weights) * log_probs
    if mask is not None:
        mask = as_array("mask", mask)
        check_same_shape(log_probs=log_probs, mask=mask)
        check_binary("mask", mask)
        terms = terms * jnp.asarray(mask, terms.dtype)
    return -jnp.sum(terms) / count


def batch_mean_baseline(returns: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """b = mean of the batch's returns (over mask = 1). [T, ...] -> [] scalar.

    It contains each sample's own return, so E[(G − b) ∇log π] ≠ E[G ∇log π]: biased, by
    O(1 / batch size); `leave_one_out_baseline` is the unbiased form."""
    return masked_mean(returns, mask)


def _column_mask(name: str, x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """The mask [T, B] in x's dtype (all ones for None), after checking x (argument `name`)
    is a float [T, B] and mask 0/1 of its shape."""
    check_rank(name, x, 2, "[T, B]")
    check_floating(name, x)
    mask = jnp.ones_like(x) if mask is None else as_array("mask", mask)
    check_same_shape(**{name: x, "mask": mask})
    check_binary("mask", mask)
    return jnp.asarray(mask, x.dtype)


def _other_columns(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(Σ over the other columns of mask·x, Σ over them of mask), each [B], for x, mask [T, B]."""
    per_column, count = jnp.sum(mask * x, axis=0), jnp.sum(mask, axis=0)
    return jnp.sum(per_column) - per_column, jnp.sum(count) - count


def leave_one_out_baseline(returns: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """RLOO: b_{t,e} = the mean of the returns of the OTHER columns e' ≠ e (over mask = 1).

    Column e (an environment) holds its own episodes; their count and content do not depend
    on the other columns, so b_{·,e} is independent of column e's actions and E[(G − b) ∇log π]
    = E[G ∇log π]. With equal counts it is B/(B − 1) × the batch mean's centring (Kool et al.
    2019). 0 where no other column has a counted step.

    Args:
      returns: [T, B] G_t or R(τ). mask: [T, B] steps that count, or None for all.
    Returns:
      [T, B] baseline, constant along T, no gradient.
    """
    returns = as_array("returns", returns)
    total, count = _other_columns(returns, _column_mask("returns", returns, mask))
    return jax.lax.stop_gradient(jnp.broadcast_to(total / jnp.maximum(count, 1.0), returns.shape))


def leave_one_out_normalize(weights: jax.Array, mask: jax.Array | None = None, eps: float = 1e-8) -> jax.Array:
    """(w_{t,e} − μ_{−e}) / σ_{−e}, μ_{−e} and σ_{−e} the mean and standard deviation of the
    weights of the other columns (over mask = 1); σ_{−e} is replaced by 1 where it is
    numerically zero (<= eps + 10⁻³ × their root mean square: the others all equal).

    Standardizing by statistics that include w itself biases E[w̃ ∇log π]; with the other
    columns' statistics, independent of column e, E[w̃ ∇log π | others] = E[w ∇log π] / σ_{−e}:
    the estimate of the same gradient times a positive factor.

    Args:
      weights: [T, B]. mask: [T, B] steps that count, or None for all.
    Returns:
      [T, B] normalized weights, no gradient.
    """
    weights = as_array("weights", weights)
    check_positive("eps", eps)
    column_mask = _column_mask("weights", weights, mask)
    centred = weights - masked_mean(weights, mask)  # a common shift: keeps E[x²] − E[x]² accurate in float32
    total, count = _other_columns(centred, column_mask)
    squares, _ = _other_columns(jnp.square(centred), column_mask)
    count = jnp.maximum(count, 1.0)
    mean = total / count
    std = jnp.sqrt(jnp.maximum(squares / count - jnp.square(mean), 0.0))
    numerically_zero = eps + 1e-3 * jnp.sqrt(squares / count)  # float32 cancellation in E[x²] − E[x]²
    scale = jnp.where(std > numerically_zero, std, 1.0)  # others all equal (or none): centre only
    return jax.lax.stop_gradient((centred - mean) / scale)


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
    check_bool("normalize", normalize)
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
    values, old_values, targets = (as_array(n, x) for n, x in (("values", values), ("old_values", old_values), ("targets", targets)))
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
    log_probs, old_log_probs = as_array("log_probs", log_probs), as_array("old_log_probs", old_log_probs)
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
    theta, v = as_array("theta", theta), as_array("v", v)
    check_rank("theta", theta, 1, "[P] (flatten a pytree with jax.flatten_util.ravel_pytree)")
    check_same_shape(theta=theta, v=v)
    check_floating("theta", theta)
    if jnp.result_type(v) != jnp.result_type(theta):
        raise TypeError(f"`v` must have `theta`'s dtype {jnp.result_type(theta)} (a tangent of theta); got {jnp.result_type(v)}.")
    log_probs, jv = jax.jvp(log_prob_fn, (theta,), (v,))
    _, vjp = jax.vjp(log_prob_fn, theta)
    (fv,) = vjp(jv)
    return fv / log_probs.size


def conjugate_gradient(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, iters: int) -> jax.Array:
    """x ≈ A⁻¹ b for symmetric positive-definite A given as `matvec(x) = A x`, `iters` steps of CG
    from x = 0 (a fixed count: the same program under jit and vmap). b [P] -> x [P]."""
    b = as_array("b", b)
    check_rank("b", b, 1, "[P]")
    check_floating("b", b)
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
    grad = as_array("grad", grad)
    check_rank("grad", grad, 1, "[P]")
    check_floating("grad", grad)
    check_positive("max_kl", max_kl)
    check_size("cg_iters", cg_iters)
    direction = conjugate_gradient(fvp, grad, cg_iters)
    return jnp.sqrt(2.0 * max_kl / jnp.maximum(grad @ direction, 1e-12)) * direction
