"""Running mean and variance of a stream of batches, and the observation-normalizing policy.

One statistic for the whole batch (every environment, every step), merged batch by batch
with the parallel algorithm of Chan et al.: for the running (μ, σ², n) and a batch (μ_b, σ_b², m),

    δ = μ_b − μ,   n' = n + m,   w = m / n',   μ' = μ + w δ,   σ'² = σ² + w (σ_b² − σ²) + w (1 − w) δ²,

which is σ'² = (σ² n + σ_b² m + δ² n m / n') / n' written as corrections to (μ, σ²). The count n
is a float32 (the statistics live in a policy's parameters, which are differentiated): exact up
to 2²⁴ samples, then rounded, and n + m == n once m is below half its spacing (from 2²⁴ samples
when m = 1, from 2²⁹ when m = 30). In the correction form such a merge still moves (μ, σ²) toward
the batch, with weight m / n; the expanded form then added (σ_b² + δ²) m / n to σ² and never
shrank it, so σ² grew without bound.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from rlpg._checks import as_array, check_floating, check_size
from rlpg.policies import Policy


# {"mean": [*shape], "var": [*shape], "count": [] float32 samples merged so far}: a plain dict,
# like network parameters, so it checkpoints and restores as they do.
RunningStats = dict


def init_stats(shape: Sequence[int] = ()) -> RunningStats:
    """No samples yet: mean 0, var 1 (so `standardize` is the identity), count 0."""
    try:
        shape = tuple(check_size("shape", n, minimum=0) for n in shape)
    except TypeError:
        raise ValueError(f"`shape` must be a tuple of ints >= 0; got {shape!r}.") from None
    return {"mean": jnp.zeros(shape, jnp.float32), "var": jnp.ones(shape, jnp.float32), "count": jnp.zeros((), jnp.float32)}


def update_stats(stats: RunningStats, batch: jax.Array) -> RunningStats:
    """Merge `batch` [..., *shape] (every leading axis is a sample axis) into `stats`."""
    batch = as_array("batch", batch)
    check_floating("batch", batch)
    shape = jnp.shape(stats["mean"])
    if tuple(jnp.shape(batch)[jnp.ndim(batch) - len(shape) :]) != shape:
        raise ValueError(f"`batch` must end in the statistic's shape {shape}; got {jnp.shape(batch)}.")
    samples = jnp.reshape(batch, (-1,) + shape)
    m = samples.shape[0]
    if m == 0:
        raise ValueError(f"`batch` must hold at least one sample; got shape {jnp.shape(batch)}.")
    batch_mean, batch_var = samples.mean(axis=0), samples.var(axis=0)
    total = stats["count"] + m
    w = m / jnp.asarray(total, jnp.result_type(float))  # the batch's weight m / n' (float64 under jax_enable_x64)
    delta = batch_mean - stats["mean"]
    mean = stats["mean"] + w * delta
    var = stats["var"] + w * (batch_var - stats["var"]) + w * (1.0 - w) * jnp.square(delta)
    return {"mean": mean, "var": var, "count": total}


def _check_sample(stats: RunningStats, x) -> jax.Array:
    """`x` as an array ending in the statistic's shape."""
    x = as_array("x", x)
    shape = jnp.shape(stats["mean"])
    if jnp.ndim(x) < len(shape) or tuple(jnp.shape(x)[jnp.ndim(x) - len(shape) :]) != shape:
        raise ValueError(f"`x` must end in the statistic's shape {shape}; got {jnp.shape(x)}.")
    return x


def standardize(stats: RunningStats, x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(x − μ) / sqrt(σ² + eps), no gradient into the statistics. x [..., *shape]."""
    x = _check_sample(stats, x)
    stats = jax.lax.stop_gradient(stats)
    return (x - stats["mean"]) / jnp.sqrt(stats["var"] + eps)


def scale(stats: RunningStats, x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """x / sqrt(σ² + eps) (no centering: reward normalization), no gradient into the statistics."""
    x = _check_sample(stats, x)
    return x / jnp.sqrt(jax.lax.stop_gradient(stats["var"]) + eps)


def normalize_observations(policy: Policy, obs_shape: Sequence[int]) -> Policy:
    """`policy` acting on standardized observations, the statistics carried in its parameters.

    Parameters become `{"net": policy params, "obs_stats": RunningStats over obs_shape}`, so
    whatever plays the policy from its parameters (`rollout.evaluate`, `rlpg.load_policy`)
    applies the same normalization. The statistics receive no gradient; the training
    algorithm updates them with `update_stats`.
    """

    def init(key):
        return {"net": policy.init(key), "obs_stats": init_stats(obs_shape)}

    def apply(params, obs):
        return policy.apply(params["net"], standardize(params["obs_stats"], jnp.asarray(obs, jnp.float32)))

    return Policy(init=init, apply=apply, distribution=policy.distribution)
