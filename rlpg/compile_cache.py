"""JAX's persistent compilation cache, on by default in rlpg's entry points: compile once per machine.

A compiled XLA program is written to a folder on disk and the next process that compiles the
same program (same code, shapes, flags, jax version and device) loads it instead:

    rlpg.compile_cache.enable()            # $RLPG_COMPILE_CACHE, else $XDG_CACHE_HOME/rlpg/jax or ~/.cache/rlpg/jax
    rlpg.compile_cache.enable("/scratch/jax-cache")
    rlpg.compile_cache.enable("off")       # or RLPG_COMPILE_CACHE=off: compile everything afresh

`experiments.train` (`--compile-cache DIR|off`), the benchmarks and the notebooks call `enable`.
Several processes may share a folder: entries are read and written under a file lock (jax's
size-bounded cache, `max_size_bytes`, evicting the least recently used), so a reader never sees
a half-written entry, and an unreadable entry is only a warning and a fresh compile.
A program holding a host callback (`jax.debug.callback`, e.g. in-program progress lines) is
never cached by jax; the CLI therefore prints progress from the host between compiled chunks.
"""

from __future__ import annotations

import collections
import contextlib
import os
from pathlib import Path
from typing import Iterator

import jax
from jax.experimental.compilation_cache import compilation_cache

ENV_VAR = "RLPG_COMPILE_CACHE"
_OFF = ("off", "none", "false", "0", "")
MAX_SIZE_BYTES = 4 << 30  # 4 GiB; least recently used entries are evicted beyond it

_BUILT = "/jax/core/compile/backend_compile_duration"  # every program XLA compiled or loaded from the cache
_LOADED = "/jax/compilation_cache/cache_hits"

__all__ = ["ENV_VAR", "MAX_SIZE_BYTES", "count_programs", "default_dir", "enable"]


def default_dir() -> str:
    """`$RLPG_COMPILE_CACHE` if set (may be "off"), else `$XDG_CACHE_HOME/rlpg/jax` (`~/.cache/rlpg/jax`)."""
    if ENV_VAR in os.environ:
        return os.environ[ENV_VAR]
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return str(Path(root) / "rlpg" / "jax")


def enable(path: str | Path | None = None, min_compile_seconds: float = 0.0,
           max_size_bytes: int = MAX_SIZE_BYTES) -> Path | None:
    """Point JAX's persistent compilation cache at `path` (default: `default_dir()`); returns the
    folder, or None when `path` (or `$RLPG_COMPILE_CACHE`) is one of "off", "none", "false", "0", ""
    (the cache is then off for this process).

    Programs that compile in at least `min_compile_seconds` are written (0: every program; jax's
    own default, 1 s, would skip the small init and evaluation programs of a run). It applies to
    the programs compiled after the call (best: before the first); a later call moves the cache.
    """
    if min_compile_seconds < 0:
        raise ValueError(f"`min_compile_seconds` must be >= 0; got {min_compile_seconds}.")
    if max_size_bytes <= 0:
        raise ValueError(f"`max_size_bytes` must be > 0 (a bounded, locked cache); got {max_size_bytes}.")
    choice = default_dir() if path is None else str(path)
    compilation_cache.reset_cache()  # jax decides once per process whether a cache is used: decide again
    if choice.strip().lower() in _OFF:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    folder = Path(choice).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size threshold: small programs too
    jax.config.update("jax_compilation_cache_max_size", int(max_size_bytes))  # also what turns on jax's file lock
    return folder


@contextlib.contextmanager
def count_programs() -> Iterator[collections.Counter]:
    """Count the XLA programs this process builds inside the block (jax's monitoring events):
    yields a Counter whose "built" is every program compiled or loaded from the persistent cache,
    and "loaded" those loaded. Small eager operations (creating keys, converting a dtype) count
    as programs too."""
    counts = collections.Counter(built=0, loaded=0)

    def on_event(event: str, **_) -> None:
        if event == _LOADED:
            counts["loaded"] += 1

    def on_duration(event: str, duration: float, **_) -> None:
        if event == _BUILT:
            counts["built"] += 1

    jax.monitoring.register_event_listener(on_event)
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_listener(on_event)
        jax.monitoring.unregister_event_duration_listener(on_duration)
