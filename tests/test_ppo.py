"""PPO on gymnax: CartPole over five seeds, a Gaussian policy on Pendulum, seeds and sweeps,
normalization carried into evaluation and `load_policy`, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlpg
from experiments import train as train_cli
from rlpg import algos, normalization
from rlpg.algos import ppo


def seeds(n):
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(n))


def final_eval(algorithm, policy_params, num_seeds, episodes=16, greedy=True):
    evaluate = algos.make_evaluate(algorithm, episodes, greedy)
    return np.asarray(evaluate(jax.random.split(jax.random.PRNGKey(1234), num_seeds), policy_params)).mean(axis=1)


def test_cartpole_solved_within_150k_steps_over_five_seeds():
    """Defaults: median final greedy return over 5 seeds >= 475 within 150k env steps per seed."""
    config = ppo.Config()
    assert config.num_updates * config.steps_per_update <= 150_000
    algorithm = ppo.make_algorithm(config)
    state, metrics = jax.jit(algos.over_seeds(algos.train_fn(algorithm)))(seeds(5))
    returns = final_eval(algorithm, state.params["policy"], 5)
    print("PPO CartPole-v1 final greedy returns per seed:", returns)
    assert np.median(returns) >= 475
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))
    kl = np.asarray(metrics["approx_kl"])
    assert np.all(kl >= 0) and np.all(kl < 0.5)
    assert np.all((np.asarray(metrics["clip_fraction"]) >= 0) & (np.asarray(metrics["clip_fraction"]) <= 1))


PENDULUM = dict(env_id="Pendulum-v1", num_envs=16, num_steps=128, total_timesteps=16 * 128 * 30, num_epochs=10,
                num_minibatches=8, lr=1e-3, gamma=0.95, normalize_obs=True, normalize_reward=True, anneal_lr=True)


def test_pendulum_gaussian_improves_over_initial_policy():
    config = ppo.Config(**PENDULUM)
    algorithm = ppo.make_algorithm(config)
    state, _ = jax.jit(algos.over_seeds(algos.train_fn(algorithm)))(seeds(3))
    initial = jax.vmap(lambda k: algorithm.init(k).params["policy"])(seeds(3))
    before, after = final_eval(algorithm, initial, 3), final_eval(algorithm, state.params["policy"], 3)
    print(f"PPO Pendulum-v1 greedy return: initial {before}, trained {after}")
    assert np.all(after > before + 300) and np.median(after) > -600
    # the observation statistic was learned from the data: cos θ, sin θ ~ mean 0, θ̇ spread > 1
    stats = jax.tree.map(lambda x: np.asarray(x[0]), state.params["policy"]["obs_stats"])
    assert stats["count"] == config.num_updates * config.steps_per_update
    assert np.all(stats["var"] > 0.05) and stats["var"][2] > 1.0


@pytest.fixture(scope="module")
def small():
    config = ppo.Config(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 4, num_epochs=2, num_minibatches=4,
                        hidden=(16,), normalize_obs=True, normalize_reward=True, clip_value=True, anneal_lr=True)
    return config, ppo.make_train(config)


def test_seed_alone_equals_seed_in_a_batch_bit_for_bit(small):
    _, train = small
    keys = seeds(3)
    batch_state, batch_metrics = jax.jit(algos.over_seeds(train))(keys)
    for i in (0, 2):
        alone_state, alone_metrics = jax.jit(train)(keys[i])
        for name in batch_metrics:
            np.testing.assert_array_equal(batch_metrics[name][i], alone_metrics[name], err_msg=name)
        jax.tree.map(lambda b, a: np.testing.assert_array_equal(b[i], a), batch_state.params, alone_state.params)


def test_hyperparameter_sweep_with_vmap(small):
    _, train = small
    lrs = jnp.array([1e-4, 1e-2])
    clip = jnp.array([0.1, 0.3])
    _, swept = jax.jit(jax.vmap(train))(seeds(2), {"lr": lrs, "clip_eps": clip})
    assert swept["loss"].shape == (2, 4)
    assert np.all(np.isfinite(np.asarray(swept["loss"])))
    # a hundred times the step size moves the policy much further from the data's policy
    assert np.mean(swept["approx_kl"][1]) > 10 * np.mean(swept["approx_kl"][0])


def test_normalization_is_one_statistic_over_all_envs(small):
    config, train = small
    state, _ = jax.jit(train)(jax.random.PRNGKey(0))
    steps = config.num_updates * config.steps_per_update
    assert state.params["policy"]["obs_stats"]["mean"].shape == (4,)  # CartPole's observation, no env axis
    assert state.params["policy"]["obs_stats"]["count"] == steps
    assert state.extra["return_stats"]["count"] == steps and state.extra["return_stats"]["var"].shape == ()
    assert state.extra["discounted_return"].shape == (config.num_envs,)


def test_cli_run_and_load_policy_apply_the_observation_statistics(tmp_path):
    args = train_cli.Args(algo="ppo", num_seeds=1, total_timesteps=4096, num_envs=4, num_steps=64, hidden=(16,),
                          normalize_obs=True, eval_episodes=2, log_every=0, out=tmp_path / "run")
    train_cli.run(args)
    act = rlpg.load_policy(tmp_path / "run")
    params = jax.tree.map(lambda x: x[0], rlpg.experiment.restore_params(tmp_path / "run" / "checkpoint")["policy"])
    assert params["obs_stats"]["count"] == 4096
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32) * [1.0, 2.0, 0.1, 2.0]
    _, config = train_cli.make_config(args)
    policy = ppo.make_algorithm(config).policy
    expected = np.asarray(policy.distribution.mode(policy.apply(params, obs)))
    raw = np.asarray(policy.distribution.mode(policy.apply({**params, "obs_stats": normalization.init_stats((4,))}, obs)))
    assert [act(o) for o in obs] == expected.tolist()
    assert np.any(expected != raw)  # the statistics matter for these observations


def test_minibatch_count_must_divide_the_batch():
    with pytest.raises(ValueError, match=r"`num_minibatches` \(3\) must divide num_envs × num_steps = 8 × 128 = 1024"):
        ppo.Config(num_minibatches=3).validate()


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(num_epochs=0), "`num_epochs` must be a positive integer"),
        (dict(total_timesteps=100), r"`total_timesteps` \(100\)"),
        (dict(lam=1.5), "`lam` must lie in"),
        (dict(clip_eps=0.0), "`clip_eps` must be > 0"),
        (dict(max_grad_norm=-1.0), "`max_grad_norm`"),
        (dict(env_id="Pendulum-v2"), "Did you mean"),
        (dict(hidden=()), "`hidden`"),
    ],
)
def test_bad_config_names_the_field(fields, words):
    with pytest.raises(ValueError, match=words):
        ppo.make_train(ppo.Config(**fields))


def test_cli_flag_of_another_algorithm_is_refused():
    with pytest.raises(ValueError, match="`--clip-eps` does not apply to --algo reinforce"):
        train_cli.make_config(train_cli.Args(algo="reinforce", clip_eps=0.1))
