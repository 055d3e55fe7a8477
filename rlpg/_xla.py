"""XLA CPU flags that avoid a known runtime hang; set before the backend starts.

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

SAFE_CPU_FLAGS = {
    "xla_cpu_enable_concurrency_optimized_scheduler": "false",
    "xla_cpu_multi_thread_eigen": "false",
}


def set_safe_cpu_flags() -> None:
    """Append each of `SAFE_CPU_FLAGS` to `XLA_FLAGS` unless it is already set there."""
    for flag, value in SAFE_CPU_FLAGS.items():
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{flag}={value}".strip()
