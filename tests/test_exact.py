"""rlpg.exact against ground truth: the policy gradient theorem, finite differences, the
Bellman equation, naive Python loops over time and over trajectories, and closed-form bandits."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import exact as E

# Jitted once per shape: eager autodiff through a solve dispatches many small programs.
expected_return = jax.jit(E.expected_return)
policy_gradient = jax.jit(E.policy_gradient)
policy_gradient_theorem = jax.jit(E.policy_gradient_theorem)
features_expected_return = jax.jit(E.features_expected_return)
features_policy_gradient = jax.jit(E.features_policy_gradient)
value_function = jax.jit(E.value_function)
q_function = jax.jit(E.q_function)
discounted_state_distribution = jax.jit(E.discounted_state_distribution)
finite_horizon_expected_return = jax.jit(E.finite_horizon_expected_return, static_argnames="horizon")
finite_horizon_policy_gradient = jax.jit(E.finite_horizon_policy_gradient, static_argnames="horizon")

# (num_states, num_actions, seed): a few sizes, shared by the tests so compiled programs are reused.
CASES = [(2, 2, 0), (3, 4, 1), (5, 2, 2), (3, 4, 3)]


def numpy_mdp(num_states, num_actions, seed, gamma=0.9):
    """A random float64 MDP from numpy (independent of rlpg.exact.random_mdp) and random logits."""
    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.full(num_states, 0.5), size=(num_states, num_actions))
    rewards = rng.normal(size=(num_states, num_actions))
    initial = rng.dirichlet(np.ones(num_states))
    logits = 2.0 * rng.normal(size=(num_states, num_actions))
    return E.tabular_mdp(transitions, rewards, initial, gamma), jnp.asarray(logits)


def central_differences(f, x, h=1e-6):
    """∂f/∂x[i] ≈ (f(x + h e_i) − f(x − h e_i)) / 2h for every entry of x (float64)."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        grad[i] = (float(f(jnp.asarray(x + e))) - float(f(jnp.asarray(x - e)))) / (2 * h)
    return grad


def chain(mdp, logits):
    """(π, P_π, r_π) in numpy."""
    logits = np.asarray(logits)
    pi = np.exp(logits - logits.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)
    p_pi = np.einsum("sa,sat->st", pi, np.asarray(mdp.transitions))
    r_pi = (pi * np.asarray(mdp.rewards)).sum(-1)
    return pi, p_pi, r_pi


# ----------------------------------------------------------------------------- discounted


@pytest.mark.parametrize("num_states, num_actions, seed", CASES)
def test_autodiff_gradient_equals_policy_gradient_theorem(x64, num_states, num_actions, seed):
    mdp, logits = numpy_mdp(num_states, num_actions, seed)
    grad = policy_gradient(mdp, logits)
    assert grad.shape == (num_states, num_actions) and grad.dtype == jnp.float64
    np.testing.assert_allclose(grad, policy_gradient_theorem(mdp, logits), rtol=1e-8, atol=1e-8)
    # Softmax logits are shift-invariant per state: each row of the gradient sums to 0.
    np.testing.assert_allclose(np.asarray(grad).sum(-1), 0.0, atol=1e-10)


@pytest.mark.parametrize("num_states, num_actions, seed", CASES[:3])
def test_policy_gradient_equals_finite_differences(x64, num_states, num_actions, seed):
    mdp, logits = numpy_mdp(num_states, num_actions, seed)
    fd = central_differences(lambda l: expected_return(mdp, l), logits)
    np.testing.assert_allclose(policy_gradient(mdp, logits), fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_states, num_actions, seed", CASES[:3])
def test_values_and_state_distribution_against_naive(x64, num_states, num_actions, seed):
    mdp, logits = numpy_mdp(num_states, num_actions, seed)
    gamma = float(mdp.gamma)
    pi, p_pi, r_pi = chain(mdp, logits)
    v = np.asarray(value_function(mdp, logits))
    q = np.asarray(q_function(mdp, logits))
    d = np.asarray(discounted_state_distribution(mdp, logits))
    # Bellman equations: V = r_π + γ P_π V, Q = r + γ P V, V = Σ_a π Q.
    np.testing.assert_allclose(v, r_pi + gamma * p_pi @ v, atol=1e-12)
    np.testing.assert_allclose(q, np.asarray(mdp.rewards) + gamma * np.asarray(mdp.transitions) @ v, atol=1e-12)
    np.testing.assert_allclose((pi * q).sum(-1), v, atol=1e-12)
    # Truncated series: V = Σ_t γ^t P_π^t r_π, dᵀ = (1 − γ) Σ_t γ^t μᵀ P_π^t (γ^400 < 1e-18).
    v_naive, d_naive = np.zeros(num_states), np.zeros(num_states)
    term, mu_t = r_pi.copy(), np.asarray(mdp.initial).copy()
    for t in range(400):
        v_naive += gamma**t * term
        d_naive += (1 - gamma) * gamma**t * mu_t
        term, mu_t = p_pi @ term, mu_t @ p_pi
    np.testing.assert_allclose(v, v_naive, atol=1e-12)
    np.testing.assert_allclose(d, d_naive, atol=1e-12)
    np.testing.assert_allclose(d.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(expected_return(mdp, logits), np.asarray(mdp.initial) @ v_naive, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9])
def test_bandit_closed_form(x64, gamma):
    """One state that loops on itself: J = r_π / (1 − γ), ∇J = π ⊙ (r − r_π) / (1 − γ)."""
    r = np.array([1.0, -0.5, 2.0])
    logits = jnp.array([[0.3, -1.0, 0.2]])
    mdp = E.tabular_mdp(np.ones((1, 3, 1)), r[None], np.ones(1), gamma)
    pi = np.exp(logits[0]) / np.exp(logits[0]).sum()
    r_pi = pi @ r
    np.testing.assert_allclose(expected_return(mdp, logits), r_pi / (1 - gamma), rtol=1e-12)
    np.testing.assert_allclose(value_function(mdp, logits), [r_pi / (1 - gamma)], rtol=1e-12)
    np.testing.assert_allclose(discounted_state_distribution(mdp, logits), [1.0], rtol=1e-12)
    expected_grad = pi * (r - r_pi) / (1 - gamma)
    np.testing.assert_allclose(policy_gradient(mdp, logits)[0], expected_grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(policy_gradient_theorem(mdp, logits)[0], expected_grad, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- features


@pytest.mark.parametrize("num_states, num_actions, seed", CASES[:2])
def test_one_hot_features_equal_tabular(x64, num_states, num_actions, seed):
    mdp, logits = numpy_mdp(num_states, num_actions, seed)
    phi = jnp.eye(num_states * num_actions).reshape(num_states, num_actions, -1)
    theta = logits.reshape(-1)
    np.testing.assert_allclose(features_expected_return(mdp, theta, phi), expected_return(mdp, logits), rtol=1e-12)
    np.testing.assert_allclose(
        features_policy_gradient(mdp, theta, phi), policy_gradient(mdp, logits).reshape(-1), rtol=1e-10, atol=1e-12
    )


def test_aliased_features_gradient(x64):
    """States 0 and 1 share their features, so one θ acts in both; ∇_θ = Σ φ ∂J/∂logits = finite differences."""
    mdp, _ = numpy_mdp(3, 2, seed=4)
    rng = np.random.default_rng(5)
    phi = rng.normal(size=(3, 2, 3))
    phi[1] = phi[0]
    phi = jnp.asarray(phi)
    theta = jnp.asarray(rng.normal(size=3))
    grad = features_policy_gradient(mdp, theta, phi)
    assert grad.shape == (3,)
    fd = central_differences(lambda t: features_expected_return(mdp, t, phi), theta)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)
    chain_rule = jnp.einsum("saf,sa->f", phi, policy_gradient(mdp, phi @ theta))
    np.testing.assert_allclose(grad, chain_rule, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- finite horizon


def enumerate_trajectories(mdp, logits, horizon):
    """E[Σ_{t<H} r_t] as a sum over every state-action sequence of length H (tiny MDPs only)."""
    pi, _, _ = chain(mdp, logits)
    P, r, mu = (np.asarray(x) for x in (mdp.transitions, mdp.rewards, mdp.initial))
    S, A = r.shape
    total = 0.0
    if horizon == 0:
        return total
    for states in itertools.product(range(S), repeat=horizon):
        for actions in itertools.product(range(A), repeat=horizon):
            prob = mu[states[0]]
            for t in range(horizon):
                prob *= pi[states[t], actions[t]]
                if t + 1 < horizon:
                    prob *= P[states[t], actions[t], states[t + 1]]
            total += prob * sum(r[states[t], actions[t]] for t in range(horizon))
    return total


@pytest.mark.parametrize("horizon", [0, 1, 2, 3])
def test_finite_horizon_matches_naive_loops(x64, horizon):
    mdp, logits = numpy_mdp(2, 2, seed=6, gamma=0.5)  # γ is ignored: the sums are undiscounted
    _, p_pi, r_pi = chain(mdp, logits)
    mu_t, forward = np.asarray(mdp.initial), 0.0
    for _ in range(horizon):  # J = Σ_t μ_tᵀ r_π with μ_{t+1} = P_πᵀ μ_t
        forward += mu_t @ r_pi
        mu_t = mu_t @ p_pi
    j = finite_horizon_expected_return(mdp, logits, horizon)
    np.testing.assert_allclose(j, forward, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(j, enumerate_trajectories(mdp, logits, horizon), rtol=1e-12, atol=1e-12)


def test_finite_horizon_gradient_equals_finite_differences(x64):
    mdp, logits = numpy_mdp(3, 4, seed=7)
    grad = finite_horizon_policy_gradient(mdp, logits, 5)
    fd = central_differences(lambda l: finite_horizon_expected_return(mdp, l, 5), logits)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


def test_finite_horizon_allows_gamma_one(x64):
    mdp = E.tabular_mdp(np.ones((1, 2, 1)), [[1.0, 3.0]], [1.0], gamma=1.0, discounted=False)
    logits = jnp.zeros((1, 2))
    np.testing.assert_allclose(finite_horizon_expected_return(mdp, logits, 4), 4 * 2.0)
    np.testing.assert_allclose(finite_horizon_policy_gradient(mdp, logits, 4), [[-2.0, 2.0]])


# ----------------------------------------------------------------------------- random MDPs, jit, vmap


def test_random_mdp_is_valid_and_deterministic():
    key = jax.random.PRNGKey(0)
    mdp = E.random_mdp(key, 4, 3, gamma=0.8).validate()
    assert mdp.transitions.shape == (4, 3, 4) and mdp.rewards.shape == (4, 3) and mdp.initial.shape == (4,)
    np.testing.assert_allclose(mdp.gamma, 0.8)
    for a, b in zip(jax.tree.leaves(mdp), jax.tree.leaves(E.random_mdp(key, 4, 3, gamma=0.8))):
        np.testing.assert_array_equal(a, b)
    other = E.random_mdp(jax.random.PRNGKey(1), 4, 3)
    assert not np.array_equal(mdp.transitions, other.transitions)


def test_gamma_is_traced_under_vmap(x64):
    mdp, logits = numpy_mdp(3, 4, seed=1)
    gammas = jnp.array([0.0, 0.5, 0.9])
    swept = jax.jit(jax.vmap(lambda g: E.expected_return(mdp.replace(gamma=g), logits)))(gammas)
    for g, j in zip(gammas, swept):
        np.testing.assert_allclose(j, expected_return(mdp.replace(gamma=g), logits), rtol=1e-12)
    np.testing.assert_allclose(swept[0], np.asarray(mdp.initial) @ chain(mdp, logits)[2], rtol=1e-12)  # γ = 0: μᵀ r_π


# ----------------------------------------------------------------------------- bad input


def _ok():
    return np.full((2, 3, 2), 0.5), np.zeros((2, 3)), np.array([0.5, 0.5])


def _bad_rows():
    p, r, mu = _ok()
    p[1, 2] = [0.7, 0.2]
    return E.tabular_mdp(p, r, mu)


def _negative_probability():
    p, r, mu = _ok()
    p[0, 0] = [1.5, -0.5]  # sums to 1, but is no distribution
    return E.tabular_mdp(p, r, mu)


def _mdp():
    return E.tabular_mdp(*_ok())


@pytest.mark.parametrize(
    "call, error, words",
    [
        (_bad_rows, ValueError, r"`transitions` must sum to 1.*transitions\[1, 2, :\] summing to 0.9"),
        (_negative_probability, ValueError, "`transitions` must be non-negative"),
        (lambda: E.tabular_mdp(np.full((2, 3, 3), 1 / 3), *_ok()[1:]), ValueError, r"`transitions` must have shape \(2, 3, 2\).*got \(2, 3, 3\)"),
        (lambda: E.tabular_mdp(np.full((2, 3), 0.5), *_ok()[1:]), ValueError, "`transitions` must have rank 3"),
        (lambda: E.tabular_mdp(_ok()[0], np.zeros((3, 2)), _ok()[2]), ValueError, r"`rewards` must have shape \(2, 3\).*got \(3, 2\)"),
        (lambda: E.tabular_mdp(_ok()[0], np.full((2, 3), np.nan), _ok()[2]), ValueError, "`rewards` must be finite"),
        (lambda: E.tabular_mdp(*_ok()[:2], np.array([1.0, 0.0, 0.0])), ValueError, r"`initial` must have shape \(2,\)"),
        (lambda: E.tabular_mdp(*_ok()[:2], np.array([0.5, 0.4])), ValueError, "`initial` must sum to 1; got 0.9"),
        (lambda: E.tabular_mdp(*_ok(), gamma=1.0), ValueError, r"`gamma` must lie in \[0, 1\) for the discounted objective; got 1.0"),
        (lambda: E.tabular_mdp(*_ok(), gamma=1.5, discounted=False), ValueError, r"`gamma` must lie in \[0.0, 1.0\]; got 1.5"),
        (lambda: E.tabular_mdp(*_ok(), gamma=[0.9, 0.8]), ValueError, "`gamma` must have rank 0"),
        (lambda: E.value_function(_mdp().replace(gamma=jnp.asarray(1.0)), jnp.zeros((2, 3))), ValueError, r"`gamma` must lie in \[0, 1\)"),
        (lambda: E.expected_return(_mdp(), jnp.zeros((3, 2))), ValueError, r"`logits` must have shape \(2, 3\)"),
        (lambda: E.policy_gradient(_mdp(), jnp.zeros(6)), ValueError, "`logits` must have rank 2"),
        (lambda: E.value_function(_mdp(), jnp.zeros((2, 3), jnp.int32)), TypeError, "`logits`"),
        (lambda: E.features_expected_return(_mdp(), jnp.zeros(4), jnp.zeros((3, 3, 4))), ValueError, r"`phi` must have shape \(2, 3, 4\)"),
        (lambda: E.features_policy_gradient(_mdp(), jnp.zeros(5), jnp.zeros((2, 3, 4))), ValueError, "`theta`"),
        (lambda: E.finite_horizon_expected_return(_mdp(), jnp.zeros((2, 3)), -1), ValueError, "`horizon` must be >= 0; got -1"),
        (lambda: E.finite_horizon_expected_return(_mdp(), jnp.zeros((2, 3)), 2.5), ValueError, "`horizon` must be a static Python int"),
        (lambda: E.value_function("mdp", jnp.zeros((2, 3))), TypeError, "`mdp` must be a TabularMDP"),
    ],
)
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_finite_horizon_discount_matches_naive_loops(x64):
    """With discount γ < 1 (mdp.gamma ignored): V_t = r_π + γ P_π V_{t+1} row by row (a backward
    loop), and J_H = Σ_{t<H} γ^t μ_tᵀ r_π (a forward loop). Fails when the discount is dropped
    from the backward induction (every other finite-horizon test runs with γ = 1)."""
    mdp, logits = numpy_mdp(3, 2, seed=8, gamma=0.9)
    _, p_pi, r_pi = chain(mdp, logits)
    horizon, discount = 4, 0.6
    rows = [np.zeros(3)]
    for _ in range(horizon):
        rows.append(r_pi + discount * p_pi @ rows[-1])
    got = E.finite_horizon_values(mdp, logits, horizon, discount)
    np.testing.assert_allclose(got, np.stack(rows[::-1]), rtol=1e-12, atol=1e-12)
    mu_t, forward = np.asarray(mdp.initial), 0.0
    for t in range(horizon):
        forward += discount**t * mu_t @ r_pi
        mu_t = mu_t @ p_pi
    np.testing.assert_allclose(finite_horizon_expected_return(mdp, logits, horizon, discount), forward, rtol=1e-12)


def test_finite_horizon_optimal_return_equals_the_best_of_all_deterministic_policies(x64):
    """max_π E[Σ_{t<H} r_t] equals the best return over every deterministic time-dependent policy
    (all (A^S)^H of them on 2 states, 2 actions, H = 3, each evaluated by a forward loop), and
    exceeds the uniform policy's. Fails on an average over actions in place of the max."""
    mdp, _ = numpy_mdp(2, 2, seed=9)
    P, r, mu = (np.asarray(x) for x in (mdp.transitions, mdp.rewards, mdp.initial))
    horizon, best = 3, -np.inf
    for choice in itertools.product(itertools.product(range(2), repeat=2), repeat=horizon):  # choice[t][s] = a
        mu_t, total = mu, 0.0
        for t in range(horizon):
            acts = np.array(choice[t])
            total += mu_t @ r[np.arange(2), acts]
            mu_t = mu_t @ P[np.arange(2), acts]
        best = max(best, total)
    got = E.finite_horizon_optimal_return(mdp, horizon)
    np.testing.assert_allclose(got, best, rtol=1e-12)
    assert got > finite_horizon_expected_return(mdp, jnp.zeros((2, 2)), horizon)
