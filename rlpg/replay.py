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

from rlpg._checks import _concrete, check_key, check_leading_size, check_size


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
    """Write B transitions (pytree of arrays [B, ...], B ≤ N, of the buffer's structure and of dtypes
    its slots hold without truncation) into slots (position + i) mod N."""
    if jax.tree.structure(transitions) != jax.tree.structure(buffer.data):
        raise ValueError(
            f"`transitions` must have the buffer's structure {jax.tree.structure(buffer.data)}; "
            f"got {jax.tree.structure(transitions)}."
        )
    batch = check_leading_size("transitions", transitions, "B")  # one transition x: pass x[None]
    if batch > buffer.capacity:
        raise ValueError(f"`transitions` hold {batch} transitions, more than the buffer's capacity {buffer.capacity}.")
    jax.tree_util.tree_map_with_path(
        lambda path, slot, x: _check_leaf(jax.tree_util.keystr(path), slot, x, batch), buffer.data, transitions
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
    size = _concrete(buffer.size)  # None when traced (inside jit: not read)
    if size is not None and size <= 0:
        raise ValueError("`buffer` must hold at least one transition to sample from; got an empty buffer (size 0): `add` first.")
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[index], buffer.data)


def _check_leaf(where: str, slot: jax.Array, x: jax.Array, batch: int) -> None:
    """x [B, ...] fits the buffer's slots [N, ...]: shape, and a dtype the slot holds without loss
    (float into an int slot, int into a bool one are refused: `astype` would truncate)."""
    if jnp.shape(x) != (batch,) + slot.shape[1:]:
        raise ValueError(
            f"`transitions` leaves must have shape [B, ...] = {(batch,) + slot.shape[1:]} to match the "
            f"buffer; got {jnp.shape(x)} at `transitions`{where}."
        )
    dtype = jnp.result_type(x)
    if not _holds(slot.dtype, dtype):
        raise TypeError(
            f"`transitions`{where} must have a dtype the buffer's {slot.dtype} slots hold (as `init`'s example); "
            f"got {dtype}."
        )


def _holds(slot, dtype) -> bool:
    """Whether slots of dtype `slot` keep values of `dtype` without truncating them: bool into
    anything, int into int or float, float into float; anything else only into its own dtype."""
    if jnp.issubdtype(dtype, jnp.bool_):
        return True
    if jnp.issubdtype(dtype, jnp.integer):
        return not jnp.issubdtype(slot, jnp.bool_)
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.issubdtype(slot, jnp.inexact)
    return dtype == slot
