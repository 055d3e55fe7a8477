"""The replay ring buffer: shapes, wrap-around against a list model, uniform sampling over filled slots."""

import collections

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from rlpg import replay

EXAMPLE = {"obs": jnp.zeros((3,), jnp.float32), "action": jnp.zeros((), jnp.int32), "done": jnp.zeros((), bool)}


def transitions(start, count):
    """`count` transitions whose obs rows and actions are start, start + 1, ..."""
    ids = start + jnp.arange(count)
    return {"obs": jnp.repeat(ids[:, None], 3, axis=1).astype(jnp.float32), "action": ids, "done": ids % 2 == 0}


def test_init_is_empty_and_shaped_like_the_example():
    buffer = replay.init(EXAMPLE, 7)
    assert buffer.capacity == 7 and int(buffer.size) == 0 and int(buffer.position) == 0
    assert buffer.data["obs"].shape == (7, 3) and buffer.data["obs"].dtype == jnp.float32
    assert buffer.data["action"].dtype == jnp.int32 and buffer.data["done"].dtype == jnp.bool_


add = jax.jit(replay.add)  # one program per batch size, shared by the examples (training jits add too)


@settings(max_examples=15)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=6))
def test_add_matches_a_ring_of_the_latest_transitions(batch_sizes):
    capacity = 5
    buffer, model, start = replay.init(EXAMPLE, capacity), collections.deque(maxlen=capacity), 0
    for b in batch_sizes:
        buffer = add(buffer, transitions(start, b))
        model.extend(range(start, start + b))
        start += b
    assert int(buffer.size) == len(model) == min(start, capacity)
    assert int(buffer.position) == start % capacity
    # Slot i holds the transition written there last: id ≡ i (mod capacity), the latest such.
    filled = np.asarray(buffer.data["action"])[: len(model)]
    assert sorted(filled.tolist()) == sorted(model)
    np.testing.assert_array_equal(filled % capacity, np.arange(len(model)))
    np.testing.assert_array_equal(np.asarray(buffer.data["obs"])[: len(model), 0], filled)
    np.testing.assert_array_equal(np.asarray(buffer.data["done"])[: len(model)], filled % 2 == 0)


def test_wrap_around_overwrites_the_oldest():
    buffer = replay.add(replay.add(replay.init(EXAMPLE, 5), transitions(0, 3)), transitions(3, 4))
    np.testing.assert_array_equal(buffer.data["action"], [5, 6, 2, 3, 4])
    assert int(buffer.position) == 2 and int(buffer.size) == 5


def test_sample_is_uniform_over_filled_slots_only():
    buffer = replay.add(replay.init(EXAMPLE, 10), transitions(0, 3))
    batch = jax.jit(replay.sample, static_argnums=2)(jax.random.PRNGKey(0), buffer, 30_000)
    assert batch["obs"].shape == (30_000, 3)
    counts = np.bincount(np.asarray(batch["action"]), minlength=10)
    assert counts[3:].sum() == 0  # empty slots (zeros would be action 0; ids 0..2 are the filled ones)
    np.testing.assert_array_equal(np.asarray(batch["obs"])[:, 0], np.asarray(batch["action"]))
    # Each of the 3 slots ~ Binomial(30000, 1/3): sd ≈ 82, so 5 sd = 410.
    assert np.all(np.abs(counts[:3] - 10_000) < 410), counts


def test_add_and_sample_inside_jit_and_scan():
    def body(buffer, start):
        return replay.add(buffer, transitions(start, 2)), None

    buffer, _ = jax.jit(lambda b: jax.lax.scan(body, b, jnp.arange(0, 8, 2)))(replay.init(EXAMPLE, 6))
    np.testing.assert_array_equal(buffer.data["action"], [6, 7, 2, 3, 4, 5])
    ids = np.asarray(replay.sample(jax.random.PRNGKey(1), buffer, 500)["action"])
    assert set(ids.tolist()) == set(range(2, 8))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`capacity` must be a positive integer"):
        replay.init(EXAMPLE, 0)
    with pytest.raises(ValueError, match="more than the buffer's capacity 4"):
        replay.add(replay.init(EXAMPLE, 4), transitions(0, 5))
    with pytest.raises(ValueError, match="`transitions` leaves must have shape"):
        replay.add(replay.init(EXAMPLE, 4), {**transitions(0, 2), "obs": jnp.zeros((2, 4))})
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        replay.sample(jax.random.PRNGKey(0), replay.init(EXAMPLE, 4), 0)
