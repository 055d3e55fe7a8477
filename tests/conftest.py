import jax
import pytest
from hypothesis import settings

# Property tests trace small JAX programs: deadlines would only measure compile noise.
settings.register_profile("rlpg", deadline=None, max_examples=25, print_blob=True)
settings.load_profile("rlpg")


@pytest.fixture
def x64():
    """Run a test in float64 (ground-truth comparisons at tight tolerances)."""
    with jax.enable_x64(True):
        yield
