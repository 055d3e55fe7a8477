"""One running mean/variance over a stream of batches equals the statistics of all the data at once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import normalization, policies


def test_running_stats_equal_the_whole_stream(x64):
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 7, 2)) for n in (1, 5, 40)]
    stats = normalization.init_stats((2,))
    for batch in batches:
        stats = normalization.update_stats(stats, jnp.asarray(batch))
    everything = np.concatenate([b.reshape(-1, 2) for b in batches])
    np.testing.assert_allclose(stats["mean"], everything.mean(0), rtol=1e-10)
    np.testing.assert_allclose(stats["var"], everything.var(0), rtol=1e-10)
    assert stats["count"] == len(everything)
    z = normalization.standardize(stats, jnp.asarray(everything))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-8)
    np.testing.assert_allclose(z.std(0), 1.0, rtol=1e-6, atol=1e-6)


def test_fresh_statistics_are_the_identity_and_shapes_are_checked():
    x = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(normalization.standardize(normalization.init_stats((2,)), x), x, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"`batch` must end in the statistic's shape \(2,\)"):
        normalization.update_stats(normalization.init_stats((2,)), jnp.zeros((4, 3)))


def test_normalized_policy_applies_the_statistics_without_gradient_into_them():
    base = policies.mlp_categorical((3,), 2, (8,))
    policy = normalization.normalize_observations(base, (3,))
    params = policy.init(jax.random.PRNGKey(0))
    params["obs_stats"] = {"mean": jnp.array([1.0, -2.0, 0.5]), "var": jnp.array([4.0, 1.0, 0.25]), "count": jnp.array(10.0)}
    obs = jnp.array([[3.0, -1.0, 1.0]])
    np.testing.assert_allclose(policy.apply(params, obs), base.apply(params["net"], jnp.array([[1.0, 1.0, 1.0]])), rtol=1e-5)
    grads = jax.grad(lambda p: policy.apply(p, obs).sum())(params)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads["obs_stats"]))



def test_the_variance_does_not_drift_where_the_float32_count_stops_growing():
    """From n = 2²⁹ a float32 count no longer grows by 30 (n + 30 rounds to n): written as
    σ'² = (σ² n + σ_b² m + δ² n m / n') / n', each merge of 30 samples then added (σ_b² + δ²) m / n
    and took nothing away, and 10⁴ merges of N(0, 1) batches grew σ² by 4e-4 more than the same
    merges in float64 (whose σ² stays within 1e-6 of 1); the correction form stays within 2e-6."""
    stats = normalization.init_stats()
    start = {**stats, "count": jnp.asarray(2**29, stats["count"].dtype)}
    assert float(start["count"] + 30) == 2**29  # the premise: float32 no longer counts these merges
    batches = np.random.default_rng(0).normal(size=(10_000, 30)).astype(np.float32)
    stats = jax.jit(lambda s, b: jax.lax.scan(lambda s, x: (normalization.update_stats(s, x), None), s, b)[0])(start, batches)
    n, mean, var = 2.0**29, 0.0, 1.0  # the same merges in float64, the count exact
    for batch in batches.astype(np.float64):
        m = len(batch)
        delta, total = batch.mean() - mean, n + m
        mean, var, n = mean + delta * m / total, (var * n + batch.var() * m + delta**2 * n * m / total) / total, total
    np.testing.assert_allclose(stats["mean"], mean, atol=1e-6)
    np.testing.assert_allclose(stats["var"], var, atol=1e-5)


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match="`batch` must hold at least one sample"):
        normalization.update_stats(normalization.init_stats(), jnp.zeros((0,)))


def test_zero_variance_divides_by_the_square_root_of_eps():
    """With σ² = 0 the divisor is sqrt(σ² + eps) = sqrt(1e-8) = 1e-4 (eps inside the root, as
    documented), so standardize(x = 1) = scale(x = 1) = 1e4. Fails on sqrt(σ²) + eps, which gives 1e8."""
    stats = {"mean": jnp.zeros(()), "var": jnp.zeros(()), "count": jnp.array(5.0)}
    np.testing.assert_allclose(normalization.standardize(stats, 1.0), 1.0 / np.sqrt(1e-8), rtol=1e-5)
    np.testing.assert_allclose(normalization.scale(stats, 1.0), 1.0 / np.sqrt(1e-8), rtol=1e-5)
    np.testing.assert_allclose(normalization.standardize(stats, 1.0, eps=1e-2), 10.0, rtol=1e-5)


def test_scale_divides_by_the_spread_without_centring():
    """Reward normalization scales r by 1/sqrt(σ² + eps) of the discounted return and keeps its
    sign and offset (a reward of 0 stays 0); standardize also centres. Fails on a scale that
    subtracts the mean (PPO's normalized rewards would turn a constant reward into zero)."""
    stats = {"mean": jnp.array(5.0), "var": jnp.array(4.0), "count": jnp.array(10.0)}
    x = jnp.array([-2.0, 0.0, 2.0, 5.0])
    np.testing.assert_allclose(normalization.scale(stats, x), np.asarray(x) / np.sqrt(4.0 + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(normalization.standardize(stats, x), (np.asarray(x) - 5.0) / np.sqrt(4.0 + 1e-8), rtol=1e-6)
