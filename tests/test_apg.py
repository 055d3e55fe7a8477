"""APG/SHAC (rlpg.algos.apg): learns LQR-v0 over several seeds to within reach of the exact
optimum of linear policies, its critic fits, and the flags reach its Config."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import train as train_script
from rlpg import exact
from rlpg.algos import ALGOS, apg, make_evaluate, over_seeds


def best_linear_return(env, env_params) -> float:
    """max_K J(K, σ → 0) by Adam on the exact J (`rlpg.exact.lqr_expected_return`)."""
    j = jax.jit(lambda k: exact.lqr_expected_return(env, env_params, k, jnp.array([-10.0])))
    grad = jax.jit(jax.grad(lambda k: -j(k)))
    gain, opt = jnp.zeros((1, 2)), optax.adam(0.05)
    state = opt.init(gain)
    for _ in range(300):
        updates, state = opt.update(grad(gain), state)
        gain = optax.apply_updates(gain, updates)
    return float(j(gain)), float(j(jnp.zeros((1, 2))))


def test_shac_learns_lqr_over_seeds():
    """3 seeds, 40 updates of 8 envs × 10-step windows (episodes of 50 steps span 5 windows, so
    the critic's bootstrap at the cut carries the episode's future): each seed's greedy return
    closes at least 80% of the gap between the zero policy and the best linear policy."""
    config = apg.Config(env_id="LQR-v0", num_envs=8, num_steps=10, total_timesteps=8 * 10 * 40, hidden=(16,), critic=True)
    algorithm = apg.make_algorithm(config)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    state, metrics = jax.jit(over_seeds(apg.make_train(config), vectorize=True))(keys)
    returns = make_evaluate(algorithm, 64)(keys, state.params["policy"]).mean(1)
    best, zero = best_linear_return(algorithm.env, algorithm.env_params)
    threshold = zero + 0.8 * (best - zero)
    assert np.all(np.asarray(returns) > threshold), (returns, threshold, best, zero)
    value_loss = np.asarray(metrics["value_loss"])
    assert np.all(value_loss[:, -5:].mean(1) < value_loss[:, :5].mean(1))  # the critic fits its targets
    assert set(metrics) >= {"episode_return", "loss", "grad_norm", "value_loss", "env_steps"}


def test_registered_and_flags_map_onto_config():
    assert ALGOS["apg"] is apg
    args = train_script.Args(algo="apg", env="Pendulum-v1", critic=True, critic_lr=3e-3, num_steps=16, lr=5e-3)
    module, config = train_script.make_config(args)
    assert module is apg and config.critic and config.critic_lr == 3e-3 and config.num_steps == 16 and config.lr == 5e-3
    with pytest.raises(ValueError, match="`--critic` does not apply to --algo ppo"):
        train_script.make_config(train_script.Args(algo="ppo", critic=True))


def test_env_without_transition_gradients_is_refused():
    with pytest.raises(ValueError, match="`env_id` 'CartPole-v1' has no transition gradients"):
        apg.Config(env_id="CartPole-v1").validate()
    with pytest.raises(ValueError, match="`critic_lr` must be > 0"):
        apg.Config(critic_lr=0.0).validate()


def test_observation_normalization_is_refused_not_ignored():
    """APG's update keeps no observation statistics: normalize_obs would silently do nothing."""
    with pytest.raises(ValueError, match="`normalize_obs` must be False for APG"):
        apg.Config(normalize_obs=True).validate()


def test_critic_targets_bootstrap_from_the_next_state_and_at_the_time_limit(monkeypatch):
    """The critic's TD(λ) targets (`returns.gae`, read through a spy) take V(s'_t) of each step's
    next state: V(obs[t + 1]) inside an episode, the pre-reset final state at LQR-v0's 50-step time
    limit, which is a truncation and so still bootstraps: G_49 = r_49 + γ V(s'_49). Fails on next
    values of obs[t] and on the terminated and truncated flags swapped; otherwise only the 3-seed
    SHAC learning run could tell."""
    captured = []
    gae = apg.returns.gae

    def spy(rewards, values, next_values, terminated, truncated, gamma, lam):
        advantages, targets = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
        jax.debug.callback(lambda *a: captured.append([np.asarray(x) for x in a]), rewards, values, next_values, truncated, targets, gamma)
        return advantages, targets

    monkeypatch.setattr(apg.returns, "gae", spy)
    config = apg.Config(env_id="LQR-v0", num_envs=1, num_steps=60, total_timesteps=60, hidden=(4,), critic=True, value_steps=1)
    algorithm = apg.make_algorithm(config)
    jax.block_until_ready(jax.jit(algorithm.update)(algorithm.init(jax.random.PRNGKey(0))))
    jax.effects_barrier()
    rewards, values, next_values, truncated, targets, gamma = captured[0]  # [T, B]
    assert np.flatnonzero(truncated[:, 0]).tolist() == [49]
    inside = np.arange(59) != 49  # s'_t = s_{t+1} except at the reset after step 49
    np.testing.assert_allclose(next_values[:-1][inside], values[1:][inside], rtol=1e-5, atol=1e-6)
    assert abs(next_values[49, 0] - values[50, 0]) > 1e-3  # the final state, not the reset one
    np.testing.assert_allclose(targets[49, 0], rewards[49, 0] + gamma * next_values[49, 0], rtol=1e-5)
