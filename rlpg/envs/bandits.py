"""Bandits as one-step gymnax episodes: Gaussian multi-armed, and a continuous-action bandit."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from rlpg._checks import check_floating, check_min_rank, check_positive, check_rank
from rlpg.envs.tabular import FiniteEnv


class MultiArmedBandit(FiniteEnv):
    """A Gaussian K-armed bandit: pulling arm a pays r ~ N(arm_means[a], arm_stds[a]²) and ends
    the episode (`terminated = True` after every pull, never `truncated`).

    Observation: the constant [1.0] (shape [1]). Actions: Discrete(K).

    Exact MDP (`tabular_mdp()`): S = 2 states — state 0 is the one decision state (where every
    episode starts), state 1 the absorbing terminal with zero reward, entered after any pull.
    So r(0, a) = arm_means[a] and, for a policy with logits [2, K] (only row 0 matters),
    J = Σ_a π(a|0) arm_means[a] exactly: `expected_return` for any γ (V(1) = 0, so
    J = r_π(0) + γ·0) and `finite_horizon_expected_return` for any horizon H >= 1. The two
    states share the observation [1.0], so a policy over observations is the same in both.

    Args:
      arm_means: [K] mean rewards. arm_stds: [K] reward standard deviations (default 1).
      gamma: discount stored in the exported MDP (irrelevant to J, see above).
    """

    def __init__(self, arm_means, arm_stds=None, gamma: float = 0.9):
        arm_means = jnp.asarray(arm_means, jnp.result_type(float))
        check_rank("arm_means", arm_means, 1, "[K]")
        K = arm_means.shape[0]
        if K < 1:
            raise ValueError(f"`arm_means` must hold at least one arm, [K >= 1]; got shape {arm_means.shape}.")
        arm_stds = jnp.asarray(np.ones(K) if arm_stds is None else arm_stds, arm_means.dtype)
        if arm_stds.shape != (K,):
            raise ValueError(f"`arm_stds` must have shape ({K},) like `arm_means`; got {arm_stds.shape}.")
        transitions = np.zeros((2, K, 2))
        transitions[:, :, 1] = 1.0  # every pull, and the terminal itself, lead to the terminal
        zeros = jnp.zeros((K,), arm_means.dtype)
        super().__init__(
            transitions,
            jnp.stack([arm_means, zeros]),
            initial=np.array([1.0, 0.0]),
            terminal=np.array([False, True]),
            observations=np.ones((2, 1)),
            reward_std=jnp.stack([arm_stds, zeros]),
            gamma=gamma,
            max_steps_in_episode=1,
        )

    @property
    def name(self) -> str:
        return f"MultiArmedBandit-{self.num_actions}"


@struct.dataclass
class ContinuousBanditState(environment.EnvState):
    time: jax.Array


@struct.dataclass(kw_only=True)
class ContinuousBanditParams(environment.EnvParams):
    """optimum: [D] best action a*. width: [] length scale w. max_steps_in_episode: 1."""

    optimum: jax.Array
    width: jax.Array
    max_steps_in_episode: int = 1


class ContinuousBandit(environment.Environment[ContinuousBanditState, ContinuousBanditParams]):
    """A one-step bandit with a continuous action a ∈ R^D and a quadratic reward

        r(a) = −Σ_d ((a_d − optimum_d) / width)²    (−1 at distance `width` from the optimum),

    deterministic given a. Every episode is one step (`terminated = True`, never `truncated`).
    Observation: the constant [1.0]. Action space: Box [D] in [−action_bound, action_bound];
    `rlpg.rollout` clips sampled actions into it.

    For a Gaussian policy a ~ N(μ, σ²) (σ = exp(log_std)) the expected reward is, in closed form,

        E[r] = −Σ_d ((μ_d − optimum_d)² + σ_d²) / width²        (`expected_reward`),

    exact when the policy puts negligible mass outside the action bounds (clipping is ignored).
    Its gradient is ∂E/∂μ = −2(μ − optimum)/w², ∂E/∂log σ = −2σ²/w²: the optimum is μ = a*, σ → 0.

    Args:
      optimum: scalar or [D] best action (D = 1 for a scalar). width: w > 0.
      action_bound: half-width of the action Box (default 10).
    """

    def __init__(self, optimum=0.0, width: float = 1.0, action_bound: float = 10.0):
        super().__init__()
        optimum = jnp.atleast_1d(jnp.asarray(optimum, jnp.result_type(float)))
        check_rank("optimum", optimum, 1, "[D] (or a scalar)")
        check_positive("width", width)
        check_positive("action_bound", action_bound)
        if np.any(np.abs(np.asarray(optimum)) > action_bound):
            raise ValueError(
                f"`optimum` {np.asarray(optimum).tolist()} must lie within ±action_bound = ±{action_bound}."
            )
        self.action_dim = optimum.shape[0]
        self.action_bound = float(action_bound)
        self._default_params = ContinuousBanditParams(optimum=optimum, width=jnp.asarray(width, optimum.dtype))

    @property
    def default_params(self) -> ContinuousBanditParams:
        return self._default_params

    def reward(self, action: jax.Array, params: ContinuousBanditParams | None = None) -> jax.Array:
        """r(a) = −Σ_d ((a_d − optimum_d)/w)². action [..., D] -> [...]."""
        params = self.default_params if params is None else params
        return -jnp.sum(jnp.square((action - params.optimum) / params.width), axis=-1)

    def expected_reward(
        self, mean: jax.Array, log_std: jax.Array, params: ContinuousBanditParams | None = None
    ) -> jax.Array:
        """E_{a ~ N(mean, exp(log_std)²)}[r(a)] = −Σ_d ((mean_d − optimum_d)² + σ_d²)/w².

        Args:
          mean: [..., D]. log_std: [D] or [..., D] (broadcast against mean).
          params: the env parameters (default: `default_params`).
        Returns:
          [...] expected reward (differentiable in mean and log_std).
        """
        params = self.default_params if params is None else params
        check_min_rank("mean", mean, 1, "[..., D]")
        check_floating("mean", mean)
        check_floating("log_std", log_std)
        if jnp.shape(mean)[-1] != self.action_dim:
            raise ValueError(f"`mean` must end in the action size D = {self.action_dim}; got {jnp.shape(mean)}.")
        variance = jnp.broadcast_to(jnp.exp(2.0 * log_std), jnp.shape(mean))
        return -jnp.sum(jnp.square(mean - params.optimum) + variance, axis=-1) / jnp.square(params.width)

    def reset_env(self, key: jax.Array, params: ContinuousBanditParams) -> tuple[jax.Array, ContinuousBanditState]:
        del key
        return jnp.ones((1,), params.optimum.dtype), ContinuousBanditState(time=jnp.int32(0))

    def step_env(
        self, key: jax.Array, state: ContinuousBanditState, action: jax.Array, params: ContinuousBanditParams
    ) -> tuple[jax.Array, ContinuousBanditState, jax.Array, jax.Array, dict[Any, Any]]:
        del key
        action = jnp.reshape(action, (self.action_dim,))
        reward = self.reward(action, params)
        obs = jnp.ones((1,), params.optimum.dtype)
        return obs, ContinuousBanditState(time=state.time + 1), reward, jnp.array(True), {"discount": 0.0}

    def is_terminated(self, state: ContinuousBanditState, params: ContinuousBanditParams) -> jax.Array:
        return state.time >= 1

    def is_truncated(self, state: ContinuousBanditState, params: ContinuousBanditParams) -> jax.Array:
        """Never: every episode terminates after its single step."""
        return jnp.array(False)

    @property
    def name(self) -> str:
        return f"ContinuousBandit-{self.action_dim}"

    @property
    def num_actions(self) -> int:
        return self.action_dim

    def action_space(self, params: ContinuousBanditParams | None = None) -> spaces.Box:
        return spaces.Box(-self.action_bound, self.action_bound, (self.action_dim,), jnp.float32)

    def observation_space(self, params: ContinuousBanditParams | None = None) -> spaces.Box:
        return spaces.Box(1.0, 1.0, (1,), jnp.float32)

    def state_space(self, params: ContinuousBanditParams | None = None) -> spaces.Dict:
        return spaces.Dict({"time": spaces.Discrete(2)})
