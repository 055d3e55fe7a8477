"""Exact J(θ) and ∇J(θ) for tabular MDPs by linear algebra: the ground truth for estimators.

A `TabularMDP` holds `transitions` P [S, A, S'] with P[s, a, s'] = Pr(s' | s, a), `rewards`
r [S, A] (the expected reward of taking a in s), the start distribution `initial` μ [S] and
the discount `gamma` γ. A tabular softmax policy is given by its `logits` [S, A]:
π(a|s) = softmax(logits[s])_a; a linear one by θ [F] and features φ [S, A, F] (logits = φθ,
so states with equal features share parameters, as in an aliased gridworld).

Under π the chain has P_π[s, s'] = Σ_a π(a|s) P[s, a, s'] and r_π[s] = Σ_a π(a|s) r[s, a].
The discounted objective is J(θ) = μᵀ V^π with V^π = (I − γ P_π)^{-1} r_π (needs γ < 1);
the finite-horizon one sums H undiscounted rewards. Every function is pure and jit-able
(`mdp` is a pytree whose fields, γ included, may be traced or vmapped); the finite-horizon
`horizon` is a static Python int.

`tabular_mdp` is the checked constructor: shapes, probabilities and γ are validated there.
The functions below re-check shapes at trace time and γ < 1 when γ is a concrete number.
"""

from __future__ import annotations

import operator

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rlpg._checks import (
    _concrete, _value_check, as_array, check_finite, check_floating, check_in_interval, check_index, check_index_as_given,
    check_integer, check_key, check_min_rank, check_rank, check_shape, check_size,
)
from rlpg.distributions import _check_some_finite
from rlpg.policies import linear_softmax_logits


@flax.struct.dataclass
class TabularMDP:
    """A finite MDP (S states, A actions). Build it with `tabular_mdp` to have it checked.

    Attributes:
      transitions: [S, A, S'] Pr(s' | s, a); each row [s, a, :] sums to 1.
      rewards: [S, A] expected reward r(s, a).
      initial: [S] start distribution μ; sums to 1.
      gamma: [] discount γ; γ < 1 for the discounted functions (any value in [0, 1] is
        stored; the finite-horizon functions ignore it).
    """

    transitions: jax.Array
    rewards: jax.Array
    initial: jax.Array
    gamma: jax.Array

    @property
    def num_states(self) -> int:
        return jnp.shape(self.rewards)[0]

    @property
    def num_actions(self) -> int:
        return jnp.shape(self.rewards)[1]

    def validate(self, discounted: bool = True) -> "TabularMDP":
        """Checks shapes, dtypes and (on concrete values) probabilities and γ; returns self.

        Raises ValueError naming the argument with the expected and the actual shape or value:
        transitions [S, A, S] non-negative with rows summing to 1, rewards [S, A] finite,
        initial [S] a distribution, gamma a scalar in [0, 1) (or [0, 1] if not `discounted`).
        Values that are traced (inside jit or vmap) are the caller's to validate.
        """
        _check_mdp_shapes(self)
        _check_distribution("transitions", self.transitions)
        _check_distribution("initial", self.initial)
        rewards = _concrete(self.rewards)
        if rewards is not None and not np.all(np.isfinite(rewards)):
            raise ValueError("`rewards` must be finite; got non-finite entries.")
        check_in_interval("gamma", self.gamma, 0.0, 1.0)
        if discounted:
            _check_discount(self.gamma)
        return self


# ----------------------------------------------------------------------------- checks


def _check_mdp(mdp: TabularMDP, discounted: bool) -> None:
    """`mdp` is a TabularMDP that passes `validate(discounted)`."""
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"`mdp` must be a TabularMDP; got {type(mdp).__name__}.")
    mdp.validate(discounted)


def _check_mdp_shapes(mdp: TabularMDP) -> None:
    """Shapes and dtypes only (static, so they run at trace time)."""
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"`mdp` must be a TabularMDP; got {type(mdp).__name__}.")
    check_rank("transitions", mdp.transitions, 3, "[S, A, S']")
    check_floating("transitions", mdp.transitions)
    S, A = jnp.shape(mdp.transitions)[:2]
    check_shape("transitions", mdp.transitions, (S, A, S), "[S, A, S'] with S' = S")
    check_shape("rewards", mdp.rewards, (S, A), "[S, A] as in transitions")
    check_floating("rewards", mdp.rewards)
    check_shape("initial", mdp.initial, (S,), "[S] as in transitions")
    check_floating("initial", mdp.initial)
    check_rank("gamma", mdp.gamma, 0, "(a scalar)")


def _check_distribution(name: str, p) -> None:
    """Concrete `p` [..., N]: entries >= 0 and sums over the last axis equal to 1 (± 1e-5);
    a traced one only under `rlpg.checked`."""
    if isinstance(p, jax.core.Tracer):
        _value_check(
            p,
            lambda v, xp: (v >= -1e-6) & (xp.abs(v.sum(-1, keepdims=True) - 1.0) <= 1e-5),
            str,
            f"`{name}` must be non-negative and sum to 1 over its last axis.",
        )
        return
    value = _concrete(p)
    if value is None:
        return
    value = value.astype(np.float64)
    if not np.all(np.isfinite(value)) or np.any(value < -1e-6):
        raise ValueError(f"`{name}` must be non-negative and finite; got min {np.min(value):.6g}.")
    sums = value.sum(axis=-1)
    err = np.abs(sums - 1.0)
    if np.any(err > 1e-5):
        if sums.ndim == 0:
            raise ValueError(f"`{name}` must sum to 1; got {float(sums):.6g}.")
        worst = np.unravel_index(np.argmax(err), err.shape)
        index = ", ".join([*map(str, worst), ":"])
        raise ValueError(
            f"`{name}` must sum to 1 over its last axis; got {name}[{index}] summing to "
            f"{sums[worst]:.6g} (sums lie in [{sums.min():.6g}, {sums.max():.6g}])."
        )


def _check_discount(gamma) -> None:
    """γ < 1 (when concrete): the discounted value (I − γ P_π)^{-1} r_π needs it."""
    value = _concrete(gamma)
    if value is not None and not (np.all(np.isfinite(value)) and np.all(value >= 0) and np.all(value < 1)):
        raise ValueError(
            f"`gamma` must lie in [0, 1) for the discounted objective; got {value.tolist()} "
            "(use the finite_horizon_* functions for undiscounted returns)."
        )


def _check_logits(mdp: TabularMDP, logits, discounted: bool) -> jax.Array:
    """The MDP (`TabularMDP.validate`: shapes, and probabilities and γ when concrete, so a
    TabularMDP built directly is checked too) and logits [S, A] of its size, as an array: no NaN
    or +inf, and in each row at least one finite logit (−inf: an impossible action)."""
    _check_mdp(mdp, discounted)
    logits = as_array("logits", logits)
    check_rank("logits", logits, 2, "[S, A]")
    check_floating("logits", logits)
    check_shape("logits", logits, jnp.shape(mdp.rewards), "[S, A] of the MDP")
    check_finite("logits", logits, allow_neg_inf=True)
    _check_some_finite("logits", logits)
    return logits


def _check_features(mdp: TabularMDP, theta, phi) -> tuple[jax.Array, jax.Array]:
    """(theta [F], phi [S, A, F]) as finite float arrays of the MDP's S and A."""
    _check_mdp(mdp, discounted=True)
    theta, phi = as_array("theta", theta), as_array("phi", phi)
    check_rank("phi", phi, 3, "[S, A, F]")
    check_floating("phi", phi)
    S, A = jnp.shape(mdp.rewards)
    check_shape("phi", phi, (S, A, jnp.shape(phi)[-1]), "[S, A, F] with the MDP's S and A")
    check_rank("theta", theta, 1, "[F]")
    check_floating("theta", theta)
    check_shape("theta", theta, (jnp.shape(phi)[-1],), "[F], the feature size F of `phi` [S, A, F]")
    check_finite("theta", theta)
    check_finite("phi", phi)
    return theta, phi


def _check_horizon(horizon) -> int:
    try:
        if isinstance(horizon, (bool, np.bool_)):
            raise TypeError
        h = operator.index(horizon)
    except TypeError:
        raise ValueError(
            f"`horizon` must be a static Python int >= 0; got {horizon!r} "
            "(under jax.jit mark it static: static_argnames='horizon')."
        ) from None
    if h < 0:
        raise ValueError(f"`horizon` must be >= 0; got {h}.")
    return h


# ----------------------------------------------------------------------------- construction


def tabular_mdp(transitions, rewards, initial, gamma=0.9, discounted: bool = True) -> TabularMDP:
    """A checked `TabularMDP`; arrays are cast to one floating dtype.

    Args:
      transitions: [S, A, S] Pr(s' | s, a), non-negative, each [s, a, :] summing to 1.
      rewards: [S, A] expected rewards.
      initial: [S] start distribution, summing to 1.
      gamma: scalar discount, in [0, 1) if `discounted` (else [0, 1]).
      discounted: False for an MDP meant only for the finite-horizon functions (allows γ = 1).
    Returns:
      The MDP. Raises ValueError naming the argument on a bad shape or value.
    """
    arrays = [jnp.asarray(x) for x in (transitions, rewards, initial)]
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.zeros(()).dtype  # the default float: float32, or float64 under x64
    transitions, rewards, initial = (x.astype(dtype) for x in arrays)
    mdp = TabularMDP(transitions, rewards, initial, jnp.asarray(gamma, dtype))
    return mdp.validate(discounted=discounted)


def random_mdp(key: jax.Array, num_states: int, num_actions: int, gamma: float | jax.Array = 0.9) -> TabularMDP:
    """A random MDP: uniform (Dirichlet(1, …, 1)) transition rows and start distribution, N(0, 1) rewards.

    A Dirichlet(1, …, 1) draw is a vector of i.i.d. Exponential(1) draws over its sum; that
    form compiles far faster than `jax.random.dirichlet`'s gamma sampler.

    Args:
      key: PRNG key. num_states S, num_actions A: static ints. gamma: scalar discount.
    Returns:
      TabularMDP with transitions [S, A, S], rewards [S, A], initial [S] in the default float
      dtype. Jit-able and vmap-able over `key` (with S and A static).
    """
    check_key("key", key)
    check_size("num_states", num_states)
    check_size("num_actions", num_actions)
    k_p, k_r, k_mu = jax.random.split(key, 3)

    def uniform_simplex(k, shape):
        e = jax.random.exponential(k, shape)
        return e / jnp.sum(e, axis=-1, keepdims=True)

    transitions = uniform_simplex(k_p, (num_states, num_actions, num_states))
    rewards = jax.random.normal(k_r, (num_states, num_actions))
    initial = uniform_simplex(k_mu, (num_states,))
    return tabular_mdp(transitions, rewards, initial, gamma)


# ----------------------------------------------------------------------------- the chain under π


def policy_probs(logits: jax.Array) -> jax.Array:
    """π(a|s) = exp(logits[s, a]) / Σ_b exp(logits[s, b]). logits [S, A] (or [..., A]) -> same shape."""
    logits = as_array("logits", logits)
    check_rank("logits", logits, (1, 2), "[S, A] or [A]")
    check_floating("logits", logits)
    if jnp.shape(logits)[-1] < 1:
        raise ValueError(f"`logits` must have at least one action, A >= 1; got shape {jnp.shape(logits)}.")
    check_finite("logits", logits, allow_neg_inf=True)
    _check_some_finite("logits", logits)
    return jax.nn.softmax(logits, axis=-1)


def _markov_chain(mdp: TabularMDP, logits: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(π [S, A], P_π [S, S] = Σ_a π(a|s) P[s, a, s'], r_π [S] = Σ_a π(a|s) r(s, a)) of checked logits."""
    pi = jax.nn.softmax(logits, axis=-1)  # policy_probs without its checks: the callers made them
    p_pi = jnp.einsum("sa,sat->st", pi, mdp.transitions)
    r_pi = jnp.sum(pi * mdp.rewards, axis=-1)
    return pi, p_pi, r_pi


def _resolvent_matrix(mdp: TabularMDP, p_pi: jax.Array) -> jax.Array:
    """I − γ P_π [S, S]."""
    return jnp.eye(mdp.num_states, dtype=p_pi.dtype) - mdp.gamma * p_pi


# ----------------------------------------------------------------------------- discounted


def value_function(mdp: TabularMDP, logits: jax.Array) -> jax.Array:
    """V^π [S], the solution of the Bellman equation V = r_π + γ P_π V.

    V^π = (I − γ P_π)^{-1} r_π by `jnp.linalg.solve` (differentiable in logits and in the MDP).

    Args:
      mdp: TabularMDP with γ < 1. logits: [S, A] softmax policy parameters.
    Returns:
      [S] state values.
    """
    logits = _check_logits(mdp, logits, discounted=True)
    _, p_pi, r_pi = _markov_chain(mdp, logits)
    return jnp.linalg.solve(_resolvent_matrix(mdp, p_pi), r_pi)


def q_function(mdp: TabularMDP, logits: jax.Array) -> jax.Array:
    """Q^π(s, a) = r(s, a) + γ Σ_s' P(s'|s, a) V^π(s'). mdp, logits [S, A] -> [S, A]."""
    v = value_function(mdp, logits)
    return mdp.rewards + mdp.gamma * jnp.einsum("sat,t->sa", mdp.transitions, v)


def discounted_state_distribution(mdp: TabularMDP, logits: jax.Array) -> jax.Array:
    """d^π(s) = (1 − γ) Σ_t γ^t Pr(s_t = s | s_0 ~ μ, π), i.e. d^πᵀ = (1 − γ) μᵀ (I − γ P_π)^{-1}.

    Normalization: the factor (1 − γ) makes d^π a probability distribution, Σ_s d^π(s) = 1
    (since P_π 1 = 1 gives (I − γ P_π)^{-1} 1 = 1/(1 − γ)); no further renormalization is
    applied, so the sum is 1 up to round-off. The unnormalized discounted visitation
    μᵀ (I − γ P_π)^{-1} is d^π / (1 − γ).

    Args:
      mdp: TabularMDP with γ < 1. logits: [S, A].
    Returns:
      [S] state distribution.
    """
    logits = _check_logits(mdp, logits, discounted=True)
    _, p_pi, _ = _markov_chain(mdp, logits)
    visits = jnp.linalg.solve(_resolvent_matrix(mdp, p_pi).T, mdp.initial)
    return (1.0 - mdp.gamma) * visits


def expected_return(mdp: TabularMDP, logits: jax.Array) -> jax.Array:
    """J(θ) = E[Σ_t γ^t r_t] = μᵀ V^π, the discounted return from s_0 ~ μ. -> [] scalar."""
    return mdp.initial @ value_function(mdp, logits)


def policy_gradient(mdp: TabularMDP, logits: jax.Array) -> jax.Array:
    """∇_logits J(θ) by `jax.grad` through the linear solve. mdp, logits [S, A] -> [S, A]."""
    return jax.grad(expected_return, argnums=1)(mdp, as_array("logits", logits))


def policy_gradient_theorem(mdp: TabularMDP, logits: jax.Array) -> jax.Array:
    """∇_logits J(θ) from the policy gradient theorem, for the tabular softmax policy.

    ∇J = 1/(1 − γ) Σ_s d^π(s) Σ_a ∇π(a|s) Q^π(s, a), and with ∂π(a|s)/∂logits[s, b] =
    π(a|s)(1[a = b] − π(b|s)) this is

      ∂J/∂logits[s, a] = d^π(s)/(1 − γ) · π(a|s) (Q^π(s, a) − V^π(s)).

    Args:
      mdp: TabularMDP with γ < 1. logits: [S, A].
    Returns:
      [S, A] gradient (equal to `policy_gradient` up to round-off).
    """
    d = discounted_state_distribution(mdp, logits)  # checks mdp and logits
    logits = as_array("logits", logits)
    q = q_function(mdp, logits)
    pi = jax.nn.softmax(logits, axis=-1)
    v = jnp.sum(pi * q, axis=-1)  # V^π(s) = Σ_a π(a|s) Q^π(s, a)
    return (d / (1.0 - mdp.gamma))[:, None] * pi * (q - v[:, None])


# ----------------------------------------------------------------------------- linear features


def features_expected_return(mdp: TabularMDP, theta: jax.Array, phi: jax.Array) -> jax.Array:
    """J(θ) = μᵀ V^π for the linear softmax policy π(a|s) ∝ exp(φ(s, a)ᵀ θ).

    logits = φ θ, so states with the same features φ(s, ·) share parameters (aliasing).

    Args:
      mdp: TabularMDP with γ < 1. theta: [F]. phi: [S, A, F].
    Returns:
      [] scalar.
    """
    theta, phi = _check_features(mdp, theta, phi)
    return expected_return(mdp, linear_softmax_logits(theta, phi))


def features_policy_gradient(mdp: TabularMDP, theta: jax.Array, phi: jax.Array) -> jax.Array:
    """∇_θ J(θ) = Σ_{s,a} φ(s, a) ∂J/∂logits[s, a], by `jax.grad`. theta [F], phi [S, A, F] -> [F]."""
    return jax.grad(features_expected_return, argnums=1)(mdp, as_array("theta", theta), phi)


# ----------------------------------------------------------------------------- finite horizon


def finite_horizon_values(
    mdp: TabularMDP, logits: jax.Array, horizon: int, discount: float | jax.Array = 1.0
) -> jax.Array:
    """V_t(s) = E[Σ_{k=t}^{H−1} γ^{k−t} r_k | s_t = s], the value with H − t steps left, for t = 0..H.

    Backward induction with a stationary policy: V_H = 0, V_t = r_π + γ P_π V_{t+1}, γ =
    `discount` (default 1: undiscounted; `mdp.gamma` is ignored; a `lax.scan` over a static
    trip count, so reverse-mode differentiable).

    Args:
      mdp: TabularMDP. logits: [S, A] softmax policy. horizon: H, a static Python int >= 0.
      discount: γ in [0, 1], a scalar.
    Returns:
      [H + 1, S] values (row H is 0).
    """
    logits = _check_logits(mdp, logits, discounted=False)
    horizon = _check_horizon(horizon)
    check_in_interval("discount", discount, 0.0, 1.0)  # a scalar: one γ for every state
    _, p_pi, r_pi = _markov_chain(mdp, logits)

    def step(v_next, _):
        v = r_pi + discount * (p_pi @ v_next)
        return v, v

    v_last = jnp.zeros_like(r_pi)
    _, vs = jax.lax.scan(step, v_last, None, length=horizon, reverse=True)
    return jnp.concatenate([vs, v_last[None]], axis=0)


def finite_horizon_expected_return(
    mdp: TabularMDP, logits: jax.Array, horizon: int, discount: float | jax.Array = 1.0
) -> jax.Array:
    """J_H(θ) = E[Σ_{t<H} γ^t r_t] = μᵀ V_0 over H steps, γ = `discount` (default 1:
    undiscounted; `mdp.gamma` is ignored).

    V_0 from `finite_horizon_values`.

    Args:
      mdp: TabularMDP. logits: [S, A]. horizon: H, a static Python int >= 0. discount: γ in [0, 1].
    Returns:
      [] scalar (0 for H = 0).
    """
    return mdp.initial @ finite_horizon_values(mdp, logits, horizon, discount)[0]


def finite_horizon_policy_gradient(
    mdp: TabularMDP, logits: jax.Array, horizon: int, discount: float | jax.Array = 1.0
) -> jax.Array:
    """∇_logits J_H(θ) (γ = `discount`) by `jax.grad` through the backward induction. -> [S, A]."""
    return jax.grad(finite_horizon_expected_return, argnums=1)(mdp, as_array("logits", logits), horizon, discount)


def finite_horizon_optimal_return(mdp: TabularMDP, horizon: int) -> jax.Array:
    """max_π E[Σ_{t<H} r_t] over all policies of the true states: μᵀ V*_0 by backward induction,
    V*_t(s) = max_a (r(s, a) + Σ_s' P(s'|s, a) V*_{t+1}(s')), V*_H = 0 (undiscounted). -> [] scalar."""
    horizon = _check_horizon(horizon)
    _check_mdp(mdp, discounted=False)

    def step(v_next, _):
        v = jnp.max(mdp.rewards + mdp.transitions @ v_next, axis=-1)
        return v, None

    v0, _ = jax.lax.scan(step, jnp.zeros(mdp.num_states, mdp.rewards.dtype), None, length=horizon)
    return mdp.initial @ v0


def deterministic_observation_policies(observations: jax.Array, num_actions: int) -> jax.Array:
    """Every deterministic policy over observations, as logits [A^K, S, A].

    States with equal observations (K distinct ones among the S rows of `observations` [S, F])
    must take the same action, so there are A^K such policies; each row of the result puts
    logit 0 on its action and −1e4 on the others (probability exactly 1 and 0 in float32).
    """
    check_rank("observations", observations, 2, "[S, F]")
    check_size("num_actions", num_actions)
    _, obs_class = np.unique(np.asarray(observations), axis=0, return_inverse=True)
    obs_class = obs_class.reshape(-1)
    num_classes = int(obs_class.max()) + 1
    grids = np.meshgrid(*[np.arange(num_actions)] * num_classes, indexing="ij")
    choices = np.stack(grids, -1).reshape(-1, num_classes)  # [A^K, K]
    one_hot = np.eye(num_actions)[choices[:, obs_class]]  # [A^K, S, A]
    return jnp.asarray((one_hot - 1.0) * 1e4, jnp.result_type(float))


# ----------------------------------------------------------------------------- linear-quadratic


def _check_gain(env_params, gain) -> jax.Array:
    """gain K [m, n] (B [n, m]) as a float array."""
    n, m = jnp.shape(env_params.B)
    gain = as_array("gain", gain)
    check_floating("gain", gain)
    check_shape("gain", gain, (m, n), "[m, n]: u = K x with B [n, m]")
    return gain


def _check_lqr_policy(env_params, gain, log_std) -> tuple[jax.Array, jax.Array]:
    """(gain K [m, n], log_std [m]) as float arrays."""
    gain = _check_gain(env_params, gain)
    m = jnp.shape(env_params.B)[1]
    log_std = as_array("log_std", log_std)
    check_floating("log_std", log_std)
    check_shape("log_std", log_std, (m,), "[m]")
    return gain, log_std


def lqr_riccati(lqr, env_params, gain: jax.Array) -> jax.Array:
    """The cost-to-go matrices P_t [H + 1, n, n] of u = K x (+ noise) in an `rlpg.envs.LQR`:

        P_H = 0,   P_t = Q + KᵀRK + γ (A + BK)ᵀ P_{t+1} (A + BK)        (Lyapunov backward recursion),

    so that E[Σ_{k=t}^{H−1} γ^{k−t} (x_kᵀQx_k + u_kᵀRu_k) | x_t] = x_tᵀ P_t x_t + c_t.
    `lqr` is the env (unused: the system lives in `env_params`); gain: K [m, n].
    """
    del lqr
    horizon = _check_horizon(env_params.max_steps_in_episode)
    gain = _check_gain(env_params, gain)
    A, B, gamma = env_params.A, env_params.B, env_params.gamma
    closed_loop = A + B @ gain
    stage = env_params.Q + gain.T @ env_params.R @ gain

    def step(p_next, _):
        p = stage + gamma * closed_loop.T @ p_next @ closed_loop
        return p, p

    p_last = jnp.zeros_like(env_params.Q)
    _, ps = jax.lax.scan(step, p_last, None, length=horizon, reverse=True)
    return jnp.concatenate([ps, p_last[None]], axis=0)


def _lqr_noise_costs(env_params, ps: jax.Array, log_std: jax.Array) -> jax.Array:
    """The expected cost each step's noise adds, [H]: tr(RΣ) + γ tr(P_{t+1}(BΣBᵀ + W)), Σ = diag σ²."""
    sigma = jnp.diag(jnp.exp(2.0 * log_std))
    B, gamma = env_params.B, env_params.gamma
    step_noise = B @ sigma @ B.T + env_params.noise_cov
    return jnp.trace(env_params.R @ sigma) + gamma * jnp.einsum("tij,ji->t", ps[1:], step_noise)


def _lqr_offsets(env_params, ps: jax.Array, log_std: jax.Array) -> jax.Array:
    """c_t [H + 1] of the cost-to-go: c_H = 0, c_t = tr(RΣ) + γ (tr(P_{t+1}(BΣBᵀ + W)) + c_{t+1}),
    Σ = diag σ²: the expected cost the action and transition noise add."""
    gamma = env_params.gamma
    noise_costs = _lqr_noise_costs(env_params, ps, log_std)

    def step(c_next, noise_cost):
        c = noise_cost + gamma * c_next
        return c, c

    c_last = jnp.zeros((), noise_costs.dtype)
    _, cs = jax.lax.scan(step, c_last, noise_costs, reverse=True)
    return jnp.concatenate([cs, c_last[None]])


def lqr_value(lqr, env_params, gain: jax.Array, log_std: jax.Array, x: jax.Array, t: int | jax.Array = 0) -> jax.Array:
    """V_t(x) = E[Σ_{k=t}^{H−1} γ^{k−t} r_k | x_t = x] = −(xᵀ P_t x + c_t) for u ~ N(Kx, diag σ²)
    (P_t from `lqr_riccati`, c_t the noise's cost, see `_lqr_offsets`).

    Args:
      lqr: the `rlpg.envs.LQR`. env_params: its `LQRParams`. gain: K [m, n]. log_std: [m].
      x: [..., n] states. t: [] or [...] int steps taken, 0..H (its shape broadcasts with x's [...]).
    Returns:
      [...] values.
    """
    gain, log_std = _check_lqr_policy(env_params, gain, log_std)
    n = jnp.shape(env_params.A)[0]
    x = as_array("x", x)
    check_floating("x", x)
    check_min_rank("x", x, 1, "[..., n]")
    if jnp.shape(x)[-1] != n:
        raise ValueError(f"`x` must have shape [..., n] with the state size n = {n} of env_params.A; got {jnp.shape(x)}.")
    horizon = _check_horizon(env_params.max_steps_in_episode)
    check_index_as_given("t", t, horizon + 1)  # steps taken, 0..H
    t = as_array("t", t)
    check_integer("t", t)
    try:
        jnp.broadcast_shapes(jnp.shape(x)[:-1], jnp.shape(t))
    except ValueError:
        raise ValueError(f"`t` must be a scalar or broadcast with the batch axes of `x` {jnp.shape(x)}; got shape {jnp.shape(t)}.") from None
    check_index("t", t, horizon + 1)
    ps = lqr_riccati(lqr, env_params, gain)
    c = _lqr_offsets(env_params, ps, log_std)
    return -(jnp.einsum("...i,...ij,...j->...", x, ps[t], x) + c[t])


def lqr_expected_return(lqr, env_params, gain: jax.Array, log_std: jax.Array) -> jax.Array:
    """J(K, σ) = E[Σ_{t<H} γ^t r_t] of u ~ N(Kx, diag σ²) in an `rlpg.envs.LQR`, exactly:

        J = −(tr(P_0 (Σ_0 + μ_0 μ_0ᵀ)) + c_0),

    P_0 from the backward Lyapunov recursion (`lqr_riccati`), c_0 the noise's cost (`lqr_value`).
    Differentiable: `jax.grad` gives ∇J, equal to `lqr_policy_gradient`'s closed form.

    Args:
      lqr: the env. env_params: its `LQRParams` (H = max_steps_in_episode, γ = gamma).
      gain: K [m, n] (= policy params["theta"].T). log_std: log σ [m].
    Returns:
      [] scalar.
    """
    gain, log_std = _check_lqr_policy(env_params, gain, log_std)
    ps = lqr_riccati(lqr, env_params, gain)
    c = _lqr_offsets(env_params, ps, log_std)
    second_moment = env_params.initial_cov + jnp.outer(env_params.initial_mean, env_params.initial_mean)
    return -(jnp.trace(ps[0] @ second_moment) + c[0])


def lqr_state_moments(lqr, env_params, gain: jax.Array, log_std: jax.Array) -> jax.Array:
    """M_t = E[x_t x_tᵀ] [H, n, n] under u ~ N(Kx, diag σ²): M_0 = Σ_0 + μ_0μ_0ᵀ,
    M_{t+1} = (A + BK) M_t (A + BK)ᵀ + BΣBᵀ + W (the forward Lyapunov recursion)."""
    del lqr
    gain, log_std = _check_lqr_policy(env_params, gain, log_std)
    horizon = _check_horizon(env_params.max_steps_in_episode)
    closed_loop = env_params.A + env_params.B @ gain
    step_noise = env_params.B @ jnp.diag(jnp.exp(2.0 * log_std)) @ env_params.B.T + env_params.noise_cov

    def step(m, _):
        return closed_loop @ m @ closed_loop.T + step_noise, m

    m0 = env_params.initial_cov + jnp.outer(env_params.initial_mean, env_params.initial_mean)
    _, ms = jax.lax.scan(step, m0, None, length=horizon)
    return ms


def lqr_policy_gradient(lqr, env_params, gain: jax.Array, log_std: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(∂J/∂K [m, n], ∂J/∂log σ [m]) in closed form (the LQR policy-gradient theorem):

        ∂J/∂K     = −2 Σ_{t<H} γ^t [(R + γBᵀP_{t+1}B) K + γ BᵀP_{t+1}A] M_t,
        ∂J/∂log σ = −2 Σ_{t<H} γ^t diag(R + γBᵀP_{t+1}B) σ²,

    with P_t from `lqr_riccati` and M_t = E[x_t x_tᵀ] from `lqr_state_moments` (∂Q_t/∂u at the
    sampled action, averaged over the states the policy visits).
    """
    gain, log_std = _check_lqr_policy(env_params, gain, log_std)
    ps = lqr_riccati(lqr, env_params, gain)[1:]  # P_{t+1}, t = 0..H-1
    ms = lqr_state_moments(lqr, env_params, gain, log_std)
    A, B, R, gamma = env_params.A, env_params.B, env_params.R, env_params.gamma
    discounts = gamma ** jnp.arange(ps.shape[0], dtype=ps.dtype)
    curvature = R + gamma * jnp.einsum("ia,tij,jb->tab", B, ps, B)  # [H, m, m]
    e = curvature @ gain + gamma * jnp.einsum("ia,tij,jk->tak", B, ps, A)  # [H, m, n]
    grad_gain = -2.0 * jnp.einsum("t,tak,tkl->al", discounts, e, ms)
    grad_log_std = -2.0 * jnp.einsum("t,taa->a", discounts, curvature) * jnp.exp(2.0 * log_std)
    return grad_gain, grad_log_std
