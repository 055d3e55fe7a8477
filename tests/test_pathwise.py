"""rlpg.pathwise against ground truth: central finite differences of the same reparameterized
episode (float64) on LQR and Pendulum-v1, the exact LQR gradient (pathwise, score-function and
mixed means within 3 standard errors), a naive windowed reference for the truncated gradient,
and gymnax's auto-reset."""

import gymnax
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import envs, exact, pathwise, policies

HORIZON, GAMMA = 6, 0.9


def make_lqr(**overrides):
    system = dict(
        A=[[1.0, 0.2], [-0.1, 0.9]], B=[[0.0], [0.3]], Q=[[1.0, 0.2], [0.2, 0.5]], R=[[0.3]],
        initial_mean=[1.0, -0.5], initial_cov=[[0.2, 0.05], [0.05, 0.1]], noise_cov=[[0.02, 0.0], [0.0, 0.05]],
        horizon=HORIZON, gamma=GAMMA,
    )  # fmt: skip
    return envs.LQR(**{**system, **overrides}).with_transition_gradients()


def lqr_params():
    return {"theta": jnp.asarray([[-0.4], [-0.8]]), "log_std": jnp.asarray([-0.7])}


def directional_fd(f, params, direction, h=1e-6):
    plus = jax.tree.map(lambda p, d: p + h * d, params, direction)
    minus = jax.tree.map(lambda p, d: p - h * d, params, direction)
    return (f(plus) - f(minus)) / (2 * h)


def random_direction(key, params):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def check_against_finite_differences(f, params, num_directions=3):
    grad = jax.grad(f)(params)
    for i in range(num_directions):
        v = random_direction(jax.random.PRNGKey(100 + i), params)
        np.testing.assert_allclose(dot(grad, v), directional_fd(f, params, v), rtol=1e-5, atol=1e-7)


def test_lqr_pathwise_gradient_equals_finite_differences(x64):
    env = make_lqr()
    policy = env.linear_policy()
    f = jax.jit(lambda prm: pathwise.rollout_return(jax.random.PRNGKey(3), policy, prm, env, env.default_params, HORIZON, GAMMA))
    check_against_finite_differences(f, lqr_params())


def test_pendulum_pathwise_gradient_equals_finite_differences(x64):
    """Through gymnax's own Pendulum-v1 dynamics (sin, clipping of speed and torque, angle wrap)."""
    env, env_params = gymnax.make("Pendulum-v1")
    env = env.with_transition_gradients()
    # Linear in tanh features of the observation (the MLP policies compute in float32).
    policy = policies.linear_gaussian(jnp.tanh, 3, 1, init_log_std=-1.0)
    params = {"theta": jnp.array([[0.5], [-1.0], [-0.3]]), "log_std": jnp.array([-1.0])}
    f = jax.jit(lambda prm: pathwise.rollout_return(jax.random.PRNGKey(4), policy, prm, env, env_params, 5, 0.99))
    grad = jax.grad(f)(params)
    check_against_finite_differences(f, params)
    # Without transition gradients only the reward's direct dependence on the torque is left.
    plain = jax.jit(lambda prm: pathwise.rollout_return(jax.random.PRNGKey(4), policy, prm, gymnax.make("Pendulum-v1")[0], env_params, 5, 0.99))
    assert not np.allclose(dot(jax.grad(plain)(params), grad), dot(grad, grad))


@pytest.fixture(scope="module")
def lqr_estimates():
    """Per-episode pathwise and score-function gradients of 4096 episodes on LQR, computed as
    a user estimating from 16 episodes does (256 calls of `per_episode_gradients`, vmapped), and
    the truth."""
    env = make_lqr()
    policy, p, params = env.linear_policy(), env.default_params, lqr_params()
    keys = jax.random.split(jax.random.PRNGKey(7), 4096).reshape(256, 16, -1)

    batches = jax.jit(jax.vmap(lambda k: pathwise.per_episode_gradients(k, policy, params, env, p, HORIZON, GAMMA)))(keys)
    pw, sf, returns = jax.tree.map(lambda x: x.reshape((4096,) + x.shape[2:]), (batches["pathwise"], batches["score"], batches["return"]))
    grad_k, grad_s = exact.lqr_policy_gradient(env, p, params["theta"].T, params["log_std"])
    truth = {"theta": grad_k.T, "log_std": grad_s}
    j = exact.lqr_expected_return(env, p, params["theta"].T, params["log_std"])
    return pw, sf, returns, truth, j


def within_3_standard_errors(samples, truth, num_standard_errors=3):
    for name in truth:
        x = np.asarray(samples[name]).reshape(samples[name].shape[0], -1)
        mean, stderr = x.mean(0), x.std(0) / np.sqrt(x.shape[0])
        want = np.asarray(truth[name]).reshape(-1)
        assert np.all(np.abs(mean - want) < num_standard_errors * stderr + 1e-6), (name, mean, want, stderr)


def test_pathwise_mean_equals_exact_gradient(lqr_estimates):
    pw, _, returns, truth, j = lqr_estimates
    within_3_standard_errors(pw, truth)
    assert abs(returns.mean() - j) < 3 * returns.std() / np.sqrt(returns.size)


def test_score_function_mean_equals_exact_gradient(lqr_estimates):
    _, sf, _, truth, _ = lqr_estimates
    within_3_standard_errors(sf, truth)


def test_mixed_estimator_is_unbiased(lqr_estimates):
    """Many independent mixtures of 16 episodes each: their mean is within 3 SE of the exact ∇J,
    and on LQR (smooth, short H) the mixture is at least as precise as score-function alone."""
    pw, sf, _, truth, _ = lqr_estimates
    batches = jax.tree.map(lambda x: x.reshape((256, 16) + x.shape[1:]), (pw, sf))
    mixed = jax.vmap(pathwise.mixed_gradient)(*batches)
    within_3_standard_errors(mixed, truth)
    sf_means = jax.tree.map(lambda x: x.mean(1), batches[1])
    for name in truth:
        assert float(mixed[name].var(0).sum()) < float(sf_means[name].var(0).sum())


def test_score_baselines_stay_within_their_half(x64):
    """`mixed_gradient` is unbiased only if its two halves are independent: an episode's score
    gradient must not depend on the other half's episodes (their keys changed: the first half's
    samples stay, the second half's change). A baseline over all N (baseline_groups=1) fails this."""
    env = make_lqr()
    policy, p, params = env.linear_policy(), env.default_params, lqr_params()
    keys = jax.random.split(jax.random.PRNGKey(11), 8)
    other = keys.at[4:].set(jax.random.split(jax.random.PRNGKey(12), 4))
    score = jax.jit(lambda k, groups: pathwise.per_episode_gradients(k, policy, params, env, p, HORIZON, GAMMA, baseline_groups=groups)["score"],
                    static_argnums=1)
    for groups, first_half_moves in ((2, False), (1, True)):
        before, after = score(keys, groups)["theta"], score(other, groups)["theta"]
        assert np.allclose(before[:4], after[:4], rtol=1e-12, atol=0) != first_half_moves, groups
        assert not np.allclose(before[4:], after[4:])
    for groups in (0, 3, 8):
        with pytest.raises(ValueError, match=f"`baseline_groups` must split the N = 8 episodes into equal groups of at least 2; got {groups}"):
            pathwise.per_episode_gradients(keys, policy, params, env, p, HORIZON, GAMMA, baseline_groups=groups)


def test_mixed_estimator_of_four_episodes_is_unbiased(x64):
    """Where a baseline shared across the halves biases the mixture most: N = 4 episodes on a
    1-D LQR (H = 1), 100,000 mixtures, mean within 4 standard errors of the exact ∇J. With the
    baseline over all 4 (baseline_groups=1) the mean is 6% below, about 11 standard errors."""
    lqr = envs.LQR(A=[[1.0]], B=[[1.0]], Q=[[1.0]], R=[[1.0]], initial_mean=[2.0], initial_cov=[[1.0]], noise_cov=[[0.5]], horizon=1)
    env, p, policy = lqr.with_transition_gradients(), lqr.default_params, lqr.linear_policy()
    params = {"theta": jnp.array([[-0.3]]), "log_std": jnp.array([0.0])}
    grad_k, grad_s = exact.lqr_policy_gradient(lqr, p, params["theta"].T, params["log_std"])
    keys = jax.random.split(jax.random.PRNGKey(3), 400_000).reshape(100_000, 4, -1)

    def mixed(k):
        out = pathwise.per_episode_gradients(k, policy, params, env, p, 1, 1.0)
        return pathwise.mixed_gradient(out["pathwise"], out["score"])

    within_3_standard_errors(jax.jit(jax.vmap(mixed))(keys), {"theta": grad_k.T, "log_std": grad_s}, num_standard_errors=4)


def test_inverse_variance_weights():
    """w = Var_sf / (Var_pw + Var_sf): all weight on the estimate with no spread."""
    p = jnp.array([[1.0, 0.0], [3.0, 0.0]])
    s = jnp.array([[0.0, 1.0], [0.0, 5.0]])
    np.testing.assert_allclose(pathwise.inverse_variance_weights(p, s), [0.0, 1.0])
    with pytest.raises(ValueError, match="even number N >= 4"):
        pathwise.mixed_gradient(p, s)


def test_truncated_gradient_equals_naive_windows(x64):
    """Deterministic LQR (no noise anywhere): the gradient with horizon h equals the finite
    differences of Σ_windows Σ_{t∈w} γ^t r_t with each window's first state held fixed at the
    state the unperturbed policy reached (a naive loop)."""
    zero = [[0.0, 0.0], [0.0, 0.0]]
    env = make_lqr(initial_cov=zero, noise_cov=zero)
    p = env.default_params
    policy = env.linear_policy()
    params = {"theta": jnp.asarray([[-0.4], [-0.8]]), "log_std": jnp.asarray([-40.0])}  # σ ~ 4e-18
    h = 4
    K0 = np.asarray(params["theta"]).T
    A, B, Q, R = (np.asarray(m) for m in (p.A, p.B, p.Q, p.R))

    def states_under(K):
        xs, x = [], np.asarray(p.initial_mean)
        for _ in range(HORIZON):
            xs.append(x)
            x = A @ x + B @ (K @ x)
        return xs

    starts = states_under(K0)

    def windowed(K):
        total = 0.0
        for t in range(HORIZON):
            x = starts[t] if t % h == 0 else x
            u = K @ x
            total += GAMMA**t * -(x @ Q @ x + u @ R @ u)
            x = A @ x + B @ u
        return total

    want = central_differences_matrix(windowed, K0)
    grad = jax.grad(lambda prm: pathwise.rollout_return(jax.random.PRNGKey(0), policy, prm, env, p, HORIZON, GAMMA, gradient_horizon=h))(params)
    np.testing.assert_allclose(grad["theta"].T, want, rtol=1e-6, atol=1e-8)
    full = jax.grad(lambda prm: pathwise.rollout_return(jax.random.PRNGKey(0), policy, prm, env, p, HORIZON, GAMMA))(params)
    assert not np.allclose(full["theta"], grad["theta"])  # the cut matters


def central_differences_matrix(f, x, eps=1e-6):
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        out[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return out


def test_value_bootstrap_changes_only_the_gradient(x64):
    """With a critic at the cut the value is still R, and the gradient gains γ^c ∇V(s_c)."""
    env = make_lqr()
    p, policy, params = env.default_params, env.linear_policy(), lqr_params()
    key = jax.random.PRNGKey(5)

    def value_fn(obs):
        return -jnp.sum(obs**2)

    plain = lambda prm: pathwise.rollout_return(key, policy, prm, env, p, HORIZON, GAMMA, gradient_horizon=3)
    boot = lambda prm: pathwise.rollout_return(key, policy, prm, env, p, HORIZON, GAMMA, gradient_horizon=3, value_fn=value_fn)
    (plain_value, plain_grad), (boot_value, boot_grad) = jax.jit(
        lambda prm: (jax.value_and_grad(plain)(prm), jax.value_and_grad(boot)(prm))
    )(params)
    np.testing.assert_allclose(plain_value, boot_value, rtol=1e-12)

    def first_window_value(prm):  # the critic's term alone: γ^3 V(s_3) differentiated through the first window
        reset_key, run_key = jax.random.split(key)
        _, steps = pathwise.unroll(run_key, policy, prm, env, p, *env.reset(reset_key, p), 3)
        return GAMMA**3 * value_fn(steps["next_obs"][-1])

    added = jax.tree.map(jnp.subtract, boot_grad, plain_grad)
    np.testing.assert_allclose(added["theta"], jax.grad(first_window_value)(params)["theta"], rtol=1e-8)


def test_episode_end_stops_the_return_and_the_gradient(x64):
    """Pendulum with a 3-step time limit and H = 6: R counts the first episode only, and its
    gradient equals that of the 3-step return (nothing leaks through gymnax's reset)."""
    env, env_params = gymnax.make("Pendulum-v1")
    env = env.with_transition_gradients()
    short = env_params.replace(max_steps_in_episode=3)
    policy = policies.linear_gaussian(jnp.tanh, 3, 1, init_log_std=-1.0)
    params = {"theta": jnp.array([[0.5], [-1.0], [-0.3]]), "log_std": jnp.array([-1.0])}
    key = jax.random.PRNGKey(2)
    (six, six_grad), (three, three_grad) = jax.jit(
        lambda prm: [jax.value_and_grad(pathwise.rollout_return, argnums=2)(key, policy, prm, env, short, h) for h in (6, 3)]
    )(params)
    np.testing.assert_allclose(six, three, rtol=1e-12)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(six_grad)[0], jax.flatten_util.ravel_pytree(three_grad)[0], rtol=1e-10)


def test_short_horizon_return_across_episode_ends(x64):
    """A window of 5 steps over a truncation after step 2: the discount restarts, the truncated
    step is bootstrapped from its pre-reset observation and the window's end from the last obs."""
    env, env_params = gymnax.make("Pendulum-v1")
    env = env.with_transition_gradients()
    short = env_params.replace(max_steps_in_episode=2)
    policy = policies.linear_gaussian(jnp.tanh, 3, 1)
    params = {"theta": jnp.array([[0.5], [-1.0], [-0.3]]), "log_std": jnp.array([-1.0])}
    obs, state = env.reset(jax.random.PRNGKey(1), short)
    value_fn = lambda o: o[2]  # V = angular velocity: easy to read off
    total, _, steps = pathwise.short_horizon_return(jax.random.PRNGKey(3), policy, params, env, short, obs, state, 5, 0.5, value_fn)
    r, nxt = steps["reward"], steps["next_obs"]
    assert steps["truncated"].tolist() == [False, True, False, True, False]
    want = (r[0] + 0.5 * r[1] + 0.25 * nxt[1, 2]) + (r[2] + 0.5 * r[3] + 0.25 * nxt[3, 2]) + (r[4] + 0.5 * nxt[4, 2])
    np.testing.assert_allclose(total, want, rtol=1e-12)


def test_categorical_policy_is_refused():
    env, env_params = gymnax.make("CartPole-v1")
    policy = policies.mlp_categorical((4,), 2, hidden=(4,))
    with pytest.raises(ValueError, match="`policy` must be Gaussian"):
        pathwise.rollout_return(jax.random.PRNGKey(0), policy, policy.init(jax.random.PRNGKey(0)), env, env_params, 3)
    with pytest.raises(ValueError, match="`horizon` must be a positive integer; got 0"):
        pathwise.rollout_return(jax.random.PRNGKey(0), policy, None, env, env_params, 0)
    with pytest.raises(ValueError, match="`gamma` must lie in"):
        pathwise.rollout_return(jax.random.PRNGKey(0), policy, None, env, env_params, 3, gamma=1.5)
    with pytest.raises(ValueError, match="`value_fn` bootstraps at the cuts"):
        pathwise.rollout_return(jax.random.PRNGKey(0), policy, None, env, env_params, 3, value_fn=lambda o: o.sum())


def test_score_function_counts_only_the_first_episode_with_a_baseline(x64):
    """Pendulum with a 3-step time limit and H = 6: the score term sums ∇log π(a_t|s_t)(G_t − b_t)
    over the first episode's steps only, so a baseline that is nonzero after the end changes
    nothing (the gradient equals the 3-step one with the baseline's first 3 entries). A surrogate
    without the alive mask adds ∇log π(a_t)(0 − b_t) for the steps after the end."""
    env, env_params = gymnax.make("Pendulum-v1")
    short = env_params.replace(max_steps_in_episode=3)
    policy = policies.linear_gaussian(jnp.tanh, 3, 1, init_log_std=-1.0)
    params = {"theta": jnp.array([[0.5], [-1.0], [-0.3]]), "log_std": jnp.array([-1.0])}
    key, baseline = jax.random.PRNGKey(2), jnp.arange(1.0, 7.0)
    (six, six_grad), (three, three_grad) = jax.jit(
        lambda prm: [jax.value_and_grad(pathwise.score_function_return, argnums=2)(key, policy, prm, env, short, h, 0.9, baseline[:h])
                     for h in (6, 3)]
    )(params)
    np.testing.assert_allclose(six, three, rtol=1e-12)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(six_grad)[0], jax.flatten_util.ravel_pytree(three_grad)[0], rtol=1e-10)


def test_short_horizon_return_never_bootstraps_a_terminated_step(x64):
    """Every step of the continuous bandit terminates: the window objective is Σ_t r_t (the
    discount restarts at each end and V is never added after a terminated step, the window's
    last step included). Bootstrapping terminated steps adds γ V(s'_t) on every step."""
    env = envs.ContinuousBandit(optimum=0.5)
    p = env.default_params
    policy = policies.linear_gaussian(lambda o: o, 1, 1)
    params = {"theta": jnp.array([[0.2]]), "log_std": jnp.array([-1.0])}
    obs, state = env.reset(jax.random.PRNGKey(0), p)
    total, _, steps = pathwise.short_horizon_return(
        jax.random.PRNGKey(1), policy, params, env, p, obs, state, 4, 0.9, lambda o: 10.0 + jnp.sum(o)
    )
    assert steps["terminated"].all() and not steps["truncated"].any()
    np.testing.assert_allclose(total, jnp.sum(steps["reward"]), rtol=1e-12)


def test_leave_one_out_baseline_is_the_mean_of_the_other_episodes_reward_to_go():
    """b_i,t = mean over j ≠ i of G_j,t = Σ_{k≥t} r_j,k, as a naive loop computes it. Fails on a
    divisor of N instead of N − 1 (which stays unbiased, so the exact-gradient tests miss it)."""
    rewards = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    got = np.asarray(pathwise.leave_one_out_baseline(jnp.asarray(rewards)))
    rtg = np.array([[rewards[i, t:].sum() for t in range(5)] for i in range(4)])
    want = np.stack([np.mean([rtg[j] for j in range(4) if j != i], axis=0) for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_score_function_gradient_equals_a_naive_sum_over_steps(x64):
    """On LQR (no episode end), ∇ `score_function_return` = Σ_t ∇log π(a_t|s_t) (G_t − b_t) with
    G_t = Σ_{k≥t} γ^k r_k, summed in a loop from the per-step scores of the same episode. Fails on
    a reward-to-go summed the wrong way (the rewards up to t: still a valid estimator of nothing,
    and within the noise of the exact-gradient tests)."""
    env = make_lqr()
    p, policy, params = env.default_params, env.linear_policy(), lqr_params()
    key, baseline = jax.random.PRNGKey(5), jnp.linspace(-3.0, -1.0, HORIZON)
    reset_key, run_key = jax.random.split(key)
    obs, state = env.reset(reset_key, p)
    steps = lambda prm: pathwise.unroll(run_key, policy, prm, env, p, obs, state, HORIZON, detach_actions=True)[1]  # noqa: E731
    scores = jax.jit(jax.jacrev(lambda prm: steps(prm)["log_prob"]))(params)  # [H, ...] ∇log π(a_t|s_t)
    rewards = np.asarray(jax.jit(steps)(params)["reward"]) * GAMMA ** np.arange(HORIZON)
    weights = [rewards[t:].sum() - float(baseline[t]) for t in range(HORIZON)]
    want = jax.tree.map(lambda s: sum(w * s[t] for t, w in enumerate(weights)), scores)
    value, grad = jax.jit(jax.value_and_grad(lambda prm: pathwise.score_function_return(key, policy, prm, env, p, HORIZON, GAMMA, baseline)))(params)
    np.testing.assert_allclose(value, rewards.sum(), rtol=1e-12)
    for name in want:
        np.testing.assert_allclose(grad[name], want[name], rtol=1e-9, atol=1e-12)
