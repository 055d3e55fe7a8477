"""A2C on gymnax: CartPole over five seeds, swept seeds equal lone runs bit for bit, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import algos, rollout
from rlpg.algos import a2c, on_policy


def seeds(n):
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(n))


def test_cartpole_solved_within_500k_steps_over_five_seeds():
    """Defaults: median final greedy return over 5 seeds >= 475 within 500k env steps per seed."""
    config = a2c.Config()
    assert config.num_updates * config.steps_per_update <= 500_000
    algorithm = a2c.make_algorithm(config)
    state, metrics = jax.jit(algos.over_seeds(algos.train_fn(algorithm)))(seeds(5))
    evaluate = algos.make_evaluate(algorithm, 16)
    returns = np.asarray(evaluate(jax.random.split(jax.random.PRNGKey(1234), 5), state.params["policy"])).mean(axis=1)
    print("A2C CartPole-v1 final greedy returns per seed:", returns)
    assert np.median(returns) >= 475
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))


@pytest.fixture(scope="module")
def small():
    config = a2c.Config(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 5, hidden=(16,))
    return config, a2c.make_train(config)


def test_swept_seeds_equal_lone_runs_bit_for_bit(small):
    """Two seeds × two learning rates in one program (lax.map); each equals its run alone."""
    _, train = small
    keys, lrs = seeds(2), jnp.array([1e-4, 1e-2])
    batch_state, batch_metrics = jax.jit(algos.over_seeds(train))(keys, {"lr": lrs})
    alone_state, alone_metrics = jax.jit(train)(keys[1], {"lr": lrs[1]})
    for name in batch_metrics:
        np.testing.assert_array_equal(batch_metrics[name][1], alone_metrics[name], err_msg=name)
    jax.tree.map(lambda b, a: np.testing.assert_array_equal(b[1], a), batch_state.params, alone_state.params)
    assert not np.allclose(batch_metrics["loss"][0], batch_metrics["loss"][1])


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(num_steps=0), "`num_steps` must be a positive integer"),
        (dict(lam=-0.1), "`lam` must lie in"),
        (dict(lr=0.0), "`lr` must be > 0"),
        (dict(env_id="Acrobat-v1"), "Did you mean Acrobot-v1"),
    ],
)
def test_bad_config_names_the_field(fields, words):
    with pytest.raises(ValueError, match=words):
        a2c.make_train(a2c.Config(**fields))


def test_entropy_bonus_is_subtracted_from_the_loss():
    """L = L_pg + c_v L_V − c_H mean H: on one window, at ent_coef c the loss (taken at the step's
    own parameters) is the loss at 0 minus c × the mean entropy. Fails on a loss that adds it."""
    config = a2c.Config(num_envs=4, num_steps=8, total_timesteps=4 * 8, hidden=(8,))
    networks = on_policy.make_networks(config)
    learner = a2c.make_learner(config, networks)
    policy_key, value_key, env_key, rollout_key = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"policy": networks.policy.init(policy_key), "value": networks.value_fn.init(value_key)}
    envs = rollout.reset(env_key, networks.env, networks.env_params, config.num_envs)
    _, traj = rollout.rollout(rollout_key, networks.policy, params["policy"], networks.env, networks.env_params, envs, config.num_steps)

    @jax.jit
    def stats(ent_coef):
        cfg = config.replace(ent_coef=ent_coef)
        opt_state, extra = learner.init(params, cfg)
        return learner.learn(params, opt_state, extra, traj, cfg, None)[3]

    at_zero, at_half = stats(jnp.float32(0.0)), stats(jnp.float32(0.5))
    assert float(at_zero["entropy"]) > 0.1
    np.testing.assert_allclose(at_half["entropy"], at_zero["entropy"], rtol=1e-6)
    np.testing.assert_allclose(at_half["loss"], at_zero["loss"] - 0.5 * at_zero["entropy"], rtol=1e-5, atol=1e-6)
