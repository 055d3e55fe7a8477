import os
import shutil
import tempfile

from rlpg import _xla

# The suite is compile-bound (most of its time is XLA compiling hundreds of distinct programs), so
# it compiles with `_xla.FAST_COMPILE_CPU_FLAGS`, set here before any backend starts and inherited
# by the worker processes, subprocesses and notebook kernels: the whole suite in 471-703 s instead of
# 956 s on 2 cores. Assertions compare floats to float32 tolerances and demand bit-for-bit
# equality only between runs of one program; the flags change last bits, so a learning test sees
# other seeds' trajectories, at the same per-seed solve rates (A2C 11/20 under both). A flag already
# in XLA_FLAGS wins: `XLA_FLAGS="--xla_backend_optimization_level=3
# --xla_cpu_use_fusion_emitters=true" python -m pytest` runs the suite at XLA's defaults. A jaxlib
# that no longer knows a flag (XLA would abort) runs the suite at its defaults.
if _xla.with_flags(_xla.FAST_COMPILE_CPU_FLAGS) != os.environ.get("XLA_FLAGS", ""):
    if _xla.xla_accepts(_xla.FAST_COMPILE_CPU_FLAGS):
        _xla.append_flags(_xla.FAST_COMPILE_CPU_FLAGS)

import jax
import pytest
from hypothesis import settings

from rlpg import compile_cache

# One persistent compilation cache per test session (unless RLPG_COMPILE_CACHE names one, e.g. a
# folder CI keeps between runs): a program that several tests, subprocesses or notebook kernels
# (they inherit the variable) build alike compiles once. Programs under 0.1 s are not worth a
# write. A loaded executable is the compiled one, so every assertion sees the same numbers.
_OWN_CACHE = compile_cache.ENV_VAR not in os.environ
if _OWN_CACHE:
    os.environ[compile_cache.ENV_VAR] = tempfile.mkdtemp(prefix="rlpg-tests-jax-cache-")
compile_cache.enable(min_compile_seconds=0.1)


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        shutil.rmtree(os.environ[compile_cache.ENV_VAR], ignore_errors=True)

# Property tests trace small JAX programs: deadlines would only measure compile noise.
settings.register_profile("rlpg", deadline=None, max_examples=25, print_blob=True)
settings.load_profile("rlpg")


@pytest.fixture
def x64():
    """Run a test in float64 (ground-truth comparisons at tight tolerances)."""
    with jax.enable_x64(True):
        yield
