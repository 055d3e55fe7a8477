"""Input checks that name the argument, the expected and the actual value or shape.

They run at trace time (shapes and dtypes are static), so a bad call fails before any
computation starts. Value checks (a discount outside [0, 1], an action out of range, NaN
logits, dones that are not 0/1) run only on concrete numbers: a traced value, as inside
`jax.jit` or under `jax.vmap` over a grid, is not read (that would cost a device sync). Under
`checked(fn)` the same value checks are compiled into the program with
`jax.experimental.checkify` and raised after it ran (opt-in: they cost a reduction each).
"""

from __future__ import annotations

import contextvars
import functools
import operator
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

# True while `checked` traces its function: value checks on tracers become checkify checks.
_CHECKIFY = contextvars.ContextVar("rlpg_checkify", default=False)


def checked(fn: Callable) -> Callable:
    """`fn` with rlpg's value checks also on traced values, compiled in with checkify.

    Outside `checked`, value checks (ranges, NaN, 0/1 flags, probabilities, hyperparameters)
    run only on concrete inputs, so under `jax.jit`/`jax.vmap` they are skipped. `checked(fn)`
    jits `fn` with each of those checks turned into a `checkify.check`, runs it, and raises
    `checkify.JaxRuntimeError` naming the argument if one failed; otherwise it returns `fn`'s
    outputs, unchanged. Each check costs a reduction over its array: for debugging, not for
    the training loop you time. E.g. `rlpg.checked(jax.vmap(train))(keys, {"gamma": gammas})`.
    """
    checkified = jax.jit(checkify.checkify(_tracing_checks(fn), errors=checkify.user_checks))

    @functools.wraps(fn)
    def run(*args, **kwargs):
        error, out = checkified(*args, **kwargs)
        error.throw()
        return out

    return run


def _tracing_checks(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def traced(*args, **kwargs):
        token = _CHECKIFY.set(True)
        try:
            return fn(*args, **kwargs)
        finally:
            _CHECKIFY.reset(token)

    return traced


def _value_check(x, ok: Callable[[Any, Any], Any], message: Callable[[Any], str], checkify_message: str) -> None:
    """Raise ValueError(message(value)) unless `ok(value, np)` holds everywhere for a concrete
    `x`; for a traced `x` under `checked`, `checkify.check(all(ok(x, jnp)), checkify_message)`;
    otherwise nothing (no device sync in a traced program)."""
    if isinstance(x, jax.core.Tracer):
        if _CHECKIFY.get():
            checkify.check(jnp.all(ok(x, jnp)), checkify_message)
        return
    value = _concrete(x)
    if value is not None and not np.all(ok(value, np)):
        raise ValueError(message(value))


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


def _summary(value: np.ndarray) -> str:
    """A value for a message: the list when small, else its range."""
    if value.size <= 8:
        return str(value.tolist())
    return f"values in [{value.min()}, {value.max()}] (shape {value.shape})"


def check_number(name: str, x) -> None:
    """Raises TypeError unless `x` is a real number or numeric array (not a str, bool or None;
    bfloat16 and the other JAX floats included)."""
    if isinstance(x, jax.core.Tracer):
        dtype = x.dtype
    else:
        try:
            dtype = np.asarray(x).dtype
        except Exception:  # noqa: BLE001 - ragged lists and other non-arrays
            dtype = np.dtype(object)
    if dtype.kind not in "iuf" and not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`{name}` must be a number; got {x!r} ({type(x).__name__}).")


def check_scalar(name: str, x) -> None:
    """Raises ValueError unless `x` has rank 0 (a hyperparameter: one per call, traced or not)."""
    if jnp.ndim(x) != 0:
        raise ValueError(f"`{name}` must be a scalar; got shape {jnp.shape(x)}.")


def check_in_interval(name: str, x, low: float, high: float, scalar: bool = True) -> None:
    """Raises ValueError if a concrete `x` lies outside [low, high] or is not finite, or unless
    it is a scalar (`scalar`; False: an array, each entry checked); TypeError if it is not a number."""
    check_number(name, x)
    if scalar:
        check_scalar(name, x)
    _value_check(
        x,
        lambda v, xp: (v >= low) & (v <= high) & xp.isfinite(v),
        lambda v: f"`{name}` must lie in [{low}, {high}]; got {_summary(v)}.",
        f"`{name}` must lie in [{low}, {high}] and be finite.",
    )


def check_positive(name: str, x, scalar: bool = True) -> None:
    """Raises ValueError if a concrete `x` is not finite and > 0, or unless it is a scalar
    (`scalar`; False: an array, each entry checked); TypeError if it is not a number."""
    check_number(name, x)
    if scalar:
        check_scalar(name, x)
    _value_check(
        x,
        lambda v, xp: (v > 0) & xp.isfinite(v),
        lambda v: f"`{name}` must be > 0; got {_summary(v)}.",
        f"`{name}` must be finite and > 0.",
    )


def check_finite(name: str, x, allow_neg_inf: bool = False) -> None:
    """Raises ValueError if a concrete `x` holds NaN or ±inf (−inf allowed with `allow_neg_inf`:
    a logit of −inf is an impossible action)."""
    what = "NaN or +inf" if allow_neg_inf else "NaN or inf"
    _value_check(
        x,
        lambda v, xp: ~xp.isnan(v) & (v != xp.inf) & ((v != -xp.inf) | allow_neg_inf),
        lambda v: f"`{name}` must not hold {what}; got {_summary(v)}.",
        f"`{name}` must not hold {what}.",
    )


def check_index(name: str, x, size: int) -> None:
    """Raises ValueError if a concrete integer `x` has entries outside [0, size)."""
    _value_check(
        x,
        lambda v, xp: (v >= 0) & (v < size),
        lambda v: f"`{name}` must lie in [0, {size}); got {_summary(v)}.",
        f"`{name}` must lie in [0, {size}).",
    )


def check_index_as_given(name: str, x, size: int) -> None:
    """`check_index` on a Python or NumPy integer `x` as given, before `as_array` makes it int32,
    which wraps an int64 beyond 2**31 (2**33 + 1 becomes 1) into the range; jax arrays and other
    kinds are left to the checks after conversion."""
    if isinstance(x, (jax.Array, jax.core.Tracer)):
        return
    try:
        value = np.asarray(x)
    except Exception:  # noqa: BLE001 - not a number: as_array names it
        return
    if value.dtype.kind in "iu":
        check_index(name, value, size)


def check_leading_size(name: str, tree: Any, axis: str = "N") -> int:
    """The leading size `axis` shared by every leaf of the pytree `tree` (argument `name`);
    ValueError naming the leaf if one has no leading axis or another size, or if `tree` holds no
    array."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if not leaves:
        raise ValueError(f"`{name}` must hold arrays [{axis}, ...]; got {tree!r}.")
    sizes = {}
    for path, x in leaves:
        where = f"`{name}`{jax.tree_util.keystr(path)}"
        if jnp.ndim(x) < 1:
            raise ValueError(f"{where} must have the batch axis first, [{axis}, ...]; got shape {jnp.shape(x)} "
                             f"({type(x).__name__}).")
        sizes.setdefault(jnp.shape(x)[0], where)
    if len(sizes) > 1:
        listed = ", ".join(f"{axis} = {n} at {where}" for n, where in sizes.items())
        raise ValueError(f"`{name}` leaves must share one batch size {axis} (row i of every leaf is sample i); got {listed}.")
    return next(iter(sizes))


def check_nonnegative(name: str, x) -> None:
    """Raises ValueError if a concrete `x` (counts, steps taken) has an entry below 0."""
    _value_check(
        x,
        lambda v, xp: v >= 0,
        lambda v: f"`{name}` must be >= 0; got {_summary(v)}.",
        f"`{name}` must be >= 0.",
    )


def check_binary(name: str, x) -> None:
    """Raises ValueError if a concrete `x` (flags: dones, masks) has entries other than 0 and 1."""
    _value_check(
        x,
        lambda v, xp: (v == 0) | (v == 1),
        lambda v: f"`{name}` must hold only 0 and 1 (or booleans); got {_summary(np.unique(v))}.",
        f"`{name}` must hold only 0 and 1.",
    )


def check_some(name: str, x) -> None:
    """Raises ValueError if a concrete mask `x` is all zero (no entry counts). Never checked on
    traced values, not even under `checked`: inside training a window may hold no step that counts."""
    if isinstance(x, jax.core.Tracer):
        return
    _value_check(
        x,
        lambda v, xp: xp.any(v != 0),
        lambda v: f"`{name}` must select at least one entry; got all zeros (shape {v.shape}).",
        f"`{name}` must select at least one entry.",
    )


def as_array(name: str, x) -> jax.Array:
    """`jnp.asarray(x)` (Python numbers and lists welcome); TypeError naming `name` if `x` is not numeric."""
    if isinstance(x, (jax.Array, jax.core.Tracer)):
        return x
    try:
        array = np.asarray(x)
    except Exception:  # noqa: BLE001 - ragged lists and the like
        raise TypeError(f"`{name}` must be an array or a number; got {type(x).__name__} {x!r}.") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be an array or a number; got {type(x).__name__} {x!r}.")
    return jnp.asarray(x)


def check_size(name: str, n, minimum: int = 1) -> int:
    """`n` as an int; raises ValueError unless it is a Python/NumPy integer (not a bool) >= `minimum`."""
    try:
        value = operator.index(n)
    except TypeError:
        value = None
    if value is None or isinstance(n, bool) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f">= {minimum}, an integer"
        raise ValueError(f"`{name}` must be {kind}; got {n!r}.")
    return value


def check_hidden(hidden: Any, allow_empty: bool = False, name: str = "hidden") -> tuple[int, ...]:
    """`hidden` as a tuple; raises ValueError unless it is a sequence of positive int layer
    widths (non-empty unless `allow_empty`)."""
    try:
        widths = tuple(hidden)
    except TypeError:
        widths = None
    bad = widths is None or (not widths and not allow_empty) or any(
        isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h <= 0 for h in widths
    )
    if bad:
        kind = "a tuple of positive layer widths (empty: linear)" if allow_empty else "a non-empty tuple of positive layer widths"
        raise ValueError(f"`{name}` must be {kind}; got {hidden!r}.")
    return widths


def check_choice(name: str, value, choices: Sequence) -> None:
    """Raises ValueError unless `value` is one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}; got {value!r}.")


def check_bool(name: str, value) -> None:
    """Raises TypeError unless `value` is a bool (a static switch of a config)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {value!r} ({type(value).__name__}).")


def check_key(name: str, key) -> None:
    """Raises TypeError unless `key` is one PRNG key: `jax.random.key(seed)` (typed, shape ())
    or `jax.random.PRNGKey(seed)` (uint32 [2] key data)."""
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        ok = shape == ()
    else:
        ok = dtype == jnp.uint32 and shape is not None and len(shape) == 1 and shape[0] in (2, 4)
    if not ok:
        got = f"{type(key).__name__} {key!r}" if dtype is None else f"dtype {dtype}, shape {shape}"
        raise TypeError(
            f"`{name}` must be one PRNG key, jax.random.PRNGKey(seed) (uint32 [2]) or "
            f"jax.random.key(seed); got {got}."
        )


SEED_LIMIT = 2**31
"""Seeds must lie in [0, 2³¹): without x64, `PRNGKey` keeps only the low 32 bits of a seed
(2**40 and 0 give the same key) and `seed + jnp.arange(n)` is int32 arithmetic."""


def check_seed(name: str, seed, count: int = 1) -> int:
    """`seed` as an int; raises ValueError unless seeds seed .. seed + count − 1 are integers in
    [0, 2³¹) (see `SEED_LIMIT`), so each one maps to its own PRNG key."""
    value = check_size(name, seed, minimum=0)
    if value + count - 1 >= SEED_LIMIT:
        last = f" (+ {count - 1} more seeds)" if count > 1 else ""
        raise ValueError(f"`{name}` must lie in [0, 2**31){last}; got {seed}.")
    return value
