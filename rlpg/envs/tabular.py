"""Finite gymnax environments that step a table, and export the same table as a `TabularMDP`.

A `FiniteEnv` is given the arrays of a finite MDP — transitions P [S, A, S'], mean rewards
r [S, A], reward noise σ_r [S, A], start distribution μ [S], a terminal mask [S] and one
observation per state [S, F] — and keeps them in its `FiniteEnvParams` (a pytree, so the
tables may be replaced, `params.replace(rewards=...)`, or vmapped like any gymnax parameter;
the constructor itself checks concrete arrays, outside jit). Its `step` samples
s' ~ P(·|s, a) and r ~ N(r(s, a), σ_r(s, a)²) and observes `observations[s']`; its
`tabular_mdp()` returns those same P, r, μ as an `rlpg.exact.TabularMDP`. Rollouts and exact
gradients therefore describe one MDP by construction.

Episodes and the exact objectives
---------------------------------
* Terminal states are absorbing with zero reward in the `TabularMDP` (they lead only to
  themselves, whatever the action). In the environment, entering one ends the episode with
  `terminated = True` (and gymnax auto-resets). Rewards after termination are 0 in the MDP
  and absent in the environment, so the two agree on every return.
* The time limit `params.max_steps_in_episode` = H truncates an episode after H steps
  (`truncated = True`, only when the last step did not also terminate: the two flags never
  fire together). Hence the expected undiscounted episode return of the environment is
  exactly `rlpg.exact.finite_horizon_expected_return(env.tabular_mdp(), logits, H)`, and its
  expected discounted return Σ_{t<H} γ^t r_t tends to `rlpg.exact.expected_return` as H grows
  (when every policy of interest terminates, or γ^H is small).
* The environment's rewards are undiscounted; `params.gamma` is only the discount stored in
  the exported `TabularMDP`.

Observations and features
-------------------------
The policy sees `observations[s]` [F], never s. `observation_action_features(A)` turns an
observation o [..., F] into the linear-softmax features φ(o, a) = o ⊗ e_a [..., A, F·A], so
`rlpg.policies.linear_softmax(observation_action_features(A), F·A)` (= `env.linear_softmax_policy()`)
has logits(o, a) = Σ_f o_f W[f, a] with θ = W.reshape(-1), W [F, A]; and `env.features()`
is the same map applied to every state, φ [S, A, F·A], so that
`rlpg.exact.features_expected_return(env.tabular_mdp(), θ, env.features())` is J of exactly
that policy. With one-hot observations (F = S) θ = logits.reshape(-1) for a tabular policy
logits [S, A]; with aliased observations (equal rows) states share parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from rlpg import exact, policies
from rlpg._checks import check_in_interval, check_rank, check_shape, check_size
from rlpg.policies import Policy


@struct.dataclass
class FiniteEnvState(environment.EnvState):
    """state: [] int32 index s of the current state; time: [] int32 steps taken this episode."""

    state: jax.Array
    time: jax.Array


@struct.dataclass(kw_only=True)
class FiniteEnvParams(environment.EnvParams):
    """The tables of a finite environment (S states, A actions, F observation features).

    transitions: [S, A, S] Pr(s' | s, a).  rewards: [S, A] mean reward.
    reward_std: [S, A] standard deviation of the Gaussian reward noise (0: deterministic).
    initial: [S] start distribution.  terminal: [S] bool, entering s ends the episode.
    observations: [S, F] what the agent sees in each state.
    gamma: [] discount of the exported TabularMDP (the env itself does not discount).
    max_steps_in_episode: time limit H (steps), after which an episode is truncated.
    """

    transitions: jax.Array
    rewards: jax.Array
    reward_std: jax.Array
    initial: jax.Array
    terminal: jax.Array
    observations: jax.Array
    gamma: jax.Array
    max_steps_in_episode: int = 100


class FiniteEnv(environment.Environment[FiniteEnvState, FiniteEnvParams]):
    """A gymnax environment over a finite MDP given by tables (see the module docstring).

    Args:
      transitions: [S, A, S] Pr(s' | s, a); rows sum to 1.
      rewards: [S, A] mean rewards r(s, a).
      initial: [S] start distribution μ.
      terminal: [S] bool; terminal states must be absorbing with zero reward (checked).
      observations: [S, F] observation of each state.
      reward_std: [S, A] Gaussian reward noise (default 0).
      gamma: discount of the exported TabularMDP.
      max_steps_in_episode: time limit H.
    """

    def __init__(
        self,
        transitions,
        rewards,
        initial,
        terminal,
        observations,
        reward_std=None,
        gamma: float = 0.9,
        max_steps_in_episode: int = 100,
    ):
        super().__init__()
        mdp = exact.tabular_mdp(transitions, rewards, initial, gamma, discounted=False)
        S, A = mdp.num_states, mdp.num_actions
        terminal = jnp.asarray(terminal, bool)
        check_shape("terminal", terminal, (S,), "[S]")
        observations = jnp.asarray(observations, jnp.result_type(float))
        check_rank("observations", observations, 2, "[S, F]")
        check_shape("observations", observations, (S, observations.shape[1]), "[S, F]")
        if reward_std is None:
            reward_std = np.zeros((S, A))
        reward_std = jnp.asarray(reward_std, mdp.rewards.dtype)
        check_shape("reward_std", reward_std, (S, A), "[S, A]")
        if np.any(np.asarray(reward_std) < 0):
            raise ValueError("`reward_std` must be >= 0.")
        check_size("max_steps_in_episode", max_steps_in_episode)  # an int >= 1 (2.5 was truncated to 2)
        term = np.asarray(terminal)
        P, r, noise = np.asarray(mdp.transitions), np.asarray(mdp.rewards), np.asarray(reward_std)
        for s in np.flatnonzero(term):
            if not (np.allclose(P[s, :, s], 1.0) and np.allclose(r[s], 0.0) and np.allclose(noise[s], 0.0)):
                raise ValueError(f"terminal state {s} must be absorbing with zero reward.")
        self.num_states, self._num_actions, self.num_features = S, A, observations.shape[1]
        self._obs_range = (float(np.min(observations)), float(np.max(observations)), observations.dtype)
        self._default_params = FiniteEnvParams(
            transitions=mdp.transitions,
            rewards=mdp.rewards,
            reward_std=reward_std,
            initial=mdp.initial,
            terminal=terminal,
            observations=observations,
            gamma=mdp.gamma,
            max_steps_in_episode=int(max_steps_in_episode),
        )

    # ------------------------------------------------------------------ gymnax interface

    @property
    def default_params(self) -> FiniteEnvParams:
        return self._default_params

    def reset_env(self, key: jax.Array, params: FiniteEnvParams) -> tuple[jax.Array, FiniteEnvState]:
        s0 = jax.random.categorical(key, jnp.log(params.initial)).astype(jnp.int32)
        state = FiniteEnvState(state=s0, time=jnp.int32(0))
        return params.observations[s0], state

    def step_env(
        self, key: jax.Array, state: FiniteEnvState, action: int | jax.Array, params: FiniteEnvParams
    ) -> tuple[jax.Array, FiniteEnvState, jax.Array, jax.Array, dict[Any, Any]]:
        key_next, key_reward = jax.random.split(key)
        s, a = state.state, jnp.asarray(action, jnp.int32)
        s_next = jax.random.categorical(key_next, jnp.log(params.transitions[s, a])).astype(jnp.int32)
        noise = jax.random.normal(key_reward, (), params.rewards.dtype)
        reward = params.rewards[s, a] + params.reward_std[s, a] * noise
        new_state = FiniteEnvState(state=s_next, time=state.time + 1)
        terminated = params.terminal[s_next]
        obs = params.observations[s_next]
        return (
            jax.lax.stop_gradient(obs),
            jax.lax.stop_gradient(new_state),
            reward,
            terminated,
            {"discount": 1.0 - terminated.astype(jnp.float32)},
        )

    def is_terminated(self, state: FiniteEnvState, params: FiniteEnvParams) -> jax.Array:
        return params.terminal[state.state]

    def is_truncated(self, state: FiniteEnvState, params: FiniteEnvParams) -> jax.Array:
        """Time limit reached on a step that did not terminate (the flags are exclusive)."""
        return jnp.logical_and(state.time >= params.max_steps_in_episode, ~params.terminal[state.state])

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params: FiniteEnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params: FiniteEnvParams | None = None) -> spaces.Box:
        """Box [F] bounded by the smallest and largest entry of the constructor's observations."""
        low, high, dtype = self._obs_range
        return spaces.Box(low, high, (self.num_features,), dtype)

    def state_space(self, params: FiniteEnvParams | None = None) -> spaces.Dict:
        params = self.default_params if params is None else params
        return spaces.Dict(
            {"state": spaces.Discrete(self.num_states), "time": spaces.Discrete(int(params.max_steps_in_episode) + 1)}
        )

    # ------------------------------------------------------------------ exact ground truth

    def tabular_mdp(self, params: FiniteEnvParams | None = None, gamma=None) -> exact.TabularMDP:
        """The `TabularMDP` this environment samples: P, mean rewards r, μ, and γ (`gamma` or
        `params.gamma`). Terminal states are absorbing with zero reward; see the module
        docstring for which exact objective equals which episode return."""
        params = self.default_params if params is None else params
        gamma = params.gamma if gamma is None else gamma
        check_in_interval("gamma", gamma, 0.0, 1.0)
        gamma = jnp.asarray(gamma, params.rewards.dtype)
        return exact.TabularMDP(params.transitions, params.rewards, params.initial, gamma)

    def features(self, params: FiniteEnvParams | None = None) -> jax.Array:
        """φ [S, A, F·A]: `observation_action_features` of each state's observation, for
        `rlpg.exact.features_expected_return(self.tabular_mdp(), θ, φ)`."""
        params = self.default_params if params is None else params
        return policies.observation_action_features(self._num_actions)(params.observations)

    def linear_softmax_policy(self) -> Policy:
        """π(a|o) ∝ exp(φ(o, a)ᵀθ) over this env's observations, θ [F·A] (zeros at init):
        the policy whose exact J is `features_expected_return(mdp, θ, self.features())`."""
        A, F = self._num_actions, self.num_features
        return policies.linear_softmax(policies.observation_action_features(A), F * A)


class RandomTabularMDP(FiniteEnv):
    """Any `TabularMDP` as a gymnax environment: one-hot observations of the S states, no
    terminal states, episodes truncated after `max_steps_in_episode` steps (so the expected
    undiscounted episode return is `finite_horizon_expected_return(mdp, logits, H)`).

    `RandomTabularMDP.from_key(key, S, A, gamma)` draws the MDP with `rlpg.exact.random_mdp`.
    """

    def __init__(self, mdp: exact.TabularMDP, max_steps_in_episode: int = 100):
        mdp = mdp.validate(discounted=False)
        S = mdp.num_states
        super().__init__(
            mdp.transitions,
            mdp.rewards,
            mdp.initial,
            terminal=np.zeros((S,), bool),
            observations=jnp.eye(S, dtype=mdp.rewards.dtype),
            gamma=mdp.gamma,
            max_steps_in_episode=max_steps_in_episode,
        )

    @classmethod
    def from_key(
        cls, key: jax.Array, num_states: int, num_actions: int, gamma: float = 0.9, max_steps_in_episode: int = 100
    ) -> "RandomTabularMDP":
        """The environment of `rlpg.exact.random_mdp(key, num_states, num_actions, gamma)`."""
        return cls(exact.random_mdp(key, num_states, num_actions, gamma), max_steps_in_episode)

    @property
    def name(self) -> str:
        return f"RandomTabularMDP-S{self.num_states}-A{self.num_actions}"
