"""rlpg: policy-gradient reinforcement learning in JAX, as pure functions."""

import os

# XLA's multi-threaded Eigen pool on CPU can wedge forever on vmapped scan programs like the
# training loop here (seen with jaxlib 0.10 on 2-core machines: all threads idle, the result
# never ready). Single-threaded Eigen avoids it and costs these small-matrix programs nothing
# measurable. The flag is read when the backend starts, so it must be set before the first
# computation; a user's own choice in XLA_FLAGS is kept.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

from rlpg import algos, distributions, envs, estimators, exact, policies, returns, rollout  # noqa: E402
from rlpg.experiment import load_policy  # noqa: E402

__version__ = "0.1.0"

__all__ = ["load_policy", "algos", "distributions", "envs", "estimators", "exact", "policies", "returns", "rollout"]
