"""rlpg.envs.LQR and its exact J(K, σ) (rlpg.exact.lqr_*) against Monte Carlo rollouts of the env,
a hand-expanded one-step case, finite differences in float64 and the closed-form gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import envs, exact, rollout

SYSTEM = dict(
    A=[[1.0, 0.2], [-0.1, 0.9]],
    B=[[0.0], [0.3]],
    Q=[[1.0, 0.2], [0.2, 0.5]],
    R=[[0.3]],
    initial_mean=[1.0, -0.5],
    initial_cov=[[0.2, 0.05], [0.05, 0.1]],
    noise_cov=[[0.02, 0.0], [0.0, 0.05]],
)
GAIN = [[-0.4, -0.8]]
LOG_STD = [-0.7]


def make_lqr(horizon=6, gamma=0.9, **overrides):
    return envs.LQR(**{**SYSTEM, **overrides}, horizon=horizon, gamma=gamma)


def test_expected_return_equals_monte_carlo_of_the_env():
    """Episodes played by the generic `rlpg.rollout` loop in the env: the mean discounted return
    lies within 3 standard errors of the exact J (noise in x_0, actions and transitions, γ < 1)."""
    env = make_lqr()
    params = env.default_params
    policy = env.linear_policy()
    policy_params = {"theta": jnp.asarray(GAIN).T, "log_std": jnp.asarray(LOG_STD)}
    num_episodes, horizon = 20_000, 6
    batch = rollout.reset(jax.random.PRNGKey(0), env, params, num_episodes)
    _, traj = jax.jit(rollout.rollout, static_argnums=(1, 3, 6))(
        jax.random.PRNGKey(1), policy, policy_params, env, params, batch, horizon
    )
    assert bool(traj.truncated[-1].all()) and not bool(traj.done[:-1].any())  # one episode of H steps each
    returns = np.asarray((0.9 ** np.arange(horizon))[:, None] * traj.reward).sum(0)
    exact_j = float(exact.lqr_expected_return(env, params, jnp.asarray(GAIN), jnp.asarray(LOG_STD)))
    stderr = returns.std() / np.sqrt(num_episodes)
    assert abs(returns.mean() - exact_j) < 3 * stderr, (returns.mean(), exact_j, stderr)


def test_one_step_closed_form(x64):
    """H = 1: J = −E[xᵀQx + uᵀRu] = −(tr((Q + KᵀRK) M_0) + tr(RΣ)), expanded by hand."""
    env = make_lqr(horizon=1, gamma=0.5)
    p = env.default_params
    K, log_std = jnp.asarray(GAIN), jnp.asarray(LOG_STD)
    m0 = p.initial_cov + jnp.outer(p.initial_mean, p.initial_mean)
    want = -(jnp.trace((p.Q + K.T @ p.R @ K) @ m0) + jnp.trace(p.R * jnp.exp(2 * log_std)))
    np.testing.assert_allclose(exact.lqr_expected_return(env, p, K, log_std), want, rtol=1e-12)


def test_value_and_moments_agree(x64):
    """Two recursions, one number: −Σ_t γ^t (tr((Q + KᵀRK) M_t) + tr(RΣ)) from the forward
    second moments equals J from the backward cost-to-go, and V_0 averaged over x_0 is J."""
    env = make_lqr(horizon=7, gamma=0.8)
    p = env.default_params
    K, log_std = jnp.asarray(GAIN), jnp.asarray(LOG_STD)
    ms = exact.lqr_state_moments(env, p, K, log_std)
    stage = p.Q + K.T @ p.R @ K
    forward = -sum(0.8**t * (jnp.trace(stage @ ms[t]) + p.R[0, 0] * jnp.exp(2 * log_std[0])) for t in range(7))
    j = exact.lqr_expected_return(env, p, K, log_std)
    np.testing.assert_allclose(forward, j, rtol=1e-10)
    x0 = jax.random.multivariate_normal(jax.random.PRNGKey(0), p.initial_mean, p.initial_cov, (200_000,))
    v0 = exact.lqr_value(env, p, K, log_std, x0)
    np.testing.assert_allclose(v0.mean(), j, rtol=5e-3)
    assert exact.lqr_value(env, p, K, log_std, x0[0], t=7) == 0.0  # nothing left at t = H
    # The system is time-invariant: with t steps taken, V_t is V_0 of the same system over H − t steps.
    for t in (1, 4, 6):
        shorter = make_lqr(horizon=7 - t, gamma=0.8)
        np.testing.assert_allclose(
            exact.lqr_value(env, p, K, log_std, x0[:3], t=t),
            exact.lqr_value(shorter, shorter.default_params, K, log_std, x0[:3]),
            rtol=1e-10,
        )


def central_differences(f, x, h=1e-6):
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(jnp.asarray(x + e)) - f(jnp.asarray(x - e))) / (2 * h)
    return out


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_gradient_autodiff_closed_form_and_finite_differences(x64, gamma):
    """∇J three ways agree in float64: jax.grad of the exact J, the closed-form LQR policy
    gradient (`lqr_policy_gradient`) and central differences of J."""
    env = make_lqr(horizon=5, gamma=gamma)
    p = env.default_params
    K, log_std = jnp.asarray(GAIN), jnp.asarray(LOG_STD)
    J = jax.jit(lambda k, s: exact.lqr_expected_return(env, p, k, s))
    auto_k, auto_s = jax.grad(J, argnums=(0, 1))(K, log_std)
    closed_k, closed_s = exact.lqr_policy_gradient(env, p, K, log_std)
    fd_k = central_differences(lambda k: J(k, log_std), K)
    fd_s = central_differences(lambda s: J(K, s), log_std)
    np.testing.assert_allclose(auto_k, fd_k, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(auto_s, fd_s, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(closed_k, auto_k, rtol=1e-10)
    np.testing.assert_allclose(closed_s, auto_s, rtol=1e-10)


def test_transition_gradients_are_opt_in():
    """As in gymnax: the plain env detaches its step outputs; `with_transition_gradients()` does not."""
    env = make_lqr()
    p = env.default_params
    _, state = env.reset(jax.random.PRNGKey(0), p)

    def next_x(env, u):
        obs, *_ = env.step(jax.random.PRNGKey(1), state, u, p)
        return obs.sum()

    u = jnp.ones((1,))
    assert float(jax.grad(lambda u: next_x(env, u))(u)[0]) == 0.0
    assert float(jax.grad(lambda u: next_x(env.with_transition_gradients(), u))(u)[0]) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(Q=[[1.0, 0.0], [0.0, -1.0]]), "`Q` must be symmetric positive semi-definite"),
        (dict(B=[[0.0, 1.0, 2.0]]), "`B` must have shape"),
        (dict(R=[[1.0, 0.0], [0.0, 1.0]]), "`R` must have shape"),
        (dict(initial_mean=[0.0]), "`initial_mean` must have shape"),
        (dict(horizon=0), "`horizon` must be a positive integer"),
        (dict(gamma=1.5), "`gamma` must lie in"),
    ],
)
def test_bad_arguments_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        make_lqr(**change)


def test_bad_policy_shapes_are_named():
    env = make_lqr()
    with pytest.raises(ValueError, match=r"`gain` must have shape \(1, 2\)"):
        exact.lqr_expected_return(env, env.default_params, jnp.zeros((2, 1)), jnp.zeros(1))
    with pytest.raises(ValueError, match=r"`log_std` must have shape \(1,\)"):
        exact.lqr_expected_return(env, env.default_params, jnp.zeros((1, 2)), jnp.zeros(2))
