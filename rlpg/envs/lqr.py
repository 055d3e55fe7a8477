"""A linear-quadratic regulator as a gymnax environment: the world with exact policy gradients.

State x ∈ R^n (observed exactly), action u ∈ R^m,

    x_0 ~ N(μ_0, Σ_0),    x_{t+1} = A x_t + B u_t + w_t,  w_t ~ N(0, W),
    r_t = −(x_tᵀ Q x_t + u_tᵀ R u_t),

for H steps: step H truncates the episode (`truncated = True`, never `terminated`). The
rewards are undiscounted; `params.gamma` is the discount of the objective
J = E[Σ_{t<H} γ^t r_t] that `rlpg.exact.lqr_expected_return` computes for the linear Gaussian
policy u ~ N(K x, diag σ²) — `env.linear_policy()`, whose parameters are
{"theta": Kᵀ [n, m], "log_std": log σ [m]}.

The transition is differentiable in (x, u) and the noise w is drawn from the step's key, so
with `env.with_transition_gradients()` (gymnax's opt-in, as on Pendulum-v1) `jax.grad` of a
reparameterized return flows through the dynamics (`rlpg.pathwise`); without it the step's
outputs are detached, like every gymnax env's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from rlpg import policies
from rlpg._checks import check_in_interval, check_rank, check_shape
from rlpg.policies import Policy


@struct.dataclass
class LQRState(environment.EnvState):
    """x: [n] the state. time: [] int32 steps taken this episode."""

    x: jax.Array
    time: jax.Array


@struct.dataclass(kw_only=True)
class LQRParams(environment.EnvParams):
    """The system's matrices (a pytree: replace or vmap them like any gymnax parameter).

    A [n, n], B [n, m], Q [n, n] (PSD), R [m, m] (PSD), initial_mean μ_0 [n],
    initial_cov Σ_0 [n, n], noise_cov W [n, n], gamma γ [] (the objective's discount),
    max_steps_in_episode H (static).
    """

    A: jax.Array
    B: jax.Array
    Q: jax.Array
    R: jax.Array
    initial_mean: jax.Array
    initial_cov: jax.Array
    noise_cov: jax.Array
    gamma: jax.Array
    max_steps_in_episode: int = struct.field(pytree_node=False, default=16)


def _check_psd(name: str, m: np.ndarray) -> None:
    if not np.allclose(m, m.T, atol=1e-6) or np.linalg.eigvalsh(0.5 * (m + m.T)).min() < -1e-6:
        raise ValueError(f"`{name}` must be symmetric positive semi-definite; got {m.tolist()}.")


def _cholesky(cov: jax.Array) -> jax.Array:
    """A factor L with L Lᵀ = cov for a PSD cov (eigendecomposition: singular covariances allowed)."""
    values, vectors = jnp.linalg.eigh(cov)
    return vectors * jnp.sqrt(jnp.clip(values, 0.0))


class LQR(environment.Environment[LQRState, LQRParams]):
    """x' = A x + B u + w, r = −(xᵀQx + uᵀRu), H steps; see the module docstring.

    Args:
      A: [n, n]. B: [n, m]. Q: [n, n] PSD. R: [m, m] PSD.
      initial_mean: [n] μ_0. initial_cov: [n, n] PSD Σ_0.
      horizon: H >= 1, the episode length.
      noise_cov: [n, n] PSD W (default 0: deterministic dynamics).
      gamma: γ in [0, 1] of the objective J = E Σ_{t<H} γ^t r_t (default 1).
    """

    _supports_transition_gradients = True

    def __init__(self, A, B, Q, R, initial_mean, initial_cov, horizon: int, noise_cov=None, gamma: float = 1.0):
        super().__init__()
        dtype = jnp.result_type(float)
        A, B, Q, R = (np.asarray(m, dtype) for m in (A, B, Q, R))
        check_rank("A", A, 2, "[n, n]")
        n = A.shape[0]
        check_shape("A", A, (n, n), "square")
        check_rank("B", B, 2, "[n, m]")
        check_shape("B", B, (n, B.shape[1]), "[n, m] with n the size of A")
        m = B.shape[1]
        check_shape("Q", Q, (n, n), "[n, n]")
        check_shape("R", R, (m, m), "[m, m] with m = B.shape[1]")
        initial_mean = np.asarray(initial_mean, dtype)
        initial_cov = np.asarray(initial_cov, dtype)
        noise_cov = np.zeros((n, n), dtype) if noise_cov is None else np.asarray(noise_cov, dtype)
        check_shape("initial_mean", initial_mean, (n,), "[n]")
        check_shape("initial_cov", initial_cov, (n, n), "[n, n]")
        check_shape("noise_cov", noise_cov, (n, n), "[n, n]")
        for name, matrix in (("Q", Q), ("R", R), ("initial_cov", initial_cov), ("noise_cov", noise_cov)):
            _check_psd(name, matrix)
        if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or horizon < 1:
            raise ValueError(f"`horizon` must be a positive integer; got {horizon!r}.")
        check_in_interval("gamma", gamma, 0.0, 1.0)
        self.state_dim, self.action_dim = n, m
        self._default_params = LQRParams(
            A=jnp.asarray(A), B=jnp.asarray(B), Q=jnp.asarray(Q), R=jnp.asarray(R),
            initial_mean=jnp.asarray(initial_mean), initial_cov=jnp.asarray(initial_cov),
            noise_cov=jnp.asarray(noise_cov), gamma=jnp.asarray(gamma, dtype),
            max_steps_in_episode=int(horizon),
        )  # fmt: skip

    @property
    def default_params(self) -> LQRParams:
        return self._default_params

    def linear_policy(self, init_log_std: float = 0.0) -> Policy:
        """u ~ N(K x, diag σ²) with params {"theta": Kᵀ [n, m] (0 at init), "log_std": [m]}."""
        return policies.linear_gaussian(lambda obs: obs, self.state_dim, self.action_dim, init_log_std=init_log_std)

    def reset_env(self, key: jax.Array, params: LQRParams) -> tuple[jax.Array, LQRState]:
        noise = jax.random.normal(key, params.initial_mean.shape, params.initial_mean.dtype)
        x = params.initial_mean + _cholesky(params.initial_cov) @ noise
        return x, LQRState(x=x, time=jnp.int32(0))

    def step_env(
        self, key: jax.Array, state: LQRState, action: jax.Array, params: LQRParams
    ) -> tuple[jax.Array, LQRState, jax.Array, jax.Array, dict[Any, Any]]:
        x = state.x
        u = jnp.reshape(action, (self.action_dim,)).astype(x.dtype)
        reward = -(x @ params.Q @ x + u @ params.R @ u)
        noise = jax.random.normal(key, x.shape, x.dtype)
        x_next = params.A @ x + params.B @ u + _cholesky(params.noise_cov) @ noise
        obs, new_state = self._apply_transition_gradient_policy(x_next, LQRState(x=x_next, time=state.time + 1))
        return obs, new_state, reward, jnp.array(False), {"discount": params.gamma}

    def is_terminated(self, state: LQRState, params: LQRParams) -> jax.Array:
        """Never: episodes end only by the time limit H."""
        return jnp.array(False)

    @property
    def name(self) -> str:
        return f"LQR-{self.state_dim}x{self.action_dim}"

    @property
    def num_actions(self) -> int:
        return self.action_dim

    def action_space(self, params: LQRParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.action_dim,), jnp.float32)

    def observation_space(self, params: LQRParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.state_dim,), jnp.float32)

    def state_space(self, params: LQRParams | None = None) -> spaces.Dict:
        params = self.default_params if params is None else params
        return spaces.Dict({
            "x": spaces.Box(-jnp.inf, jnp.inf, (self.state_dim,), jnp.float32),
            "time": spaces.Discrete(params.max_steps_in_episode + 1),
        })  # fmt: skip
