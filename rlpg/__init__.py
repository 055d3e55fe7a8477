"""rlpg: policy-gradient reinforcement learning in JAX, as pure functions."""

from rlpg import algos, distributions, estimators, policies, returns, rollout

__version__ = "0.1.0"

__all__ = ["algos", "distributions", "estimators", "policies", "returns", "rollout"]
