"""Natural policy gradient: the Fisher-vector product equals the explicit F·v, CG solves, the step
meets the trust region, NPG learns CartPole, seeds and sweeps, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from rlpg import algos, estimators, policies
from rlpg.algos import npg


def seeds(n):
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(n))


def _small_policy_batch(seed=0, n=12):
    policy = policies.mlp_categorical((3,), 4, (5,))
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    theta, unravel = ravel_pytree(policy.init(k[0]))
    theta = theta + 0.5 * jax.random.normal(k[1], theta.shape)  # away from the near-uniform init
    obs = jax.random.normal(k[2], (n, 3))
    actions = policy.distribution.sample(k[2], policy.apply(unravel(theta), obs))

    def log_probs(theta):
        return policy.distribution.log_prob(policy.apply(unravel(theta), obs), actions)

    def log_prob_one(theta, o, a):
        return policy.distribution.log_prob(policy.apply(unravel(theta), o), a)

    scores = jax.jit(lambda th: estimators.per_sample_grads(log_prob_one, th, obs, actions))(theta)  # [N, P]
    return theta, log_probs, scores


def test_fisher_vector_product_equals_explicit_fisher_times_v(x64):
    theta, log_probs, scores = _small_policy_batch()
    fisher = np.asarray(scores).T @ np.asarray(scores) / scores.shape[0]
    v = jax.random.normal(jax.random.PRNGKey(5), theta.shape)
    fv = jax.jit(lambda v: estimators.fisher_vector_product(log_probs, theta, v))(v)
    np.testing.assert_allclose(fv, fisher @ np.asarray(v), rtol=1e-10, atol=1e-12)


def test_conjugate_gradient_solves_and_the_step_has_kl_delta(x64):
    theta, log_probs, scores = _small_policy_batch(seed=1)
    P = theta.shape[0]
    fisher = np.asarray(scores).T @ np.asarray(scores) / scores.shape[0] + 0.1 * np.eye(P)
    g = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (P,)))
    x = estimators.conjugate_gradient(lambda v: jnp.asarray(fisher) @ v, jnp.asarray(g), iters=4 * P)
    np.testing.assert_allclose(x, np.linalg.solve(fisher, g), rtol=1e-6, atol=1e-8)
    fvp = lambda v: estimators.fisher_vector_product(log_probs, theta, v) + 0.1 * v  # noqa: E731
    step = np.asarray(jax.jit(lambda g: estimators.natural_gradient_step(g, fvp, 0.01, 4 * P))(jnp.asarray(g)))
    np.testing.assert_allclose(0.5 * step @ fisher @ step, 0.01, rtol=1e-6, atol=1e-6)  # ½ Δθᵀ F Δθ = δ
    np.testing.assert_allclose(step / np.linalg.norm(step), np.linalg.solve(fisher, g) / np.linalg.norm(np.linalg.solve(fisher, g)), atol=1e-6)


def test_cartpole_learns_over_three_seeds():
    """Defaults but 100k env steps: median final greedy return >= 300 over 3 seeds (random: ~20)."""
    config = npg.Config(total_timesteps=100_000)
    algorithm = npg.make_algorithm(config)
    state, metrics = jax.jit(algos.over_seeds(algos.train_fn(algorithm)))(seeds(3))
    evaluate = algos.make_evaluate(algorithm, 16)
    returns = np.asarray(evaluate(jax.random.split(jax.random.PRNGKey(1234), 3), state.params["policy"])).mean(axis=1)
    print("NPG CartPole-v1 final greedy returns per seed:", returns)
    assert np.median(returns) >= 300
    kl = np.asarray(metrics["kl"])
    assert np.all(kl > 0) and np.median(kl) < 3 * config.max_kl  # steps stay near the trust region


@pytest.fixture(scope="module")
def small():
    config = npg.Config(num_envs=4, num_steps=16, total_timesteps=4 * 16 * 4, hidden=(8,), cg_iters=5, value_steps=2)
    return config, npg.make_train(config)


def test_swept_seeds_equal_lone_runs_bit_for_bit(small):
    """Two seeds × two trust regions in one program (lax.map); each equals its run alone, and
    the step length grows as sqrt(δ)."""
    _, train = small
    keys, max_kl = seeds(2), jnp.array([1e-4, 1e-2])
    batch_state, batch_metrics = jax.jit(algos.over_seeds(train))(keys, {"max_kl": max_kl})
    alone_state, alone_metrics = jax.jit(train)(keys[1], {"max_kl": max_kl[1]})
    for name in batch_metrics:
        np.testing.assert_array_equal(batch_metrics[name][1], alone_metrics[name], err_msg=name)
    jax.tree.map(lambda b, a: np.testing.assert_array_equal(b[1], a), batch_state.params, alone_state.params)
    steps = np.asarray(batch_metrics["step_norm"]).mean(axis=1)
    np.testing.assert_allclose(steps[1] / steps[0], 10.0, rtol=0.5)  # ‖Δθ‖ ∝ sqrt(δ)


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(cg_iters=0), "`cg_iters` must be a positive integer"),
        (dict(max_kl=0.0), "`max_kl` must be > 0"),
        (dict(damping=-1.0), "`damping` must lie in"),
        (dict(value_steps=-2), "`value_steps`"),
    ],
)
def test_bad_config_names_the_field(fields, words):
    with pytest.raises(ValueError, match=words):
        npg.make_train(npg.Config(**fields))


def test_conjugate_gradient_is_exact_after_p_steps_and_one_step_is_steepest_descent(x64):
    """CG on a P × P SPD matrix with P distinct eigenvalues solves A x = b in exactly P steps (in
    exact arithmetic; 1e-10 in float64), and its first step is the exact line search along b,
    x₁ = (bᵀb / bᵀAb) b. Guards CG's recurrences themselves: the NPG test above runs 4P steps, which
    a wrong search direction (r − β p) or a lost iteration still converges in; these fail on both."""
    P = 8
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(P, P)))
    A = q @ np.diag([0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 40.0]) @ q.T
    b = np.random.default_rng(1).normal(size=P)
    matvec = lambda v: jnp.asarray(A) @ v  # noqa: E731
    x = np.asarray(estimators.conjugate_gradient(matvec, jnp.asarray(b), iters=P))
    exact = np.linalg.solve(A, b)
    assert np.linalg.norm(x - exact) <= 1e-10 * np.linalg.norm(exact)
    x1 = estimators.conjugate_gradient(matvec, jnp.asarray(b), iters=1)
    np.testing.assert_allclose(x1, (b @ b) / (b @ A @ b) * b, rtol=1e-12, atol=1e-14)
