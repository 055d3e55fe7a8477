"""The textbook small worlds as gymnax environments, each finite one with its exact `TabularMDP`.

| environment | episodes | exact ground truth |
| --- | --- | --- |
| `MultiArmedBandit(arm_means, arm_stds)` | one pull, Gaussian reward | `tabular_mdp()`: decision state + absorbing terminal |
| `ContinuousBandit(optimum, width)` | one action a ∈ R^D, r = −‖(a − a*)/w‖² | `expected_reward(mean, log_std)` |
| `CliffWalking()` | 4 × 12 grid, one-hot obs, time limit 200 | `tabular_mdp()` (48 states) |
| `AliasedGridworld()` | 5-cell corridor, wall-bit obs (cells 1, 3 aliased) | `tabular_mdp()` (6 states), `features()` φ [6, 4, 16] |
| `LongEpisodeChain(length)` | quit at once, or walk a chain to the end (the optimum, the longest episode) | `tabular_mdp()` (length + 2 states) |
| `DiscountTrap()` | two aliased states; with γ = 0.4 the common update drifts to the worse policy | `tabular_mdp()` (3 states) |
| `RandomTabularMDP(mdp)` / `.from_key(key, S, A)` | any `TabularMDP`, one-hot obs, time limit | `tabular_mdp()` |
| `LQR(A, B, Q, R, initial_mean, initial_cov, horizon)` | x' = Ax + Bu + w, r = −(xᵀQx + uᵀRu), H steps; differentiable transitions | `rlpg.exact.lqr_expected_return(env, params, K, log σ)` |

Every finite environment is a `FiniteEnv` stepping the same tables it exports; its terminal
states are absorbing with zero reward in the MDP, so the expected undiscounted return of an
episode under the time limit H = `params.max_steps_in_episode` is
`rlpg.exact.finite_horizon_expected_return(env.tabular_mdp(), logits, H)` (see
`rlpg.envs.tabular` for the details and for the linear softmax over observations,
`env.linear_softmax_policy()` with exact J `features_expected_return(mdp, θ, env.features())`).

`make(env_id)` builds them by id (`REGISTRY`: MultiArmedBandit-v0 with arm means 1, 2, 4, 3,
ContinuousBandit-v0 with optimum 1.5, CliffWalking-v0, AliasedGridworld-v0, LongEpisodeChain-v0, RandomMDP-v0:
`RandomTabularMDP.from_key(PRNGKey(0), 5, 3)` with H = 5, LQR-v0 a noisy double integrator), the one environment factory of rlpg
(gymnax ids and registered ones too), so the training loops and `experiments.train --env` run on them.

Any other environment: `register(env_id, factory)`, and the adapters `BraxEnv` (ids
`brax/<name>`) and `LegacyGymnaxEnv` (the older 5-value step; ids `craftax/<name>`); see
`rlpg.envs.registration` and `rlpg.envs.adapters`.
"""

import difflib
from typing import Any, Callable

import gymnax
import jax

from rlpg.envs.bandits import ContinuousBandit, ContinuousBanditParams, ContinuousBanditState, MultiArmedBandit
from rlpg.envs.gridworlds import AliasedGridworld, CliffWalking, DiscountTrap, LongEpisodeChain
from rlpg.envs.lqr import LQR, LQRParams, LQRState
from rlpg.envs.adapters import BraxEnv, LegacyGymnaxEnv, make_brax, make_craftax
from rlpg.envs.registration import is_registered, make_registered, register, registered_ids
from rlpg.envs.tabular import (
    FiniteEnv,
    FiniteEnvParams,
    FiniteEnvState,
    RandomTabularMDP,
)
from rlpg.policies import observation_action_features  # the features of the worlds' linear softmax

# The textbook worlds by id, for `make` and `--env` (gymnax ids work there too).
REGISTRY: dict[str, Callable[[], Any]] = {
    "MultiArmedBandit-v0": lambda: MultiArmedBandit(arm_means=(1.0, 2.0, 4.0, 3.0)),
    "ContinuousBandit-v0": lambda: ContinuousBandit(optimum=1.5, width=1.0),
    "CliffWalking-v0": CliffWalking,
    "AliasedGridworld-v0": AliasedGridworld,
    "LongEpisodeChain-v0": LongEpisodeChain,
    "DiscountTrap-v0": DiscountTrap,
    "RandomMDP-v0": lambda: RandomTabularMDP.from_key(jax.random.PRNGKey(0), 5, 3, max_steps_in_episode=5),
    "LQR-v0": lambda: LQR(  # a noisy double integrator (dt = 0.1) steered to 0 over 50 steps
        A=[[1.0, 0.1], [0.0, 1.0]], B=[[0.005], [0.1]], Q=[[1.0, 0.0], [0.0, 0.1]], R=[[0.01]],
        initial_mean=[0.0, 0.0], initial_cov=[[1.0, 0.0], [0.0, 0.25]], noise_cov=[[1e-4, 0.0], [0.0, 1e-3]],
        horizon=50,
    ),
}


def make(env_id: str, **env_kwargs) -> tuple[Any, Any]:
    """(env, env_params) for a gymnax id, a textbook world of `REGISTRY`, or an id of
    `rlpg.envs.register` (`brax/<name>`, `craftax/<name>`, `module:id`; see
    `rlpg.envs.registration`); an unknown id names the close ones."""
    if not isinstance(env_id, str):
        raise TypeError(f"`env` must be an environment id (str); got {env_id!r}.")
    if is_registered(env_id):
        if env_kwargs:
            raise ValueError(f"`env_kwargs` {sorted(env_kwargs)} apply to gymnax ids only; {env_id!r} is registered.")
        return make_registered(env_id)
    if env_id in REGISTRY and not env_kwargs:
        env = REGISTRY[env_id]()
        return env, env.default_params
    if env_id not in gymnax.registered_envs:
        known = list(gymnax.registered_envs) + list(REGISTRY) + registered_ids()
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"`env` {env_id!r} is not a gymnax id, a world of rlpg.envs.REGISTRY or an id of rlpg.envs.register.{hint}")
    return gymnax.make(env_id, **env_kwargs)


__all__ = [
    "REGISTRY",
    "make",
    "register",
    "registered_ids",
    "is_registered",
    "make_registered",
    "BraxEnv",
    "LegacyGymnaxEnv",
    "make_brax",
    "make_craftax",
    "AliasedGridworld",
    "CliffWalking",
    "ContinuousBandit",
    "ContinuousBanditParams",
    "ContinuousBanditState",
    "FiniteEnv",
    "FiniteEnvParams",
    "FiniteEnvState",
    "DiscountTrap",
    "LongEpisodeChain",
    "LQR",
    "LQRParams",
    "LQRState",
    "MultiArmedBandit",
    "RandomTabularMDP",
    "observation_action_features",
]
