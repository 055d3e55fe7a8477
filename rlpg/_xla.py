"""XLA CPU flags: two that avoid a known runtime hang, set before the backend starts, and the
fast-compile pair the test suite uses.

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
