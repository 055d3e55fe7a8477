"""DQN: TD targets by hand, truncation vs termination, ε-greedy, learning CartPole over five
seeds, a seed alone vs in a batch bit for bit, config errors, and the ablation script."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import algos, envs, policies, rollout, value_learning
from rlpg.algos import dqn


def seeds(n):
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(n))


# ----------------------------------------------------------------------------- pure pieces


def test_td_target_cuts_the_bootstrap_only_on_termination():
    reward = jnp.array([1.0, 1.0, 0.5])
    terminated = jnp.array([False, True, False])
    next_q = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, -1.0]])
    y = value_learning.td_target(reward, terminated, next_q, 0.9)
    np.testing.assert_allclose(y, [1.0 + 0.9 * 2.0, 1.0, 0.5 + 0.9 * 5.0], rtol=1e-6, atol=1e-6)


def test_double_dqn_target_matches_a_naive_loop():
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    reward = jax.random.normal(k1, (32,))
    terminated = jax.random.bernoulli(k2, 0.3, (32,))
    next_q_target = jax.random.normal(k3, (32, 5))
    next_q_online = jax.random.normal(k4, (32, 5))
    y = np.asarray(value_learning.td_target(reward, terminated, next_q_target, 0.97, next_q_online))
    reward, terminated, next_q_target, next_q_online = map(np.asarray, (reward, terminated, next_q_target, next_q_online))
    expected = []
    for i in range(32):
        best = int(np.argmax(next_q_online[i]))  # the online network selects ...
        bootstrap = 0.0 if terminated[i] else float(next_q_target[i, best])  # ... the target evaluates
        expected.append(float(reward[i]) + 0.97 * bootstrap)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    plain = np.asarray(value_learning.td_target(reward, terminated, next_q_target, 0.97))
    assert np.all(plain >= y - 1e-6) and np.any(plain > y + 1e-3)  # max over Q⁻ ≥ Q⁻ at any action


def test_td_target_checks_shapes():
    with pytest.raises(ValueError, match="`next_q_target` must have shape"):
        value_learning.td_target(jnp.zeros(3), jnp.zeros(3, bool), jnp.zeros((4, 2)), 0.9)
    with pytest.raises(ValueError, match="`next_q_online` must have shape"):
        value_learning.td_target(jnp.zeros(3), jnp.zeros(3, bool), jnp.zeros((3, 2)), 0.9, jnp.zeros((3, 5)))


def test_td_losses():
    q, y = jnp.array([0.0, 0.5, 3.0]), jnp.zeros(3)
    np.testing.assert_allclose(value_learning.td_loss(q, y, "mse"), np.mean([0.0, 0.125, 4.5]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(value_learning.td_loss(q, y, "huber"), np.mean([0.0, 0.125, 2.5]), rtol=1e-6, atol=1e-6)


def test_epsilon_greedy_probabilities_and_schedule():
    q_network = policies.mlp_categorical((4,), 3, (8,), "relu")
    params = q_network.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (10, 4))
    probs = jnp.exp(policies.epsilon_greedy(q_network).apply({"q": params, "epsilon": 0.3}, obs))
    greedy = jnp.argmax(q_network.apply(params, obs), -1)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jnp.take_along_axis(probs, greedy[:, None], -1)[:, 0], 0.7 + 0.1, rtol=1e-6, atol=1e-6)
    cfg = dqn.Config(total_timesteps=1000, exploration_fraction=0.5, eps_start=1.0, eps_end=0.1)
    np.testing.assert_allclose(dqn.epsilon_schedule(cfg, jnp.array([0, 250, 500, 900])), [1.0, 0.55, 0.1, 0.1], rtol=1e-6, atol=1e-6)


def test_truncated_steps_are_stored_with_the_final_observation_and_bootstrap():
    """A 5-step time limit on CartPole (the pole cannot fall that fast): every episode end is a
    truncation; the buffer keeps the state reached (not the reset one), terminated = False, so
    the TD target bootstraps from it."""
    env, env_params = envs.make("CartPole-v1")
    env_params = env_params.replace(max_steps_in_episode=5)
    config = dqn.Config(num_envs=2, train_freq=16, total_timesteps=64, learning_starts=40, buffer_size=64, hidden=(8,))
    algorithm = dqn.make_algorithm(config, env=env, env_params=env_params)
    state, metrics = jax.jit(algorithm.update)(algorithm.init(jax.random.PRNGKey(0)))
    assert int(metrics["episodes"]) == 6 and int(state.extra["buffer"].size) == 32  # 2 envs × 16 steps, 3 ends each
    data = jax.tree.map(lambda x: np.asarray(x[:32]).reshape((16, 2) + x.shape[1:]), state.extra["buffer"].data)
    # Where the episode goes on, s' is the next step's s (to float rounding: XLA may compute the
    # final observation and the carried one in different fusions); at a reset it is not.
    ends = np.abs(data["next_obs"][:-1] - data["obs"][1:]).max(-1) > 1e-5  # [T − 1, B]
    assert ends.sum() == 6 and not data["terminated"].any()
    q = algorithm.policy.apply(state.params["policy"], data["next_obs"].reshape(-1, 4))
    y = value_learning.td_target(data["reward"].reshape(-1), data["terminated"].reshape(-1), q, 0.99)
    np.testing.assert_allclose(y, 1.0 + 0.99 * np.asarray(q).max(-1), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- learning


@pytest.fixture(scope="module")
def cartpole():
    """The default config (200k env steps per seed), 5 seeds vmapped, final greedy evaluation."""
    config = dqn.Config()
    algorithm = dqn.make_algorithm(config)
    state, metrics = jax.jit(jax.vmap(dqn.make_train(config)))(seeds(5))
    evaluate = algos.make_evaluate(algorithm, 16)
    returns = np.asarray(evaluate(jax.random.split(jax.random.PRNGKey(1234), 5), state.params["policy"])).mean(axis=1)
    return config, metrics, returns


def test_cartpole_solved_with_replay_and_target_over_five_seeds(cartpole):
    config, metrics, returns = cartpole
    assert config.replay and config.target_network
    assert config.num_updates * config.steps_per_update <= 200_000
    print("DQN CartPole-v1 final greedy returns per seed:", returns)
    assert np.median(returns) >= 475


def test_metrics_per_update(cartpole):
    config, metrics, _ = cartpole
    assert set(metrics) == {
        "update", "env_steps", "episode_return", "episode_length", "episodes", "loss", "q_mean", "epsilon", "grad_steps"
    }
    assert all(np.shape(v) == (5, config.num_updates) for v in metrics.values())
    env_steps = np.asarray(metrics["env_steps"][0])
    loss = np.asarray(metrics["loss"])
    learning = env_steps >= config.learning_starts
    np.testing.assert_array_equal(np.asarray(metrics["grad_steps"][0]), np.cumsum(learning) * config.gradient_steps)
    assert np.all(loss[:, ~learning] == 0) and np.all(np.isfinite(loss)) and np.all(loss[:, learning] > 0)
    eps = np.asarray(metrics["epsilon"][0])
    assert eps[0] == config.eps_start and np.isclose(eps[-1], config.eps_end) and np.all(np.diff(eps) <= 0)


@pytest.fixture(scope="module")
def small():
    config = dqn.Config(num_envs=2, train_freq=8, gradient_steps=2, total_timesteps=16 * 24, learning_starts=64,
                        buffer_size=128, batch_size=16, target_update_every=3, hidden=(16,), double=True)
    return config, dqn.make_train(config)


def test_seed_alone_equals_seed_in_a_batch_bit_for_bit(small):
    _, train = small
    keys = seeds(3)
    batch_state, batch_metrics = jax.jit(algos.over_seeds(train))(keys)
    alone_state, alone_metrics = jax.jit(train)(keys[1])
    for name in batch_metrics:
        np.testing.assert_array_equal(batch_metrics[name][1], alone_metrics[name], err_msg=name)
    jax.tree.map(lambda b, a: np.testing.assert_array_equal(b[1], a), batch_state.params, alone_state.params)
    jax.tree.map(lambda b, a: np.testing.assert_array_equal(b[1], a), batch_state.extra["target_params"], alone_state.extra["target_params"])
    assert not np.array_equal(batch_metrics["loss"][0], batch_metrics["loss"][1])


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(num_envs=0), "`num_envs` must be a positive integer"),
        (dict(train_freq=-1), "`train_freq`"),
        (dict(batch_size=0), "`batch_size`"),
        (dict(total_timesteps=10), "`total_timesteps` \\(10\\)"),
        (dict(buffer_size=10), "`buffer_size` \\(10\\) must hold"),
        (dict(learning_starts=10**6), "`learning_starts`"),
        (dict(loss="l1"), "`loss` must be one of"),
        (dict(lr=0.0), "`lr` must be > 0"),
        (dict(gamma=1.5), "`gamma` must lie in"),
        (dict(eps_end=-0.1), "`eps_end` must lie in"),
        (dict(tau=0.0), "`tau` must be > 0"),
        (dict(hidden=(0,)), "`hidden`"),
        (dict(env_id="Cartpole-v1"), "Did you mean CartPole-v1"),
    ],
)
def test_bad_config_names_the_field(fields, words):
    with pytest.raises(ValueError, match=words):
        dqn.make_train(dqn.Config(**fields))


def test_learning_starts_may_equal_the_run_length():
    """An update learns once its env steps reach learning_starts (>=), so learning_starts equal to
    the run's env steps still learns on the last update; one more step never would."""
    sizes = dict(num_envs=2, train_freq=3, total_timesteps=18, buffer_size=6, batch_size=4, hidden=(4,))
    dqn.Config(**sizes, learning_starts=18).validate()
    with pytest.raises(ValueError, match=r"`learning_starts` \(19\) must be at most the run's 18 env steps"):
        dqn.Config(**sizes, learning_starts=19).validate()


def test_continuous_actions_are_refused():
    with pytest.raises(ValueError, match="Discrete action space"):
        dqn.make_algorithm(dqn.Config(env_id="Pendulum-v1"))


def test_unknown_hparam_is_refused(small):
    _, train = small
    with pytest.raises(ValueError, match="`hparams` may override only"):
        train(jax.random.PRNGKey(0), {"buffer_size": 3})


# ----------------------------------------------------------------------------- the ablation script


def test_ablation_quick_writes_its_files(tmp_path):
    from experiments import dqn_ablation

    out = tmp_path / "ablation"
    args = dqn_ablation.Args(out=out, quick=True, envs=("CartPole-v1",), total_timesteps=(1,))
    results = dqn_ablation.run(args)
    assert {p.name for p in out.iterdir()} == {"results.json", "results.md", "ablation.png"}
    saved = json.loads((out / "results.json").read_text())
    assert [(r["replay"], r["target_network"]) for r in saved["ablation"]] == list(dqn_ablation.SWITCHES)
    assert all(len(r["final_greedy_return"]["per_seed"]) == 2 for r in saved["ablation"])
    grid = results["gridworld"]
    for learner in ("dqn", "reinforce"):
        assert 0.0 <= grid[learner]["success_rate"]["median"] <= 1.0
    # No deterministic policy over the aliased observations beats the enumerated best one.
    assert grid["dqn"]["exact_expected_steps"]["min"] >= grid["best_deterministic"]["exact_expected_steps"] - 1e-3
    assert "| CartPole-v1" in (out / "results.md").read_text()
    with pytest.raises(FileExistsError, match="already holds a run"):
        dqn_ablation.run(args)


def test_progress_lines_show_epsilon_and_label_seeds_when_the_last_update_is_not_logged():
    from rlpg.experiment import ProgressPrinter

    lines = []
    printer = ProgressPrinter(num_seeds=2, total_updates=25, print_fn=lines.append)
    for _ in range(2):  # seeds one after another (over_seeds); log_every = 10 never logs update 25
        for update in (10, 20):
            printer({"update": update, "env_steps": 64 * update, "episode_return": 9.5, "loss": 0.1, "epsilon": 0.25})
    assert [line.split("  update")[0] for line in lines] == ["seed 1/2"] * 2 + ["seed 2/2"] * 2
    assert all("epsilon 0.250" in line and "entropy" not in line for line in lines)


# ----------------------------------------------------------------------------- one update at a time


@pytest.fixture(scope="module")
def stepwise():
    """A tiny double-DQN run driven one update at a time: 2 envs × 4 steps = 8 env steps per
    update, learning_starts = 16 (the env steps after update 2), one gradient step per update on
    the update's own transitions (no replay), the target copied (τ = 1) every 3 gradient steps,
    greedy acting (ε = 0). Returns (config, algorithm, jitted update, [state after update 0..4],
    [metrics of update 1..4])."""
    config = dqn.Config(num_envs=2, train_freq=4, gradient_steps=1, total_timesteps=32, learning_starts=16,
                        replay=False, double=True, target_update_every=3, tau=1.0, eps_start=0.0, eps_end=0.0,
                        hidden=(8,), batch_size=8)
    algorithm = dqn.make_algorithm(config)
    update = jax.jit(algorithm.update)
    states, metrics = [algorithm.init(jax.random.PRNGKey(0))], []
    for _ in range(4):
        state, m = update(states[-1])
        states.append(state)
        metrics.append(m)
    return config, algorithm, update, states, metrics


def test_first_gradient_step_is_at_the_update_reaching_learning_starts(stepwise):
    """Learning starts once env steps >= learning_starts: with 8 env steps per update and
    learning_starts = 16, update 2 (16 env steps) already takes its gradient step, and update 1
    none. Fails on a `>` comparison, which waits until update 3."""
    config, _, _, _, metrics = stepwise
    assert [int(m["env_steps"]) for m in metrics] == [8, 16, 24, 32]
    assert [int(m["grad_steps"]) for m in metrics] == [0, 1, 2, 3]
    assert float(metrics[0]["loss"]) == 0.0 and float(metrics[1]["loss"]) > 0.0


def test_target_network_is_copied_after_every_third_gradient_step(stepwise):
    """τ = 1, target_update_every = 3: θ⁻ stays the initial θ through gradient steps 1 and 2 and
    equals the online θ right after step 3. Fails on a refresh test on the gradient-step count
    before the increment (copies after step 1, then after steps 4, 7, ...)."""
    config, _, _, states, _ = stepwise
    initial = states[0].params["policy"]
    for state, steps in zip(states[2:], (1, 2, 3)):
        assert int(state.extra["grad_steps"]) == steps
        target, online = state.extra["target_params"], state.params["policy"]
        expected = initial if steps < 3 else online
        jax.tree.map(lambda t, e: np.testing.assert_array_equal(t, e, err_msg=f"after gradient step {steps}"), target, expected)
        if steps < 3:  # the check can tell: the online network has moved away from the initial one
            assert any(not np.array_equal(o, i) for o, i in zip(jax.tree.leaves(online), jax.tree.leaves(initial)))


def test_double_dqn_loss_selects_with_the_online_network_and_evaluates_with_the_target(stepwise):
    """With θ⁻ ≠ θ whose greedy actions at s' differ, double DQN's loss (the `loss` metric of the
    update's one gradient step on its own transitions) equals ½ mean (Q_θ(s, a) − y)² with
    y = r + γ (1 − terminated) Q_θ⁻(s', argmax_a Q_θ(s', a)) computed by hand, and not vanilla
    DQN's. Fails on selecting the bootstrap action with the target network (double silently off)."""
    config, algorithm, update, states, _ = stepwise
    q_network = algorithm.policy
    state = states[1]  # update 2 is the first that learns
    online = state.params["policy"]
    leaves, treedef = jax.tree.flatten(online)  # θ⁻: θ moved far enough to reorder Q's actions
    keys = jax.random.split(jax.random.PRNGKey(42), len(leaves))
    target = jax.tree.unflatten(treedef, [x + jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    state = state.replace(extra={**state.extra, "target_params": target})
    # ε = 0: the actions are greedy, and the key only draws the reset states after an episode
    # ends, which the transitions hold only if one ends before the window's last step.
    _, traj = rollout.rollout(jax.random.PRNGKey(7), policies.epsilon_greedy(q_network),
                              {"q": state.params["policy"], "epsilon": 0.0},
                              algorithm.env, algorithm.env_params, state.envs, config.train_freq)
    assert not np.asarray(traj.terminated | traj.truncated)[:-1].any()
    batch = {k: np.asarray(v) for k, v in dqn.transitions(traj).items()}
    q = np.asarray(q_network.apply(online, batch["obs"]))
    q_taken = q[np.arange(len(q)), batch["action"]]
    next_online = np.asarray(q_network.apply(online, batch["next_obs"]))
    next_target = np.asarray(q_network.apply(target, batch["next_obs"]))
    not_done = 1.0 - batch["terminated"]
    best = next_online.argmax(-1)
    assert np.any(best != next_target.argmax(-1))  # the premise: the two networks disagree
    double = batch["reward"] + config.gamma * not_done * next_target[np.arange(len(q)), best]
    vanilla = batch["reward"] + config.gamma * not_done * next_target.max(-1)
    double_loss, vanilla_loss = 0.5 * np.mean((q_taken - double) ** 2), 0.5 * np.mean((q_taken - vanilla) ** 2)
    assert abs(double_loss - vanilla_loss) > 1e-3 * vanilla_loss
    _, metrics = update(state)
    assert int(metrics["grad_steps"]) == 1
    np.testing.assert_allclose(metrics["loss"], double_loss, rtol=1e-5)
