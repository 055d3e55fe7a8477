import os
import shutil
import tempfile

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
