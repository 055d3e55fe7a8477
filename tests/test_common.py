"""The shared skeleton: Configs checked from their field declarations, traced fields derived from
them, every field documented, and the on-policy update collecting, learning and normalizing as
its docstring says (keys, envs, parameters handed on)."""

import dataclasses
import math
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import algos, normalization, rollout
from rlpg.algos import a2c, common, on_policy, reinforce

CONFIGS = {name: module.Config for name, module in algos.ALGOS.items()}

# What each algorithm's hparams could override before the fields declared it (hand-written then).
TRACED_BEFORE = {
    "reinforce": {"lr", "gamma", "value_coef", "ent_coef", "max_grad_norm", "reward_scale"},
    "a2c": {"lr", "gamma", "lam", "value_coef", "ent_coef", "max_grad_norm"},
    "ppo": {"lr", "gamma", "lam", "clip_eps", "value_coef", "ent_coef", "max_grad_norm"},
    "npg": {"lr", "gamma", "lam", "max_kl", "damping", "max_grad_norm"},
    "dqn": {"lr", "gamma", "eps_start", "eps_end", "exploration_fraction", "tau", "max_grad_norm"},
    "apg": {"lr", "critic_lr", "gamma", "lam", "max_grad_norm"},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_traced_fields_are_derived_from_the_field_declarations(name):
    config_class = CONFIGS[name]
    traced = {f.name for f in dataclasses.fields(config_class) if f.metadata.get("pytree_node", True)}
    assert set(common.numeric_fields(config_class)) == traced == TRACED_BEFORE[name]
    assert algos.ALGOS[name].NUMERIC_FIELDS == common.numeric_fields(config_class)
    leaves = jax.tree.leaves(config_class())  # a Config is a pytree of exactly its numeric fields
    assert len(leaves) == len(traced)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_field_has_a_docstring(name):
    docs = common.field_docs(CONFIGS[name])
    missing = [f.name for f in dataclasses.fields(CONFIGS[name]) if not docs.get(f.name)]
    assert not missing, f"{name}.Config fields without a docstring: {missing}"


def bad_values(config_class):
    """(field, a value its declaration forbids) for every field validate checks from its type."""
    types = common.field_types(config_class)
    for field in dataclasses.fields(config_class):
        kind, meta = types[field.name], field.metadata
        if meta.get("pytree_node", True):
            yield field.name, 0.0 if meta["positive"] else meta["low"] - 1.0
            if meta["high"] < math.inf:
                yield field.name, meta["high"] + 0.5
        elif kind is int:
            yield field.name, meta.get("minimum", 1) - 1
        elif kind is bool:
            yield field.name, "yes"
        elif typing.get_origin(kind) is typing.Literal:
            yield field.name, "no-such-choice"


@pytest.mark.parametrize("name", CONFIGS)
def test_validate_refuses_what_each_field_declaration_forbids(name):
    config_class = CONFIGS[name]
    cases = list(bad_values(config_class))
    assert len(cases) >= len(common.numeric_fields(config_class)) + 4
    for field, value in cases:
        with pytest.raises((ValueError, TypeError), match=f"`{field}`"):
            config_class(**{field: value}).validate()
    config_class().validate()  # the defaults are valid


def test_literal_choices_are_read_from_the_annotations():
    choices = common.field_choices(reinforce.Config)
    assert choices["baseline"] == reinforce.BASELINES == ("none", "mean", "rloo", "value")
    assert choices["activation"] == ("tanh", "relu", "gelu")
    assert choices["continuous_actions"] == ("clip", "tanh")


# ----------------------------------------------------------------------------- the on-policy skeleton

SMALL = dict(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 3, hidden=(8,))


def probe_learner(config, networks):
    """A learning step that changes nothing and reports what it was handed."""

    def learn(params, opt_state, extra, traj, cfg, key):
        stats = {"obs_sum": traj.obs.sum(), "log_prob_sum": traj.log_prob.sum(), "key": jax.random.key_data(key)[0]}
        return params, opt_state, {"count": extra["count"] + 1}, stats

    return on_policy.Learner(init=lambda params, cfg: ({}, {"count": jnp.zeros((), jnp.int32)}), learn=learn, uses_value=False, uses_key=True)


def test_skeleton_collects_with_the_documented_keys_and_carries_envs_and_extra():
    """The update's window is `rollout.rollout` from the carried envs with the key split
    (key, rollout_key, learn_key) = split(state.key, 3); init splits (policy, value, env, run)."""
    config = a2c.Config(**SMALL)
    algorithm = on_policy.make_algorithm(config, probe_learner)
    state, metrics = jax.jit(algos.train_fn(algorithm))(jax.random.PRNGKey(3))
    assert "value" not in state.params and int(state.extra["count"]) == config.num_updates

    policy_key, _, env_key, run_key = jax.random.split(jax.random.PRNGKey(3), 4)
    params = algorithm.policy.init(policy_key)
    envs = rollout.reset(env_key, algorithm.env, algorithm.env_params, config.num_envs)
    key = run_key
    for i in range(config.num_updates):
        key, rollout_key, learn_key = jax.random.split(key, 3)
        envs, traj = rollout.rollout(rollout_key, algorithm.policy, params, algorithm.env, algorithm.env_params, envs, config.num_steps)
        np.testing.assert_allclose(metrics["obs_sum"][i], traj.obs.sum(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(metrics["log_prob_sum"][i], traj.log_prob.sum(), rtol=1e-5, atol=1e-4)
        assert metrics["key"][i] == jax.random.key_data(learn_key)[0]
    np.testing.assert_array_equal(metrics["update"], np.arange(1, config.num_updates + 1))
    np.testing.assert_array_equal(metrics["env_steps"], np.arange(1, config.num_updates + 1) * config.steps_per_update)


@pytest.mark.parametrize("module, fields", [(a2c, {}), (reinforce, {"baseline": "none"})])
def test_normalize_obs_merges_each_windows_observations(module, fields):
    """Every on-policy algorithm gains normalize_obs: the statistics count num_steps × num_envs
    observations per update (REINFORCE's continuation past the window is not merged)."""
    config = module.Config(**SMALL, normalize_obs=True, **fields)
    state, _ = jax.jit(module.make_train(config))(jax.random.PRNGKey(0))
    stats = state.params["policy"]["obs_stats"]
    assert float(stats["count"]) == config.num_updates * config.steps_per_update
    assert np.all(np.asarray(stats["var"]) > 0) and not np.allclose(np.asarray(stats["mean"]), 0.0)


def test_a_config_field_and_one_seeds_hparam_are_scalars():
    """A list in a Config field, or an array hparam for one seed's train, trained silently before:
    `gamma` [0.9, 0.5] broadcast over the environments, one discount per column."""

    with pytest.raises(TypeError, match=r"`gamma` must be a number; got list \[0.9, 0.5\].*one value per seed in hparams"):
        reinforce.Config(gamma=[0.9, 0.5]).validate()
    algorithm = reinforce.make_algorithm(reinforce.Config(num_envs=2, num_steps=4, total_timesteps=8, hidden=(4,)))
    with pytest.raises(ValueError, match=r"`hparams\['gamma'\]` must be a scalar for one seed's train/init; got shape \(2,\)"):
        algorithm.init(jax.random.PRNGKey(0), {"gamma": jnp.array([0.9, 0.5])})
    keys = jax.random.split(jax.random.PRNGKey(0), 2)  # one per seed, as over_seeds takes them: accepted
    jax.eval_shape(algos.over_seeds(algorithm.init), keys, {"gamma": jnp.array([0.9, 0.5])})


def test_values_and_advantages_bootstrap_a_truncation_from_the_final_observation():
    """GAE's V(s'_t) is V of the pre-reset final observation `next_obs[t]`, not of the next row's
    (reset) obs[t + 1]: a hand window with a truncation (next_obs ≠ obs[t + 1] there) and a
    termination, V(s) = sum(s), against a naive GAE loop. Fails on next values taken from obs[1:]."""
    T, B = 4, 2
    rng = np.random.default_rng(0)
    states = rng.normal(size=(T + 1, B, 3)).astype(np.float32)
    obs, next_obs = states[:-1].copy(), states[1:].copy()
    terminated, truncated = np.zeros((T, B), bool), np.zeros((T, B), bool)
    truncated[1, 0] = True  # env 0 hits its time limit at t = 1 and resets: obs[2, 0] is a fresh state
    next_obs[1, 0] = obs[2, 0] + 5.0
    terminated[2, 1] = True
    next_obs[2, 1] = obs[3, 1] - 4.0
    rewards = rng.normal(size=(T, B)).astype(np.float32)
    zeros = np.zeros((T, B), np.float32)
    traj = rollout.Trajectory(obs=obs, action=np.zeros((T, B), np.int32), reward=zeros, terminated=terminated,
                              truncated=truncated, log_prob=zeros, next_obs=next_obs, episode_return=zeros, episode_length=zeros)
    gamma, lam = 0.9, 0.8
    values, advantages, targets = on_policy.values_and_advantages(lambda s: s.sum(-1), traj, rewards, gamma, lam)

    v, v_next = obs.sum(-1).astype(np.float64), next_obs.sum(-1).astype(np.float64)
    expected, a_next = np.zeros((T, B)), np.zeros(B)
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * (1 - terminated[t]) * v_next[t] - v[t]
        a_next = delta + gamma * lam * (1 - terminated[t]) * (1 - truncated[t]) * a_next
        expected[t] = a_next
    np.testing.assert_allclose(values, v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, expected + v, rtol=1e-5, atol=1e-5)


def test_normalize_rewards_divides_by_the_spread_of_every_return_so_far():
    """Over two windows: g_t = r_t + γ g_{t−1} per env, reset to 0 after a done step; each window's
    rewards are divided by sqrt(var + 1e-8), var the population variance of every g so far,
    THIS window's included. Fails on scaling by the statistics from before the window is merged."""
    T, B, gamma = 5, 3, 0.9
    rng = np.random.default_rng(1)
    stats, carry = normalization.init_stats(), jnp.zeros((B,), jnp.float32)
    g_prev, seen = np.zeros(B), []
    for window in range(2):
        rewards = rng.normal(1.0, 2.0, size=(T, B)).astype(np.float32)
        dones = rng.random((T, B)) < 0.25
        scaled, stats, carry = on_policy.normalize_rewards(stats, carry, rewards, dones, gamma)
        for t in range(T):
            g = rewards[t] + gamma * g_prev
            seen.extend(g)
            g_prev = np.where(dones[t], 0.0, g)
        var = np.var(np.asarray(seen))
        np.testing.assert_allclose(scaled, rewards / np.sqrt(var + 1e-8), rtol=1e-5, atol=1e-6, err_msg=f"window {window}")
        np.testing.assert_allclose(stats["var"], var, rtol=1e-5)
        assert float(stats["count"]) == len(seen)
        np.testing.assert_allclose(carry, g_prev, rtol=1e-5, atol=1e-6)
