"""The small worlds: gymnax rollouts run, flags are as specified, and Monte-Carlo returns
match the exact `TabularMDP` each environment exports (within 4 standard errors).

Ground truth convention: `rollout.evaluate` sums undiscounted rewards up to the first end of
an episode within H = params.max_steps_in_episode steps, which is exactly
`exact.finite_horizon_expected_return(env.tabular_mdp(), logits, H)` (terminal states are
absorbing with zero reward in the MDP).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import envs, exact, policies, rollout

NUM_EPISODES = 4000


def _assert_matches(returns, expected, what):
    returns = np.asarray(returns, np.float64)
    mean, se = returns.mean(), returns.std(ddof=1) / np.sqrt(returns.size)
    assert abs(mean - float(expected)) <= 4 * se + 1e-5, f"{what}: MC {mean:.4f} ± {se:.4f} vs exact {float(expected):.4f}"


def _simulate(key, env, params, policy, theta, num_envs, num_steps, num_episodes=NUM_EPISODES):
    """One compiled program: a `rollout` window [num_steps, num_envs] from reset, and the
    returns [num_episodes] of whole sampled episodes from `evaluate`."""

    @jax.jit
    def run(key):
        reset_key, rollout_key, eval_key = jax.random.split(key, 3)
        batch = rollout.reset(reset_key, env, params, num_envs)
        _, traj = rollout.rollout(rollout_key, policy, theta, env, params, batch, num_steps)
        returns = rollout.evaluate(eval_key, policy, theta, env, params, num_episodes, greedy=False)
        return traj, returns

    traj, returns = run(key)
    assert returns.shape == (num_episodes,)
    return traj, returns


# ----------------------------------------------------------------------------- bandits


def test_multi_armed_bandit_rollout_and_exact_value():
    means, stds = jnp.array([0.0, 0.5, 1.0, -0.3]), jnp.array([1.0, 0.5, 2.0, 0.1])
    env = envs.MultiArmedBandit(means, stds)
    params, policy = env.default_params, env.linear_softmax_policy()
    theta = jnp.array([0.3, -0.2, 0.8, 0.1])  # W [F=1, A=4] -> logits of the one observation
    assert env.observation_space(params).shape == (1,) and env.action_space(params).n == 4

    traj, returns = _simulate(jax.random.PRNGKey(0), env, params, policy, theta, num_envs=3, num_steps=5)
    assert traj.obs.shape == (5, 3, 1) and traj.action.shape == (5, 3) and traj.reward.shape == (5, 3)
    np.testing.assert_array_equal(traj.obs, 1.0)
    assert bool(traj.terminated.all()) and not bool(traj.truncated.any())
    np.testing.assert_array_equal(traj.episode_length, 1)

    mdp, phi = env.tabular_mdp(), env.features()
    assert mdp.transitions.shape == (2, 4, 2)
    j = exact.features_expected_return(mdp, theta, phi)
    pi = jax.nn.softmax(theta)
    np.testing.assert_allclose(j, pi @ means, rtol=1e-5)  # J = mean reward of π, any γ
    np.testing.assert_allclose(exact.finite_horizon_expected_return(mdp, phi @ theta, 1), j, rtol=1e-5)
    _assert_matches(returns, j, "bandit")


def test_multi_armed_bandit_checks_its_arguments():
    with pytest.raises(ValueError, match="arm_stds"):
        envs.MultiArmedBandit([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="reward_std"):
        envs.MultiArmedBandit([0.0, 1.0], [1.0, -1.0])


def test_continuous_bandit_closed_form_matches_rollouts():
    env = envs.ContinuousBandit(optimum=1.0, width=2.0)
    params = env.default_params
    policy = policies.linear_gaussian(lambda obs: obs, num_features=1, action_dim=1)
    theta = {"theta": jnp.array([[0.3]]), "log_std": jnp.array([-0.5])}

    traj, returns = _simulate(jax.random.PRNGKey(2), env, params, policy, theta, num_envs=3, num_steps=4)
    assert traj.obs.shape == (4, 3, 1) and traj.action.shape == (4, 3, 1) and traj.reward.shape == (4, 3)
    assert bool(traj.terminated.all()) and not bool(traj.truncated.any())
    np.testing.assert_allclose(traj.reward, env.reward(traj.action), rtol=1e-5)

    mean, log_std = jnp.array([0.3]), jnp.array([-0.5])
    expected = env.expected_reward(mean, log_std)
    np.testing.assert_allclose(expected, -((0.3 - 1.0) ** 2 + np.exp(-1.0)) / 4.0, rtol=1e-5)
    g_mean, g_log_std = jax.grad(env.expected_reward, argnums=(0, 1))(mean, log_std)
    np.testing.assert_allclose(g_mean, -2 * (0.3 - 1.0) / 4.0, rtol=1e-5)
    np.testing.assert_allclose(g_log_std, -2 * np.exp(-1.0) / 4.0, rtol=1e-5)
    _assert_matches(returns, expected, "continuous bandit")


# ----------------------------------------------------------------------------- cliff walking


def test_cliff_walking_dynamics():
    env = envs.CliffWalking()
    params = env.default_params
    U, R, D, L = 0, 1, 2, 3
    # (state, action) -> (reward, next state as seen in final_observation, terminated)
    cases = [
        (36, R, -100.0, 36, False),  # start, right: into the cliff, back to start
        (29, D, -100.0, 36, False),  # row 2 col 5, down: cliff
        (36, U, -1.0, 24, False),  # start, up
        (0, U, -1.0, 0, False),  # off the grid: stay
        (35, D, -1.0, 47, True),  # row 2 col 11, down: the goal
        (34, D, -100.0, 36, False),  # row 2 col 10, down: cliff
    ]
    states = jnp.array([c[0] for c in cases], jnp.int32)
    actions = jnp.array([c[1] for c in cases], jnp.int32)
    env_states = envs.FiniteEnvState(state=states, time=jnp.zeros_like(states))
    keys = jax.random.split(jax.random.PRNGKey(4), len(cases))
    obs, new_states, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        keys, env_states, actions, params
    )
    np.testing.assert_array_equal(reward, [c[2] for c in cases])
    np.testing.assert_array_equal(jnp.argmax(info["final_observation"], -1), [c[3] for c in cases])
    np.testing.assert_array_equal(terminated, [c[4] for c in cases])
    assert not bool(truncated.any())
    # the episode goes on after the cliff (at the start); after the goal gymnax resets to the start
    np.testing.assert_array_equal(new_states.state, [36, 36, 24, 0, 36, 36])
    np.testing.assert_array_equal(new_states.time, [1, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(jnp.argmax(obs, -1), [36, 36, 24, 0, 36, 36])
    # the exported MDP agrees
    mdp = env.tabular_mdp()
    for s, a, r, s_next, _ in cases:
        assert float(mdp.rewards[s, a]) == r and float(mdp.transitions[s, a, s_next]) == 1.0
    assert float(mdp.initial[36]) == 1.0 and float(mdp.transitions[47, :, 47].min()) == 1.0


def _cliff_logits(key):
    """A noisy route along the top: up from the bottom row, right along rows 0-2, down at the
    right edge (it reaches the goal often, falls off the cliff and times out sometimes)."""
    prefer = np.full(48, 1)  # right
    prefer[36] = 0  # up from the start
    prefer[[11, 23, 35]] = 2  # down the right edge
    return 2.0 * jax.nn.one_hot(prefer, 4) + 0.5 * jax.random.normal(key, (48, 4))


def test_cliff_walking_rollout_and_exact_value():
    H = 40
    env = envs.CliffWalking()
    params = env.default_params.replace(max_steps_in_episode=H)
    policy = env.linear_softmax_policy()
    logits = _cliff_logits(jax.random.PRNGKey(5))
    theta = logits.reshape(-1)  # one-hot observations: θ = logits [S, A] flattened

    traj, returns = _simulate(jax.random.PRNGKey(6), env, params, policy, theta, num_envs=8, num_steps=2 * H)
    assert traj.obs.shape == (2 * H, 8, 48) and traj.action.shape == (2 * H, 8)
    term, trunc = np.asarray(traj.terminated), np.asarray(traj.truncated)
    assert term.any() and trunc.any() and not (term & trunc).any()
    np.testing.assert_array_equal(np.argmax(np.asarray(traj.next_obs)[term], -1), 47)  # ends only at the goal
    np.testing.assert_array_equal(np.asarray(traj.episode_length)[trunc], H)  # truncated at the limit
    assert (np.asarray(traj.reward) == -100.0).any()

    mdp = env.tabular_mdp()
    np.testing.assert_allclose(
        exact.features_expected_return(mdp, theta, env.features()), exact.expected_return(mdp, logits), rtol=1e-4
    )
    j_h = exact.finite_horizon_expected_return(mdp, logits, H)
    _assert_matches(returns, j_h, "cliff walking")


# ----------------------------------------------------------------------------- aliased gridworld


def test_aliased_gridworld_layout_and_exact_value():
    H = 30
    env = envs.AliasedGridworld()
    params = env.default_params.replace(max_steps_in_episode=H)
    obs = np.asarray(params.observations)
    np.testing.assert_array_equal(obs[1], obs[3])  # the grey cells are aliased
    assert len({tuple(o) for o in obs[:5]}) == 4
    policy = env.linear_softmax_policy()
    theta = jax.random.normal(jax.random.PRNGKey(8), (16,))

    traj, returns = _simulate(jax.random.PRNGKey(9), env, params, policy, theta, num_envs=8, num_steps=2 * H)
    assert traj.obs.shape == (2 * H, 8, 4)
    term, trunc = np.asarray(traj.terminated), np.asarray(traj.truncated)
    assert term.any() and not (term & trunc).any()
    np.testing.assert_array_equal(np.asarray(traj.next_obs)[term], np.broadcast_to(obs[5], (term.sum(), 4)))
    np.testing.assert_array_equal(np.asarray(traj.reward), -1.0)

    mdp, phi = env.tabular_mdp(), env.features()
    j_h = exact.finite_horizon_expected_return(mdp, phi @ theta, H)
    _assert_matches(returns, j_h, "aliased gridworld")


def test_aliased_gridworld_stochastic_beats_every_deterministic_policy():
    env = envs.AliasedGridworld(gamma=0.9)
    mdp, phi = env.tabular_mdp(), env.features()
    logits = exact.deterministic_observation_policies(env.default_params.observations, 4)
    assert logits.shape == (4**5, 6, 4)  # the goal's walls differ from every corridor cell's
    best_deterministic = float(jax.jit(jax.vmap(exact.expected_return, in_axes=(None, 0)))(mdp, logits).max())
    np.testing.assert_allclose(best_deterministic, (-(1 + 0.9 + 0.81) - 1.9 - 1 - 10 - 10) / 5, rtol=1e-4)

    @jax.jit
    def ascend(theta):
        step = lambda _, th: th + 0.5 * exact.features_policy_gradient(mdp, th, phi)
        return jax.lax.fori_loop(0, 300, step, theta)

    theta = ascend(jnp.zeros(16))
    stochastic = float(exact.features_expected_return(mdp, theta, phi))
    assert stochastic > best_deterministic + 1.0
    probs = jax.nn.softmax(phi[1] @ theta)  # the grey cells: both ways along the corridor
    assert probs[1] > 0.2 and probs[3] > 0.2
    np.testing.assert_allclose(probs, jax.nn.softmax(phi[3] @ theta))


# ----------------------------------------------------------------------------- random tabular MDP


def test_random_tabular_mdp_rollout_and_exact_value():
    H, S, A = 12, 5, 3
    env = envs.RandomTabularMDP.from_key(jax.random.PRNGKey(11), S, A, gamma=0.8, max_steps_in_episode=H)
    params, policy = env.default_params, env.linear_softmax_policy()
    mdp = env.tabular_mdp()
    reference = exact.random_mdp(jax.random.PRNGKey(11), S, A, 0.8)
    np.testing.assert_array_equal(mdp.transitions, reference.transitions)
    np.testing.assert_allclose(mdp.gamma, 0.8)
    logits = jax.random.normal(jax.random.PRNGKey(12), (S, A))
    theta = logits.reshape(-1)

    traj, returns = _simulate(jax.random.PRNGKey(13), env, params, policy, theta, num_envs=4, num_steps=3 * H)
    assert traj.obs.shape == (3 * H, 4, S) and traj.action.shape == (3 * H, 4)
    assert not bool(traj.terminated.any())
    expected_trunc = (np.arange(3 * H) + 1) % H == 0
    np.testing.assert_array_equal(traj.truncated, np.broadcast_to(expected_trunc[:, None], (3 * H, 4)))
    np.testing.assert_allclose(traj.reward, mdp.rewards[jnp.argmax(traj.obs, -1), traj.action], rtol=1e-6, atol=1e-6)

    j_h = exact.finite_horizon_expected_return(mdp, logits, H)
    _assert_matches(returns, j_h, "random MDP")


def test_finite_env_reward_noise_has_the_given_standard_deviation():
    """A finite env pays r ~ N(r(s, a), σ_r(s, a)²): 20,000 pulls of each arm of a bandit with
    arm_stds [2, 0.5] have those standard deviations (within 3%, about 6 standard errors) and
    the arm means (within 4 standard errors). Fails on noise scaled by σ² instead of σ."""
    env = envs.MultiArmedBandit(jnp.array([1.0, -1.0]), arm_stds=jnp.array([2.0, 0.5]))
    p = env.default_params
    start = envs.FiniteEnvState(state=jnp.int32(0), time=jnp.int32(0))
    keys = jax.random.split(jax.random.PRNGKey(0), 20_000)
    pull = jax.jit(jax.vmap(lambda k, a: env.step(k, start, a, p)[2], in_axes=(0, None)))
    for arm, (mean, std) in enumerate([(1.0, 2.0), (-1.0, 0.5)]):
        r = np.asarray(pull(keys, arm))
        assert abs(r.std() - std) < 0.03 * std, (arm, r.std())
        assert abs(r.mean() - mean) < 4 * std / np.sqrt(r.size), (arm, r.mean())
