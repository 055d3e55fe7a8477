"""XLA on CPU: two flags that avoid a known runtime hang, set before the backend starts; the
fast-compile pair the test suite uses; and `unroll_threefry_on_cpu`, the faster lowering of jax's
random-number hash that rlpg's entry points choose.

XLA's CPU runtime (jaxlib 0.10) can wait forever on vmapped scan programs like rlpg's training
loop: all threads idle, the result never ready. Two scheduler settings cause it on small
machines: the concurrency-optimized scheduler (a vmapped REINFORCE update with a value
baseline hung on its 2nd-3rd execution, every time, until it was turned off) and
multi-threaded Eigen (intermittent hangs). `set_safe_cpu_flags` turns both off unless the user
chose them in XLA_FLAGS. XLA reads the flags when the backend starts, so `import rlpg` (and
with it every entry point) calls this before any computation; neither flag costs these
programs measurable speed.
"""

import os
import subprocess
import sys

import numpy as np

SAFE_CPU_FLAGS = {
    "xla_cpu_enable_concurrency_optimized_scheduler": "false",
    "xla_cpu_multi_thread_eigen": "false",
}

# LLVM -O1 and XLA's legacy (non-MLIR) fusion emitters: XLA compiles rlpg's CPU programs in about
# 60% of its default time, but PPO's kernels then run at about 56% of their default speed
# (benchmarks/results/compile-flags-cpu.md). Worth it where compiling dominates: the test suite.
FAST_COMPILE_CPU_FLAGS = {
    "xla_backend_optimization_level": "1",
    "xla_cpu_use_fusion_emitters": "false",
}


def with_flags(flags: dict[str, str]) -> str:
    """This process's `XLA_FLAGS` with `--flag=value` appended for each of `flags` it does not
    already set (a flag the user set wins)."""
    xla_flags = os.environ.get("XLA_FLAGS", "")
    for flag, value in flags.items():
        if flag not in xla_flags:
            xla_flags = f"{xla_flags} --{flag}={value}".strip()
    return xla_flags


def append_flags(flags: dict[str, str]) -> None:
    """Set `XLA_FLAGS` to `with_flags(flags)`."""
    os.environ["XLA_FLAGS"] = with_flags(flags)


def set_safe_cpu_flags() -> None:
    """Append each of `SAFE_CPU_FLAGS` to `XLA_FLAGS` unless it is already set there."""
    append_flags(SAFE_CPU_FLAGS)


def xla_accepts(flags: dict[str, str], timeout_s: float = 60.0) -> bool:
    """Whether this jaxlib's XLA starts with `with_flags(flags)`: a new Python process starts the
    backend with them (about a second). XLA aborts a process whose XLA_FLAGS name a flag it does
    not know, so a flag a later jaxlib drops must be tested this way before this process sets it.
    A probe still running after `timeout_s` is killed and counts as a refusal: the caller goes on
    without the flags instead of waiting forever."""
    env = {**os.environ, "XLA_FLAGS": with_flags(flags), "JAX_PLATFORMS": "cpu"}
    try:
        probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env, capture_output=True,
                               timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


# Threefry-2x32 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"): rotation
# constants of rounds 0-3 and 4-7 (repeating), and the constant of the third key word.
THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
THREEFRY_KEY_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32_unrolled(key1, key2, x1, x2):
    """Threefry-2x32 with 20 rounds, written out: uint32 arrays (broadcasting) -> (y1, y2).

    With ks = (key1, key2, key1 ^ key2 ^ 0x1BD11BDA), start from x1 + ks0, x2 + ks1; round r of
    20 is x1 += x2; x2 = rotl(x2, R[r mod 8]) ^ x1; after rounds 4(i+1) (i = 0..4) add the key
    ks[(i+1) mod 3] to x1 and ks[(i+2) mod 3] + i + 1 to x2 (all mod 2^32). The same function
    as jax's `threefry2x32_p` (bit for bit, tests/test_xla.py), in straight-line code."""
    from jax import lax
    from jax import numpy as jnp

    # lax's primitives, not jnp's operators (a jit dispatch each): this is traced every time a
    # program is lowered, and a warm CLI run's three programs lower about 0.15 s faster so.
    shape = np.broadcast_shapes(*(np.shape(w) for w in (key1, key2, x1, x2)))
    key1, key2, x1, x2 = (jnp.broadcast_to(jnp.asarray(w, np.uint32), shape) for w in (key1, key2, x1, x2))
    ks = (key1, key2, lax.bitwise_xor(lax.bitwise_xor(key1, key2), THREEFRY_KEY_PARITY))
    x1, x2 = lax.add(x1, ks[0]), lax.add(x2, ks[1])
    for i in range(5):
        for r in THREEFRY_ROTATIONS[i % 2]:
            x1 = lax.add(x1, x2)
            rotated = lax.bitwise_or(lax.shift_left(x2, np.uint32(r)), lax.shift_right_logical(x2, np.uint32(32 - r)))
            x2 = lax.bitwise_xor(rotated, x1)
        x1 = lax.add(x1, ks[(i + 1) % 3])
        x2 = lax.add(lax.add(x2, ks[(i + 2) % 3]), np.uint32(i + 1))
    return x1, x2


def unroll_threefry_on_cpu() -> None:
    """From now on in this process, lower jax's Threefry-2x32 hash (behind every `jax.random` split,
    fold-in and draw) on CPU as straight-line code, `threefry2x32_unrolled`, as jax lowers it on GPU
    and TPU, instead of jax's CPU default: its 20 rounds as a while loop of 5 passes, whose
    loop-carried values XLA copies on every pass (about 35 small copies per hash).

    The random bits are the same, so every number is; only speed changes. rlpg's training
    programs hash inside their environment-step loops: the default REINFORCE run on CartPole-v1
    trains 22-32% faster with it, and its cold compile is shorter (other algorithms: within noise;
    benchmarks.compile_flags). A program with many hashes outside loops compiles slower (a
    60-layer policy's init: 5.5-8.8 s against 3.9-4.7 s), which is why jax rolls the loop on CPU.
    `experiments.train` and the speed benchmarks (throughput, profile, ppo_vs_rejax) call this;
    call it in your own script for the same speed. No effect on GPU and TPU programs."""
    from jax.extend.random import threefry2x32_p
    from jax.interpreters import mlir

    rule = mlir.lower_fun(threefry2x32_unrolled, multiple_results=True)
    mlir.register_lowering(threefry2x32_p, rule, platform="cpu", inline=False)


def threefry_lowers_to_a_loop() -> bool:
    """Whether a program that splits a key, lowered now for CPU, holds jax's while loop (True by
    default, False after `unroll_threefry_on_cpu`)."""
    import jax

    traced = jax.jit(lambda key: jax.random.split(key)).trace(jax.ShapeDtypeStruct((2,), "uint32"))
    return "stablehlo.while" in traced.lower(lowering_platforms=("cpu",)).as_text()
