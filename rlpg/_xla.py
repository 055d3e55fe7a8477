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


def append_flags(flags: dict[str, str]) -> None:
    """Append `--flag=value` to `XLA_FLAGS` for each of `flags` that `XLA_FLAGS` does not already set."""
    for flag, value in flags.items():
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{flag}={value}".strip()


def set_safe_cpu_flags() -> None:
    """Append each of `SAFE_CPU_FLAGS` to `XLA_FLAGS` unless it is already set there."""
    append_flags(SAFE_CPU_FLAGS)


def xla_accepts(flags: dict[str, str]) -> bool:
    """Whether this jaxlib's XLA knows every one of `flags`: a new Python process starts the
    backend with them (about a second). XLA aborts a process whose XLA_FLAGS name a flag it does
    not know, so a flag a later jaxlib drops must be tested this way before this process sets it."""
    extra = " ".join(f"--{flag}={value}" for flag, value in flags.items())
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {extra}".strip(), "JAX_PLATFORMS": "cpu"}
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env, capture_output=True)
    return probe.returncode == 0
