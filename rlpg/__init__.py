"""rlpg: policy-gradient reinforcement learning in JAX, as pure functions.

Submodules load on first use (`rlpg.algos`, `from rlpg import returns`), so importing a pure
module such as `rlpg.returns` or `rlpg.estimators` does not import gymnax, orbax, matplotlib,
tyro or the experiment layer.
"""

import importlib

from rlpg._xla import set_safe_cpu_flags

set_safe_cpu_flags()  # before JAX's backend starts: see rlpg/_xla.py

__version__ = "0.1.0"

_SUBMODULES = (
    "algos", "compile_cache", "distributions", "envs", "estimators", "exact", "experiment", "lab",
    "normalization", "pathwise", "policies", "progress", "replay", "returns", "rollout", "sharding", "tracking",
    "value_learning",
)
_FUNCTIONS = {"checked": "rlpg._checks", "load_policy": "rlpg.experiment", "unroll_threefry_on_cpu": "rlpg._xla"}

__all__ = [*_FUNCTIONS, *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"rlpg.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'rlpg' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
