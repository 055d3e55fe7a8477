"""The shuffle behind PPO's minibatches: a permutation, the algorithm it states (a NumPy
reference), uniform over all orders, and minibatches that partition the batch."""

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlpg.algos import optim

permutation = jax.jit(optim.permutation, static_argnums=1)


def numpy_permutation(key, n):
    """The documented algorithm with NumPy's stable argsort on explicit (random key, position) pairs."""
    index_bits = max(1, math.ceil(math.log2(max(n, 2))))
    rounds = max(1, math.ceil(3 * math.log(n) / ((32 - index_bits) * math.log(2)))) if n > 1 else 1
    order = np.arange(n)
    for round_key in jax.random.split(key, rounds):
        random_keys = np.asarray(jax.random.bits(round_key, (n,), jnp.uint32)) & ((1 << (32 - index_bits)) - 1)
        order = order[np.argsort(random_keys, kind="stable")]
    return order


# Lengths at the algorithm's boundaries: one element, each side of a power of two (the index bits
# change) and of 256 | 257 (one sorting round | two), and the largest. A few fixed lengths reuse
# their compiled programs (each length is a program); the seeds draw the orders.
LENGTHS = (1, 2, 3, 8, 9, 256, 257, 4096, 4097)


@given(n=st.sampled_from(LENGTHS), seed=st.integers(0, 2**31 - 1))
def test_equals_a_numpy_stable_argsort_reference(n, seed):
    key = jax.random.PRNGKey(seed)
    ours = np.asarray(permutation(key, n))
    assert ours.dtype == np.int32 and sorted(ours.tolist()) == list(range(n))
    np.testing.assert_array_equal(ours, numpy_permutation(key, n))


def test_every_order_equally_likely():
    draws = jax.jit(jax.vmap(lambda k: optim.permutation(k, 4)))(jax.random.split(jax.random.PRNGKey(0), 24_000))
    counts = collections.Counter(map(tuple, np.asarray(draws).tolist()))
    assert len(counts) == 24
    expected = 1000
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 49.7  # the 0.999 quantile of chi-square with 23 degrees of freedom


def test_positions_uniform_at_ppo_batch_size():
    """Where element 0 and the last element land, over 4000 shuffles of 2048: uniform over 16 bins."""
    draws = np.asarray(jax.jit(jax.vmap(lambda k: optim.permutation(k, 2048)))(jax.random.split(jax.random.PRNGKey(1), 4000)))
    for element in (0, 2047):
        position = np.argmax(draws == element, axis=1)
        counts = np.bincount(position // 128, minlength=16)
        chi2 = ((counts - 250) ** 2 / 250).sum()
        assert chi2 < 37.7  # 0.999 quantile, 15 degrees of freedom


def test_large_batches_defer_to_jax():
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(permutation(key, 2**17 + 1), jax.random.permutation(key, 2**17 + 1))


def test_minibatches_partition_the_batch():
    data = {"obs": jnp.arange(24.0).reshape(12, 2), "action": jnp.arange(12)}
    mb = optim.minibatches(jax.random.PRNGKey(0), data, 3)
    assert mb["obs"].shape == (3, 4, 2) and mb["action"].shape == (3, 4)
    np.testing.assert_array_equal(np.sort(np.asarray(mb["action"]).ravel()), np.arange(12))
    np.testing.assert_array_equal(mb["obs"][..., 0], 2.0 * mb["action"])  # rows stay together
    with pytest.raises(ValueError, match=r"`num_minibatches` \(5\) must divide the batch size 12"):
        optim.minibatches(jax.random.PRNGKey(0), data, 5)
