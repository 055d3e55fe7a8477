"""Categorical and diagonal-Gaussian distributions as pure functions of their parameters.

Shapes: `logits` [..., A]; `mean` [..., D]; `log_std` [..., D] or [D] (broadcast).
Sampled actions are returned under `stop_gradient`: the score-function estimator treats
an action as data, so d log π(a) / dθ is the true score even when `a` was drawn from π_θ.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlpg._checks import (
    _CHECKIFY, _concrete, _summary, _value_check, as_array, check_finite, check_floating, check_index, check_index_as_given,
    check_integer, check_key, check_min_rank, check_number,
)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)  # Python and NumPy constants: importing runs no XLA program


# ----------------------------------------------------------------------------- categorical


def _check_logits(logits, name: str = "logits") -> jax.Array:
    """`logits` as an array [..., A], A >= 1, of floats without NaN or +inf (−inf: an impossible
    action) and with at least one finite logit per row (values checked when concrete)."""
    logits = as_array(name, logits)
    check_min_rank(name, logits, 1, "[..., A]")
    check_floating(name, logits)
    if jnp.shape(logits)[-1] < 1:
        raise ValueError(f"`{name}` must have at least one action, A >= 1 on its last axis [..., A]; got shape {jnp.shape(logits)}.")
    check_finite(name, logits, allow_neg_inf=True)
    _check_some_finite(name, logits)
    return logits


def _check_some_finite(name: str, logits) -> None:
    """ValueError naming `name` if a concrete row of `logits` [..., A] is all −inf (no action is
    possible: no distribution); a traced one only under `rlpg.checked`."""

    def message(value):
        rows = np.argwhere(~np.any(value > -np.inf, axis=-1))
        where = f"row {tuple(rows[0].tolist())} all -inf ({len(rows)} such rows)" if value.ndim > 1 else "all -inf"
        return (f"`{name}` must hold at least one finite logit per row [..., A] (all -inf makes no "
                f"action possible); got {where}.")

    _value_check(logits, lambda v, xp: xp.any(v > -xp.inf, axis=-1), message,
                 f"`{name}` must hold at least one finite logit per row.")


def _check_same_last_axis(axis: str, **arrays) -> None:
    """ValueError naming the arrays unless they share the last axis (`axis`: A or D)."""
    shapes = {n: jnp.shape(x) for n, x in arrays.items()}
    if len({s[-1] for s in shapes.values()}) > 1:
        names = " and ".join(f"`{n}`" for n in shapes)
        listed = ", ".join(f"`{n}` {s}" for n, s in shapes.items())
        raise ValueError(f"{names} must have the same last axis {axis}; got {listed}.")


def _check_broadcast(**arrays) -> None:
    """ValueError naming the arrays unless their shapes broadcast together."""
    try:
        jnp.broadcast_shapes(*(jnp.shape(x) for x in arrays.values()))
    except ValueError:
        listed = ", ".join(f"`{n}` {jnp.shape(x)}" for n, x in arrays.items())
        raise ValueError(f"shapes must match (or broadcast): {listed}.") from None


def categorical_log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    """log π(a) = logits[a] − logsumexp(logits).

    Args:
      logits: [..., A] unnormalized log-probabilities.
      action: [...] integer actions in [0, A).
    Returns:
      [...] log-probabilities.
    """
    logits = _check_logits(logits)
    check_index_as_given("action", action, jnp.shape(logits)[-1])
    action = as_array("action", action)
    check_integer("action", action)
    if jnp.shape(action) != jnp.shape(logits)[:-1]:
        raise ValueError(
            f"`action` must have shape logits.shape[:-1] = {jnp.shape(logits)[:-1]}; "
            f"got {jnp.shape(action)}."
        )
    check_index("action", action, jnp.shape(logits)[-1])
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]


def _log_softmax_on_support(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(π [..., A], log π with 0 where π(a) = 0): products p · log π then read 0 log 0 = 0, with
    finite gradients, for the impossible actions (−inf logits) that `_check_logits` admits."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(log_p)
    return p, jnp.where(p > 0, log_p, 0.0)


def categorical_entropy(logits: jax.Array) -> jax.Array:
    """H = −Σ_a π(a) log π(a) (0 log 0 = 0: a −inf logit adds nothing). logits [..., A] -> [...]."""
    p, log_p = _log_softmax_on_support(_check_logits(logits))
    return -jnp.sum(p * log_p, axis=-1)


def categorical_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """a ~ softmax(logits). logits [..., A] -> [...] int32 (no gradient)."""
    check_key("key", key)
    logits = _check_logits(logits)
    return jax.lax.stop_gradient(jax.random.categorical(key, logits, axis=-1).astype(jnp.int32))


def categorical_mode(logits: jax.Array) -> jax.Array:
    """argmax_a π(a). logits [..., A] -> [...] int32."""
    logits = _check_logits(logits)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def categorical_kl(p_logits: jax.Array, q_logits: jax.Array) -> jax.Array:
    """KL(p ‖ q) = Σ_{a: p(a) > 0} p(a) (log p(a) − log q(a)): an action p never takes adds
    nothing, one that only q rules out (−inf in q_logits) makes it +inf. [..., A] x [..., A] -> [...]
    (one A; the leading axes broadcast)."""
    p_logits, q_logits = _check_logits(p_logits, "p_logits"), _check_logits(q_logits, "q_logits")
    _check_same_last_axis("A (actions)", p_logits=p_logits, q_logits=q_logits)
    _check_broadcast(p_logits=p_logits, q_logits=q_logits)
    p, log_p = _log_softmax_on_support(p_logits)
    log_q = jnp.where(p > 0, jax.nn.log_softmax(q_logits, axis=-1), 0.0)
    return jnp.sum(p * (log_p - log_q), axis=-1)


# ----------------------------------------------------------------------------- gaussian


def _check_gaussian(mean, log_std, prefix: str = "") -> tuple[jax.Array, jax.Array]:
    """(mean [..., D], log_std [..., D] | [D]) as finite float arrays whose shapes broadcast."""
    mean_name, log_std_name = f"{prefix}mean", f"{prefix}log_std"
    mean, log_std = as_array(mean_name, mean), as_array(log_std_name, log_std)
    check_min_rank(mean_name, mean, 1, "[..., D]")
    check_floating(mean_name, mean)
    check_min_rank(log_std_name, log_std, 1, "[..., D] or [D]")
    check_floating(log_std_name, log_std)
    _check_broadcast(**{mean_name: mean, log_std_name: log_std})
    if jnp.shape(log_std)[-1] != jnp.shape(mean)[-1]:
        raise ValueError(
            f"`{log_std_name}` must end in the action dimension D={jnp.shape(mean)[-1]}; "
            f"got {jnp.shape(log_std)}."
        )
    check_finite(mean_name, mean)
    check_finite(log_std_name, log_std)
    return mean, log_std


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """log N(a; μ, diag σ²) = Σ_d [−½((a_d − μ_d)/σ_d)² − log σ_d − ½ log 2π].

    Args:
      mean: [..., D].
      log_std: [..., D] or [D] (broadcast over the leading axes).
      action: [..., D], same shape as `mean`.
    Returns:
      [...] log-densities, summed over D. ∂/∂μ = (a − μ)/σ².
    """
    mean, log_std = _check_gaussian(mean, log_std)
    action = as_array("action", action)
    check_floating("action", action)
    if jnp.shape(action) != jnp.shape(mean):
        raise ValueError(
            f"`action` must have the shape of `mean` {jnp.shape(mean)}; got {jnp.shape(action)}."
        )
    return _gaussian_log_prob(mean, log_std, action)


def _gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """`gaussian_log_prob` on checked arrays."""
    z = (action - mean) * jnp.exp(-log_std)  # multiply, never divide by a tiny σ
    return jnp.sum(-0.5 * jnp.square(z) - log_std - _HALF_LOG_2PI, axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """H = Σ_d (log σ_d + ½ log 2πe). log_std [..., D] -> [...]."""
    log_std = as_array("log_std", log_std)
    check_min_rank("log_std", log_std, 1, "[..., D]")
    check_floating("log_std", log_std)
    check_finite("log_std", log_std)  # as gaussian_log_prob: a NaN or infinite σ is no distribution
    return jnp.sum(log_std + _HALF_LOG_2PI + 0.5, axis=-1)


def gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """a = μ + σ ε, ε ~ N(0, I). Returns [..., D] with the shape of `mean` (no gradient)."""
    check_key("key", key)
    mean, log_std = _check_gaussian(mean, log_std)
    return _gaussian_sample(key, mean, log_std)


def _gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """`gaussian_sample` on checked arrays."""
    noise = jax.random.normal(key, jnp.shape(mean), jnp.result_type(mean))
    return jax.lax.stop_gradient(mean + jnp.exp(log_std) * noise)


def gaussian_kl(
    p_mean: jax.Array, p_log_std: jax.Array, q_mean: jax.Array, q_log_std: jax.Array
) -> jax.Array:
    """KL(p ‖ q) = Σ_d [log σq/σp + (σp² + (μp − μq)²) / (2σq²) − ½]. -> [...] (one D; the
    leading axes of all four broadcast)."""
    p_mean, p_log_std = _check_gaussian(p_mean, p_log_std, "p_")
    q_mean, q_log_std = _check_gaussian(q_mean, q_log_std, "q_")
    _check_same_last_axis("D (action dimensions)", p_mean=p_mean, q_mean=q_mean)
    _check_broadcast(p_mean=p_mean, p_log_std=p_log_std, q_mean=q_mean, q_log_std=q_log_std)
    ratio = jnp.exp(2.0 * (p_log_std - q_log_std))
    z = (p_mean - q_mean) * jnp.exp(-q_log_std)
    return jnp.sum(q_log_std - p_log_std + 0.5 * (ratio + jnp.square(z) - 1.0), axis=-1)


# ----------------------------------------------------------------------------- tanh-squashed gaussian
#
# a = loc + scale · tanh(u), u ~ N(μ, diag σ²), loc = (high + low)/2, scale = (high − low)/2: a
# Gaussian squashed into the box [low, high] (brax's and SAC's continuous policies). By change of
# variables log π(a) = log N(u; μ, σ²) − Σ_d log(scale_d (1 − tanh²(u_d))), u = atanh((a − loc)/scale).

_TANH_EPS = 1e-6  # float32 tanh rounds to ±1 beyond |u| ≈ 9: actions are kept 1e-6 inside the box
_HERMITE_NODES, _HERMITE_WEIGHTS = (np.asarray(x, np.float32) for x in np.polynomial.hermite.hermgauss(16))
# E[softplus(−2|u|)] = ∫_0^∞ e^{−2v} r(v) q(v) dv by 16-point Gauss–Laguerre in t = 2v, with
# r(v) = e^{2v} softplus(−2v) (smooth, log 2 at 0 to 1) at the nodes v = t/2, and weights halved.
_LAGUERRE_T, _LAGUERRE_W = np.polynomial.laguerre.laggauss(16)
_LAGUERRE_NODES = np.asarray(_LAGUERRE_T / 2.0, np.float32)
_LAGUERRE_WEIGHTS = np.asarray(_LAGUERRE_W / 2.0 * np.exp(_LAGUERRE_T) * np.log1p(np.exp(-_LAGUERRE_T)), np.float32)
_WIDE_STD = 0.6  # σ from which the expectation is taken as E|u| + Laguerre (Hermite's nodes miss the bend at u = 0)


def _operand(given, converted):
    """What the arithmetic uses: the argument as given (a Python number, a NumPy or jax array:
    the numbers computed stay those of before the checks), a list or tuple as its array."""
    return converted if isinstance(given, (list, tuple)) else given


def _check_box(low, high, dim: int):
    """(low, high) to compute with: numbers or arrays whose shapes broadcast to [D] = [`dim`],
    finite, with low < high elementwise (values when concrete). Lists become arrays."""
    low_array, high_array = as_array("low", low), as_array("high", high)
    for name, x in (("low", low_array), ("high", high_array)):
        check_number(name, x)
        shape = jnp.shape(x)
        try:
            fits = np.broadcast_shapes(shape, (dim,)) == (dim,)
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"`{name}` must be a scalar or have shape [D] = ({dim},) of the mean; got shape {shape}.")
    check_finite("low", low_array)
    check_finite("high", high_array)
    lo, hi = _concrete(low_array), _concrete(high_array)  # None when traced
    if lo is not None and hi is not None:
        if not np.all(hi > lo):
            raise ValueError(f"`low` and `high` must satisfy low < high elementwise; got low={_summary(lo)}, high={_summary(hi)}.")
    elif _CHECKIFY.get():  # traced: compiled in only under rlpg.checked
        _value_check(high_array - low_array, lambda v, xp: v > 0, str, "`low` and `high` must satisfy low < high elementwise.")
    return _operand(low, low_array), _operand(high, high_array)


def _log1m_tanh_sq(u: jax.Array) -> jax.Array:
    """log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u)), stable for large |u|."""
    return 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array, low=-1.0, high=1.0) -> jax.Array:
    """log π(a) = log N(u; μ, σ²) − Σ_d [log scale_d + log(1 − tanh²(u_d))], u = atanh((a − loc)/scale).

    Args:
      mean, log_std: [..., D] and [..., D] or [D], of the Gaussian before squashing.
      action: [..., D] in (low, high) (clipped 1e-6 · scale inside before atanh).
      low, high: scalars or [D], the box (finite, low < high).
    Returns:
      [...] log-densities of a on the box.
    """
    mean, log_std = _check_gaussian(mean, log_std)
    given, action = action, as_array("action", action)
    check_floating("action", action)
    if jnp.shape(action) != jnp.shape(mean):
        raise ValueError(
            f"`action` must have the shape of `mean` {jnp.shape(mean)}; got {jnp.shape(action)}."
        )
    low, high = _check_box(low, high, jnp.shape(mean)[-1])
    action = _operand(given, action)
    loc, scale = (high + low) / 2.0, (high - low) / 2.0
    u = jnp.arctanh(jnp.clip((action - loc) / scale, -1.0 + _TANH_EPS, 1.0 - _TANH_EPS))
    log_det = jnp.sum(jnp.broadcast_to(jnp.log(scale), jnp.shape(u)) + _log1m_tanh_sq(u), axis=-1)
    return _gaussian_log_prob(mean, log_std, u) - log_det


def tanh_gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array, low=-1.0, high=1.0) -> jax.Array:
    """a = loc + scale · tanh(μ + σ ε), ε ~ N(0, I). [..., D] in the box (no gradient)."""
    check_key("key", key)
    mean, log_std = _check_gaussian(mean, log_std)
    low, high = _check_box(low, high, jnp.shape(mean)[-1])
    u = _gaussian_sample(key, mean, log_std)
    return (high + low) / 2.0 + (high - low) / 2.0 * jnp.tanh(u)


def tanh_gaussian_mode(mean: jax.Array, low=-1.0, high=1.0) -> jax.Array:
    """loc + scale · tanh(μ): the squashed Gaussian's median (what greedy evaluation plays). [..., D]."""
    mean = as_array("mean", mean)
    check_min_rank("mean", mean, 1, "[..., D]")
    check_floating("mean", mean)
    check_finite("mean", mean)
    low, high = _check_box(low, high, jnp.shape(mean)[-1])
    return (high + low) / 2.0 + (high - low) / 2.0 * jnp.tanh(mean)


def _expected_log1m_tanh_sq(mean: jax.Array, std: jax.Array) -> jax.Array:
    """E[log(1 − tanh²(u))], u ~ N(mean, std²), elementwise, to about 1e-5 for every std.

    Narrow (std < `_WIDE_STD`): 16-point Gauss–Hermite on the smooth integrand. Wide: the
    integrand is 2 log 2 − 2|u| − 2 softplus(−2|u|); E|u| = σ √(2/π) exp(−μ²/2σ²) + μ erf(μ/σ√2)
    exactly, and the bump softplus(−2|u|), folded onto v = |u| ≥ 0 with the density
    q(v) = N(v; μ, σ²) + N(−v; μ, σ²), by Gauss–Laguerre. (Hermite alone, with nodes σ apart,
    misses the bend of width ~1 at u = 0: 0.014 off at σ = e, 0.8 at σ = e³.)
    """
    narrow = jnp.minimum(std, _WIDE_STD)[..., None]  # each branch sees only stds it is accurate for
    u = mean[..., None] + jnp.sqrt(2.0) * narrow * _HERMITE_NODES
    hermite = jnp.sum(_HERMITE_WEIGHTS * _log1m_tanh_sq(u), axis=-1) / jnp.sqrt(jnp.pi)
    wide = jnp.maximum(std, _WIDE_STD)
    abs_mean = (wide * jnp.sqrt(2.0 / jnp.pi) * jnp.exp(-0.5 * (mean / wide) ** 2)
                + mean * jax.scipy.special.erf(mean / (wide * jnp.sqrt(2.0))))
    v, m, w = _LAGUERRE_NODES, mean[..., None], wide[..., None]
    folded = (jnp.exp(-0.5 * ((v - m) / w) ** 2) + jnp.exp(-0.5 * ((v + m) / w) ** 2)) / (w * jnp.sqrt(2.0 * jnp.pi))
    laguerre = 2.0 * jnp.log(2.0) - 2.0 * abs_mean - 2.0 * jnp.sum(_LAGUERRE_WEIGHTS * folded, axis=-1)
    return jnp.where(std < _WIDE_STD, hermite, laguerre)


def tanh_gaussian_entropy(mean: jax.Array, log_std: jax.Array, low=-1.0, high=1.0) -> jax.Array:
    """H[a] = H[u] + Σ_d (log scale_d + E_u[log(1 − tanh²(u_d))]), the expectation by quadrature
    per dimension (deterministic, differentiable; see `_expected_log1m_tanh_sq`). [..., D] -> [...]."""
    mean, log_std = _check_gaussian(mean, log_std)
    low, high = _check_box(low, high, jnp.shape(mean)[-1])
    log_std = jnp.broadcast_to(log_std, jnp.shape(mean))
    expected = _expected_log1m_tanh_sq(mean, jnp.exp(log_std))
    log_scale = jnp.broadcast_to(jnp.log((high - low) / 2.0), jnp.shape(mean))
    return jnp.sum(log_std + _HALF_LOG_2PI + 0.5, axis=-1) + jnp.sum(log_scale + expected, axis=-1)  # gaussian_entropy


# ----------------------------------------------------------------------------- families


class Distribution(NamedTuple):
    """A distribution family over a pytree of parameters `dist`.

    Categorical: `dist` is `logits` [..., A]. Gaussian: `dist` is `(mean, log_std)`.
    """

    log_prob: Callable[[Any, jax.Array], jax.Array]
    sample: Callable[[jax.Array, Any], jax.Array]
    mode: Callable[[Any], jax.Array]
    entropy: Callable[[Any], jax.Array]
    kl: Callable[[Any, Any], jax.Array]


categorical = Distribution(
    log_prob=categorical_log_prob,
    sample=categorical_sample,
    mode=categorical_mode,
    entropy=categorical_entropy,
    kl=categorical_kl,
)


def _gaussian_entropy_of(dist):
    mean, log_std = dist
    return gaussian_entropy(jnp.broadcast_to(log_std, jnp.shape(mean)))


gaussian = Distribution(
    log_prob=lambda dist, action: gaussian_log_prob(*dist, action),
    sample=lambda key, dist: gaussian_sample(key, *dist),
    mode=lambda dist: dist[0],
    entropy=_gaussian_entropy_of,
    kl=lambda p, q: gaussian_kl(*p, *q),
)


def tanh_gaussian(low=-1.0, high=1.0) -> Distribution:
    """The Gaussian squashed into the box [low, high] by loc + scale · tanh (see above); `dist` is
    `(mean, log_std)` of the Gaussian before squashing, as for `gaussian`. Its KL is the Gaussians'
    KL (KL is invariant under the bijection). low, high: finite scalars or [D] arrays."""
    low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
    if not bool(jnp.all(jnp.isfinite(low)) and jnp.all(jnp.isfinite(high)) and jnp.all(high > low)):
        raise ValueError(f"`low` and `high` must be finite with high > low; got low={low}, high={high}.")
    return Distribution(
        log_prob=lambda dist, action: tanh_gaussian_log_prob(*dist, action, low, high),
        sample=lambda key, dist: tanh_gaussian_sample(key, *dist, low, high),
        mode=lambda dist: tanh_gaussian_mode(dist[0], low, high),
        entropy=lambda dist: tanh_gaussian_entropy(*dist, low, high),
        kl=lambda p, q: gaussian_kl(*p, *q),
    )
