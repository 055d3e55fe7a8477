"""The textbook small worlds as gymnax environments, each finite one with its exact `TabularMDP`.

| environment | episodes | exact ground truth |
| --- | --- | --- |
| `MultiArmedBandit(arm_means, arm_stds)` | one pull, Gaussian reward | `tabular_mdp()`: decision state + absorbing terminal |
| `ContinuousBandit(optimum, width)` | one action a ∈ R^D, r = −‖(a − a*)/w‖² | `expected_reward(mean, log_std)` |
| `CliffWalking()` | 4 × 12 grid, one-hot obs, time limit 200 | `tabular_mdp()` (48 states) |
| `AliasedGridworld()` | 5-cell corridor, wall-bit obs (cells 1, 3 aliased) | `tabular_mdp()` (6 states), `features()` φ [6, 4, 16] |
| `RandomTabularMDP(mdp)` / `.from_key(key, S, A)` | any `TabularMDP`, one-hot obs, time limit | `tabular_mdp()` |

Every finite environment is a `FiniteEnv` stepping the same tables it exports; its terminal
states are absorbing with zero reward in the MDP, so the expected undiscounted return of an
episode under the time limit H = `params.max_steps_in_episode` is
`rlpg.exact.finite_horizon_expected_return(env.tabular_mdp(), logits, H)` (see
`rlpg.envs.tabular` for the details and for the linear softmax over observations,
`env.linear_softmax_policy()` with exact J `features_expected_return(mdp, θ, env.features())`).
"""

from rlpg.envs.bandits import ContinuousBandit, ContinuousBanditParams, ContinuousBanditState, MultiArmedBandit
from rlpg.envs.gridworlds import AliasedGridworld, CliffWalking
from rlpg.envs.tabular import (
    FiniteEnv,
    FiniteEnvParams,
    FiniteEnvState,
    RandomTabularMDP,
    observation_action_features,
)

__all__ = [
    "AliasedGridworld",
    "CliffWalking",
    "ContinuousBandit",
    "ContinuousBanditParams",
    "ContinuousBanditState",
    "FiniteEnv",
    "FiniteEnvParams",
    "FiniteEnvState",
    "MultiArmedBandit",
    "RandomTabularMDP",
    "observation_action_features",
]
