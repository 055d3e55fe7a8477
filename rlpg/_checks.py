"""Input checks that name the argument, the expected and the actual value or shape.

They run at trace time (shapes and dtypes are static), so a bad call fails before any
computation starts. Value checks (a discount outside [0, 1]) run only on concrete numbers:
a traced hyperparameter, as under `jax.vmap` over a grid, is the caller's to validate.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def check_rank(name: str, x, ranks: int | Sequence[int], axes: str = "") -> None:
    """Raises ValueError unless `x.ndim` is `ranks` (or one of them)."""
    allowed = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    ndim = jnp.ndim(x)
    if ndim not in allowed:
        want = " or ".join(str(r) for r in allowed)
        axes = f" {axes}" if axes else ""
        raise ValueError(
            f"`{name}` must have rank {want}{axes}; got rank {ndim} with shape {jnp.shape(x)}."
        )


def check_min_rank(name: str, x, min_rank: int, axes: str = "") -> None:
    """Raises ValueError if `x` has fewer than `min_rank` axes."""
    if jnp.ndim(x) < min_rank:
        axes = f" {axes}" if axes else ""
        raise ValueError(
            f"`{name}` must have rank >= {min_rank}{axes}; got shape {jnp.shape(x)}."
        )


def check_floating(name: str, x) -> None:
    """Raises TypeError unless `x` has a floating dtype."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`{name}` must be a floating-point array; got dtype {dtype}.")


def check_integer(name: str, x) -> None:
    """Raises TypeError unless `x` has an integer dtype."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"`{name}` must be an integer array; got dtype {dtype}.")


def check_same_shape(**arrays) -> None:
    """Raises ValueError unless all the named arrays share one shape."""
    shapes = {name: jnp.shape(x) for name, x in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"`{n}` {s}" for n, s in shapes.items())
        raise ValueError(f"shapes must match: {listed}.")


def check_shape(name: str, x, shape: tuple, what: str = "") -> None:
    """Raises ValueError unless `x.shape == shape`."""
    if tuple(jnp.shape(x)) != tuple(shape):
        what = f" ({what})" if what else ""
        raise ValueError(f"`{name}` must have shape {tuple(shape)}{what}; got {jnp.shape(x)}.")


def _concrete(x):
    """The value of `x` as a numpy array, or None when it is traced."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except Exception:  # noqa: BLE001 - anything that is not a concrete number
        return None


def check_in_interval(name: str, x, low: float, high: float) -> None:
    """Raises ValueError if a concrete `x` lies outside [low, high] or is not finite."""
    value = _concrete(x)
    if value is None:
        return
    if not np.all(np.isfinite(value)) or np.any(value < low) or np.any(value > high):
        raise ValueError(f"`{name}` must lie in [{low}, {high}]; got {value.tolist()}.")


def check_positive(name: str, x) -> None:
    """Raises ValueError if a concrete `x` is not > 0."""
    value = _concrete(x)
    if value is None:
        return
    if not np.all(np.isfinite(value)) or np.any(value <= 0):
        raise ValueError(f"`{name}` must be > 0; got {value.tolist()}.")
