"""`rlpg.unroll_threefry_on_cpu`: jax's random bits, from straight-line code instead of a loop."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlpg import _xla

ROOT = Path(__file__).resolve().parents[1]

# Threefry-2x32, 20 rounds: (key, counter) -> output, the known-answer vectors published with the
# algorithm (Random123's kat_vectors; jax's own tests check its implementation against them).
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]

# In a fresh process: jax's random functions on 64 keys with jax's own CPU lowering, then with
# rlpg's; whether each lowering of a new program holds a while loop; prints the comparison as JSON.
COMPARE_LOWERINGS = """
import json
import jax, jax.numpy as jnp, numpy as np
import rlpg
from rlpg import _xla

def draws():  # a new function each call: jit lowers it afresh
    def draw(key):
        k1, k2 = jax.random.split(key)
        return (jax.random.key_data(jax.random.split(k1, 3)), jax.random.key_data(jax.random.fold_in(k2, 7)),
                jax.random.bits(key, (5,)), jax.random.uniform(k1, (4,)), jax.random.normal(k2, (3,)),
                jax.random.categorical(key, jnp.log(jnp.arange(1.0, 7.0)), shape=(8,)), jax.random.permutation(k2, 10))
    return jax.jit(jax.vmap(draw))

keys = jax.random.split(jax.random.PRNGKey(2026), 64)
before, loop_before = draws()(keys), _xla.threefry_lowers_to_a_loop()
rlpg.unroll_threefry_on_cpu()
after, loop_after = draws()(keys), _xla.threefry_lowers_to_a_loop()
equal = [bool(np.array_equal(a, b)) for a, b in zip(before, after)]
print(json.dumps({"loop_before": loop_before, "loop_after": loop_after, "equal": equal}))
"""


@pytest.mark.parametrize("key, counter, expected", KNOWN_ANSWERS)
def test_threefry_unrolled_gives_the_known_answers(key, counter, expected):
    words = [np.array([w], np.uint32) for w in (*key, *counter)]
    assert [int(y[0]) for y in _xla.threefry2x32_unrolled(*words)] == list(expected)


def test_unrolled_lowering_draws_jax_s_bits_without_a_loop():
    """Every kind of draw rlpg's training makes (split, fold_in, bits, uniform, normal,
    categorical, permutation) gives the same bits with either lowering; jax's CPU one loops, rlpg's
    does not (a rule registered for another platform, or not at all, would leave the loop)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", COMPARE_LOWERINGS], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loop_before"] and not result["loop_after"], result
    assert all(result["equal"]) and len(result["equal"]) == 7, result
