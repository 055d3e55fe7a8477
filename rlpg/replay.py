"""Experience replay: a fixed-size ring buffer of transitions held in the jitted state.

A `ReplayBuffer` stores any pytree of transitions (e.g. `{"obs": [N, ...], "reward": [N], ...}`)
in preallocated arrays with a leading capacity axis N. `add` writes a batch of B transitions at
the slots position, position + 1, … (mod N), overwriting the oldest ones once the buffer is
full; `sample` draws a batch uniformly, with replacement, from the filled slots only.
All three are pure and jit-able, so the buffer is carried through `lax.scan` like any state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from rlpg._checks import check_key, check_size


@struct.dataclass
class ReplayBuffer:
    """data: pytree of arrays [N, ...]; position: [] int32, the next slot written;
    size: [] int32, how many slots hold transitions (≤ N)."""

    data: Any
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        """N, the number of slots."""
        return jax.tree.leaves(self.data)[0].shape[0]


def init(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer of `capacity` slots shaped and typed like `example` (one transition, no batch axis)."""
    check_size("capacity", capacity)
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.result_type(x)), example)
    return ReplayBuffer(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def add(buffer: ReplayBuffer, transitions: Any) -> ReplayBuffer:
    """Write B transitions (pytree of arrays [B, ...], B ≤ N) into slots (position + i) mod N."""
    if jax.tree.structure(transitions) != jax.tree.structure(buffer.data):
        raise ValueError(
            f"`transitions` must have the buffer's structure {jax.tree.structure(buffer.data)}; "
            f"got {jax.tree.structure(transitions)}."
        )
    batch = jax.tree.leaves(transitions)[0].shape[0]
    if batch > buffer.capacity:
        raise ValueError(f"`transitions` hold {batch} transitions, more than the buffer's capacity {buffer.capacity}.")
    jax.tree.map(
        lambda slot, x: _check_leaf(slot, x, batch), buffer.data, transitions
    )
    slots = (buffer.position + jnp.arange(batch)) % buffer.capacity
    data = jax.tree.map(lambda d, x: d.at[slots].set(x.astype(d.dtype)), buffer.data, transitions)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + batch) % buffer.capacity,
        size=jnp.minimum(buffer.size + batch, buffer.capacity),
    )


def sample(key: jax.Array, buffer: ReplayBuffer, batch_size: int) -> Any:
    """`batch_size` transitions (pytree of arrays [batch_size, ...]) drawn uniformly with
    replacement from the `size` filled slots. The buffer must hold at least one transition."""
    check_key("key", key)
    check_size("batch_size", batch_size)
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[index], buffer.data)


def _check_leaf(slot: jax.Array, x: jax.Array, batch: int) -> None:
    if jnp.shape(x) != (batch,) + slot.shape[1:]:
        raise ValueError(
            f"`transitions` leaves must have shape [B, ...] = {(batch,) + slot.shape[1:]} to match the "
            f"buffer; got {jnp.shape(x)}."
        )
