"""rlpg: policy-gradient reinforcement learning in JAX, as pure functions."""

import os

# XLA's CPU runtime (jaxlib 0.10) can wait forever on vmapped scan programs like the training
# loop here: all threads idle, the result never ready. Two scheduler settings cause it on small
# machines: the concurrency-optimized scheduler (a vmapped REINFORCE update with a value
# baseline hung on its 2nd-3rd execution, every time, until it was turned off) and
# multi-threaded Eigen (intermittent hangs). Both are off here unless the user chose them in
# XLA_FLAGS; they are read when the backend starts, so this runs before the first computation.
_SAFE_CPU_FLAGS = {
    "xla_cpu_enable_concurrency_optimized_scheduler": "false",
    "xla_cpu_multi_thread_eigen": "false",
}
for _flag, _value in _SAFE_CPU_FLAGS.items():
    if _flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --{_flag}={_value}".strip()

from rlpg import algos, compile_cache, distributions, envs, estimators, exact, policies, replay, returns, rollout, sharding, tracking  # noqa: E402
from rlpg._checks import checked  # noqa: E402
from rlpg.experiment import load_policy  # noqa: E402

__version__ = "0.1.0"

__all__ = ["checked", "load_policy", "algos", "compile_cache", "distributions", "envs", "estimators", "exact", "policies", "replay", "returns", "rollout", "sharding", "tracking"]
