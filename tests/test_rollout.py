"""Rollouts in gymnax: shapes, the carried state, episode statistics, clipping, evaluation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import distributions as D
from rlpg import algos, envs, policies, rollout
from rlpg.algos import reinforce


@pytest.fixture(scope="module")
def cartpole():
    env, params = envs.make("CartPole-v1")
    policy = policies.make_policy(env, params, hidden=(16,))
    theta = policy.init(jax.random.PRNGKey(0))
    batch = rollout.reset(jax.random.PRNGKey(1), env, params, 4)
    run = jax.jit(lambda key, batch: rollout.rollout(key, policy, theta, env, params, batch, 64))
    final, traj = run(jax.random.PRNGKey(2), batch)
    return env, params, policy, theta, batch, final, traj, run


def test_trajectory_shapes_and_types(cartpole):
    *_, traj, _ = cartpole
    assert traj.obs.shape == (64, 4, 4) and traj.next_obs.shape == (64, 4, 4)
    assert traj.action.shape == (64, 4) and traj.action.dtype == jnp.int32
    for name in ("reward", "log_prob", "episode_return"):
        assert getattr(traj, name).shape == (64, 4) and getattr(traj, name).dtype == jnp.float32
    assert traj.terminated.dtype == jnp.bool_ and traj.truncated.dtype == jnp.bool_
    assert traj.done.sum() > 0  # a random CartPole policy falls within 64 steps


def test_next_obs_is_the_true_next_state(cartpole):
    *_, traj, _ = cartpole
    not_done = ~np.asarray(traj.done[:-1])
    np.testing.assert_array_equal(np.asarray(traj.next_obs[:-1])[not_done], np.asarray(traj.obs[1:])[not_done])
    # on done steps the next obs is the pre-reset final one, not the reset obs that follows
    done = np.asarray(traj.done[:-1])
    assert np.all(np.any(np.asarray(traj.next_obs[:-1])[done] != np.asarray(traj.obs[1:])[done], axis=-1))


def test_log_probs_are_those_of_the_acting_policy(cartpole):
    _, _, policy, theta, *_, traj, _ = cartpole
    np.testing.assert_allclose(D.categorical_log_prob(policy.apply(theta, traj.obs), traj.action), traj.log_prob, rtol=1e-5)


def test_rollout_equals_a_loop_of_steps_with_keys_split_inside(cartpole):
    """The rollout draws its keys before the loop; a loop that splits each step's key inside,
    as `rollout.step` does, must give the same trajectory bit for bit."""
    env, params, policy, theta, batch, final, traj, _ = cartpole

    def body(batch, step_key):
        act_key, env_key = jax.random.split(step_key)
        action = policy.distribution.sample(act_key, policy.apply(theta, batch.obs))
        batch, reward, terminated, _, next_obs, *_ = rollout.step(env_key, env, params, batch, action)
        return batch, (action, reward, terminated, next_obs)

    loop = jax.jit(lambda key, batch: jax.lax.scan(body, batch, jax.random.split(key, 64)))
    last, (action, reward, terminated, next_obs) = loop(jax.random.PRNGKey(2), batch)
    assert traj.done.sum() > 0  # so the resets, drawn from the env keys, are compared too
    for ours, naive in [(traj.action, action), (traj.reward, reward), (traj.terminated, terminated),
                        (traj.next_obs, next_obs), (final.obs, last.obs)]:
        np.testing.assert_array_equal(ours, naive)


def test_episode_statistics_match_a_naive_count(cartpole):
    _, _, _, _, batch, final, traj, run = cartpole
    reward, done = np.asarray(traj.reward), np.asarray(traj.done)
    for b in range(4):
        running = 0.0
        length = 0
        for t in range(64):
            running += reward[t, b]
            length += 1
            if done[t, b]:
                assert traj.episode_return[t, b] == running and traj.episode_length[t, b] == length
                running, length = 0.0, 0
            else:
                assert traj.episode_return[t, b] == 0
        assert final.episode_return[b] == running and final.episode_length[b] == length
    stats = rollout.episode_stats(traj)
    np.testing.assert_allclose(stats["episode_return"], traj.episode_return.sum() / done.sum(), rtol=1e-6, atol=1e-6)
    # the carried state continues: the next window starts from `final`
    _, traj2 = run(jax.random.PRNGKey(3), final)
    np.testing.assert_array_equal(traj2.obs[0], final.obs)


def test_finish_episodes_steps_only_the_envs_inside_an_episode(cartpole):
    """The continuation finishes the episodes under way and starts none: an env at a reset (its
    episode ended on the window's last step) stands still, while each other env steps until its
    episode ends, then stands still. Counting an env at a reset as under way would play it a whole
    new episode, counted as the window's (a biased estimate) and in `continuation_steps`."""
    env, params, policy, theta, _, final, _, _ = cartpole
    fresh = rollout.reset(jax.random.PRNGKey(7), env, params, 4)
    at_reset = jnp.array([True, False, False, False])
    batch = jax.tree.map(lambda a, b: jnp.where(at_reset.reshape((4,) + (1,) * (a.ndim - 1)), a, b), fresh, final)
    assert np.all(np.asarray(batch.episode_length)[1:] > 0)  # the others are inside an episode (64 steps in)
    ended, cont, taken = jax.jit(functools.partial(rollout.finish_episodes, policy=policy, params=theta, env=env, env_params=params,
                                                   max_steps=500))(jax.random.PRNGKey(3), batch=batch)
    taken, done = np.asarray(taken), np.asarray(cont.done)
    assert not taken[:, 0].any()  # at a reset: no step
    np.testing.assert_array_equal(np.asarray(ended.obs[0]), np.asarray(fresh.obs[0]))
    for b in range(1, 4):  # steps 0..k, k the step its episode ended on, then none
        k = int(np.argmax(done[:, b]))
        assert done[k, b] and taken[: k + 1, b].all() and not taken[k + 1 :, b].any(), b
        assert int(np.asarray(batch.episode_length)[b]) + k + 1 == int(cont.episode_length[k, b])  # the whole episode's length


def test_continuous_actions_clipped_for_the_env_but_not_for_log_probs():
    env, params = envs.make("Pendulum-v1")
    policy = policies.make_policy(env, params, hidden=(8,))
    theta = policy.init(jax.random.PRNGKey(0))
    theta = jax.tree.map(lambda x: x, theta)
    theta["params"]["log_std"] = jnp.full((1,), 2.0)  # σ ≈ 7.4: most samples fall outside [-2, 2]
    batch = rollout.reset(jax.random.PRNGKey(1), env, params, 3)
    _, traj = rollout.rollout(jax.random.PRNGKey(2), policy, theta, env, params, batch, 20)
    assert traj.action.shape == (20, 3, 1)
    assert np.abs(np.asarray(traj.action)).max() > 2.0
    mean, log_std = policy.apply(theta, traj.obs)
    np.testing.assert_allclose(D.gaussian_log_prob(mean, jnp.broadcast_to(log_std, mean.shape), traj.action), traj.log_prob, rtol=1e-5)
    # Pendulum's cost is at most π² + 0.1·8² + 0.001·2² with clipped torques
    assert np.asarray(traj.reward).min() >= -(np.pi**2 + 0.1 * 64 + 0.001 * 4) - 1e-4


def test_env_action_shapes_then_clips_into_a_box_of_any_shape():
    """A flat [..., D] action becomes [..., *shape] and is clipped elementwise by bounds of that
    shape (clipping the flat action by [2, 3] bounds first fails to broadcast)."""
    from gymnax.environments import spaces

    class BoxEnv:
        def action_space(self, params):
            return spaces.Box(jnp.arange(6.0).reshape(2, 3), jnp.arange(6.0).reshape(2, 3) + 0.5, (2, 3))

    action = jnp.tile(jnp.arange(6.0) + 0.25 * jnp.array([-1.0, 1.0, 3.0, -1.0, 1.0, 3.0]), (4, 1))
    expected = np.clip(np.asarray(action).reshape(4, 2, 3), np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(2, 3) + 0.5)
    np.testing.assert_array_equal(rollout.env_action(BoxEnv(), None, action), expected)
    np.testing.assert_array_equal(rollout.env_action(BoxEnv(), None, action[0]), expected[0])


def test_evaluate_matches_a_naive_episode_loop():
    env, params = envs.make("CartPole-v1")
    policy = policies.make_policy(env, params, hidden=(8,))
    theta = policy.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(5)
    returns = jax.jit(lambda k: rollout.evaluate(k, policy, theta, env, params, 3, greedy=True))(key)
    # naive: same resets, step each env with its greedy action until it ends (CartPole is deterministic)
    reset_key, _ = jax.random.split(key)
    batch = rollout.reset(reset_key, env, params, 3)
    for b in range(3):
        state = jax.tree.map(lambda x: x[b], batch.env_state)
        obs, total, done = batch.obs[b], 0.0, False
        while not done:
            action = int(jnp.argmax(policy.apply(theta, obs)))
            obs, state, reward, term, trunc, _ = env.step(jax.random.PRNGKey(0), state, action, params)
            total += float(reward)
            done = bool(term | trunc)
        assert returns[b] == total


def test_make_evaluate_plays_each_seed_as_it_plays_alone():
    """Seed i of `algos.make_evaluate` is `rollout.evaluate` with seed i's key and parameters, bit
    for bit: one key for every seed, or keys paired with another seed's parameters, would differ."""
    algorithm = reinforce.make_algorithm(reinforce.Config(num_envs=2, num_steps=8, total_timesteps=16, hidden=(8,)))
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    params = jax.vmap(algorithm.policy.init)(jax.random.split(jax.random.PRNGKey(4), 3))

    @functools.partial(jax.jit, static_argnums=1)
    def alone(i, greedy):  # seed i evaluated by itself
        return rollout.evaluate(keys[i], algorithm.policy, jax.tree.map(lambda p: p[i], params), algorithm.env,
                                algorithm.env_params, 4, greedy)

    returns = np.asarray(algos.make_evaluate(algorithm, 4, greedy=False)(keys, params))
    assert returns.shape == (3, 4)
    for i in range(3):
        np.testing.assert_array_equal(returns[i], alone(i, False))
    assert len({tuple(r) for r in returns}) == 3  # the seeds play different episodes
    greedy = np.asarray(algos.make_evaluate(algorithm, 4)(keys, params))
    np.testing.assert_array_equal(greedy[1], alone(1, True))


def test_unknown_env_suggests_close_names():
    with pytest.raises(ValueError, match="CartPole-v1"):
        envs.make("CartPole-v2")


@pytest.mark.parametrize("env_id", sorted(envs.REGISTRY))
def test_textbook_worlds_by_id_with_linear_policies(env_id):
    env, env_params = envs.make(env_id)
    policy = policies.make_policy(env, env_params, kind="linear")
    params = policy.init(jax.random.PRNGKey(0))
    assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in jax.tree.leaves(params))  # zero at init
    batch = rollout.reset(jax.random.PRNGKey(1), env, env_params, 3)
    _, traj = rollout.rollout(jax.random.PRNGKey(2), policy, params, env, env_params, batch, 4)
    assert traj.reward.shape == (4, 3) and np.all(np.isfinite(np.asarray(traj.log_prob)))


def test_make_env_and_policy_errors():
    with pytest.raises(ValueError, match="Did you mean CliffWalking-v0"):
        envs.make("CliffWalk-v0")
    env, env_params = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match="`kind` must be one of"):
        policies.make_policy(env, env_params, kind="tabular")
    env, env_params = envs.make("Breakout-MinAtar")
    with pytest.raises(ValueError, match="flat observations"):
        policies.make_policy(env, env_params, kind="linear")


def test_bad_actions_and_policies_that_do_not_fit_the_env_are_refused():
    """A second audit's cases: each ran before (actions up to 4 on CartPole's two, an action 5 or
    -1 stepped, a float action stepped) or failed inside vmap/reshape naming nothing."""
    env, env_params = envs.make("CartPole-v1")
    key = jax.random.PRNGKey(0)
    batch = rollout.reset(key, env, env_params, 3)
    with pytest.raises(ValueError, match=r"`action` must lie in \[0, 2\); got \[0, 5, -1\]"):
        rollout.step(key, env, env_params, batch, jnp.array([0, 5, -1]))
    with pytest.raises(TypeError, match="`action` must be an integer array"):
        rollout.step(key, env, env_params, batch, jnp.array([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match=r"one action per environment of `batch`, \[3, ...\]; got \(2,\)"):
        rollout.step(key, env, env_params, batch, [0, 1])
    with pytest.raises(TypeError, match="`key` must be one PRNG key"):
        rollout.step(0, env, env_params, batch, [0, 1, 0])
    five_actions = policies.mlp_categorical((4,), 5, (8,))
    for call in (
        lambda: rollout.rollout(key, five_actions, five_actions.init(key), env, env_params, batch, 4),
        lambda: rollout.evaluate(key, five_actions, five_actions.init(key), env, env_params, 2),
        lambda: rollout.finish_episodes(key, five_actions, five_actions.init(key), env, env_params, batch, 4),
    ):
        with pytest.raises(ValueError, match=r"`policy` must give 2 logits per observation, one per action of CartPole-v1; got shape \([23], 5\)"):
            call()
    with pytest.raises(ValueError, match="`max_steps` must be a positive integer; got 0"):
        rollout.finish_episodes(key, five_actions, five_actions.init(key), env, env_params, batch, 0)
    two = policies.mlp_categorical((4,), 2, (8,))
    with pytest.raises(TypeError, match="`greedy` must be True or False"):
        rollout.evaluate(key, two, two.init(key), env, env_params, 2, greedy="no")
    with pytest.raises(ValueError, match="`done` must hold only 0 and 1"):
        rollout.count_episodes(jnp.zeros(2), jnp.zeros(2, jnp.int32), jnp.ones(2), jnp.array([2.0, 0.0]))
    pendulum, pendulum_params = envs.make("Pendulum-v1")
    with pytest.raises(ValueError, match=r"`action` must end in the Pendulum-v1 action's size 1, \[..., 1\]; got \(1, 2\)"):
        rollout.env_action(pendulum, pendulum_params, jnp.zeros((1, 2)))
    np.testing.assert_array_equal(rollout.env_action(pendulum, pendulum_params, [[3.0]]), [[2.0]])  # a list, clipped
