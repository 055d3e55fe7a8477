"""PPO on gymnax: CartPole over five seeds, a Gaussian policy on Pendulum, seeds and sweeps,
normalization carried into evaluation and `load_policy`, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlpg
from experiments import train as train_cli
from rlpg import algos, normalization, rollout
from rlpg.algos import on_policy, optim, ppo


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


# ----------------------------------------------------------------------------- one learning step, by hand

ONE_STEP = dict(num_envs=4, num_steps=8, total_timesteps=4 * 8, num_epochs=1, num_minibatches=1, hidden=(8,), clip_value=True)


def one_step_learn(**fields):
    """(config, networks, learn(params, traj, hparams) -> stats) for PPO's learning step with one
    epoch of one minibatch: the stats are the losses at `params` themselves, before the step."""
    config = ppo.Config(**{**ONE_STEP, **fields})
    networks = on_policy.make_networks(config)
    learner = ppo.make_learner(config, networks)

    @jax.jit
    def learn(params, traj, hparams):
        cfg = config.replace(**hparams)
        opt_state, extra = learner.init(params, cfg)
        return learner.learn(params, opt_state, extra, traj, cfg, jax.random.PRNGKey(0))[3]

    return config, networks, learn


def hparams(ent_coef=0.0, lam=0.95):
    return {"ent_coef": jnp.float32(ent_coef), "lam": jnp.float32(lam)}


@pytest.fixture(scope="module")
def one_step():
    """A CartPole window of 8 steps × 4 envs under fresh parameters, with rewards ~ N(0, 1) (not
    all 1: standardized advantages need a spread) and log π_old off the acting policy by ~0.1 (ρ ≠ 1)."""
    config, networks, learn = one_step_learn()
    policy_key, value_key, env_key, rollout_key = jax.random.split(jax.random.PRNGKey(7), 4)
    params = {"policy": networks.policy.init(policy_key), "value": networks.value_fn.init(value_key)}
    envs = rollout.reset(env_key, networks.env, networks.env_params, config.num_envs)
    _, traj = rollout.rollout(rollout_key, networks.policy, params["policy"], networks.env, networks.env_params, envs, config.num_steps)
    rng = np.random.default_rng(0)
    shape = traj.reward.shape
    traj = traj.replace(reward=jnp.asarray(rng.normal(size=shape), jnp.float32),
                        log_prob=traj.log_prob + jnp.asarray(0.1 * rng.normal(size=shape), jnp.float32))
    return config, networks, learn, params, traj


def test_entropy_bonus_is_subtracted_from_the_loss(one_step):
    """L = L_clip + c_v L_V − c_H mean H: at ent_coef c the loss is the loss at 0 minus c × the
    mean entropy. Fails on a loss that adds the entropy (a penalty that drives exploration out)."""
    _, _, learn, params, traj = one_step
    at_zero, at_half = learn(params, traj, hparams(0.0)), learn(params, traj, hparams(0.5))
    np.testing.assert_allclose(at_half["entropy"], at_zero["entropy"], rtol=1e-6)
    assert float(at_zero["entropy"]) > 0.1
    np.testing.assert_allclose(at_half["loss"], at_zero["loss"] - 0.5 * at_zero["entropy"], rtol=1e-5, atol=1e-6)


def test_normalize_advantages_makes_the_policy_step_affine_invariant(one_step):
    """With normalize_advantages the surrogate sees standardized advantages: with V ≡ 0 and λ = 0
    the advantages are the rewards, and rewards 10 r + 3 give the same policy loss and gradient as r
    (without it, both change). Fails on a loss that uses the raw advantages."""
    _, networks, learn, params, traj = one_step
    params = {**params, "value": jax.tree.map(jnp.zeros_like, params["value"])}  # V ≡ 0: A_t = r_t at λ = 0
    scaled = traj.replace(reward=10.0 * traj.reward + 3.0)
    for normalize, learn_it in ((True, learn), (False, one_step_learn(normalize_advantages=False)[2])):
        before, after = learn_it(params, traj, hparams(lam=0.0)), learn_it(params, scaled, hparams(lam=0.0))
        same = [np.allclose(before[name], after[name], rtol=1e-4, atol=1e-5) for name in ("policy_loss", "grad_norm")]
        assert same == [normalize] * 2, (normalize, {n: (float(before[n]), float(after[n])) for n in ("policy_loss", "grad_norm")})


def test_clipped_value_loss_compares_new_values_with_old_values_and_targets(one_step):
    """clip_value: L_V = ½ mean max((V − G)², (V_old + clip(V − V_old, ±ε) − G)²), V_old the values
    at collection (at the step's own parameters V = V_old, so L_V = ½ mean (V − G)²), G the GAE
    targets. Fails on a call with old values and targets swapped (½ mean (|G − V| − ε)₊² here)."""
    config, networks, learn, params, traj = one_step
    stats = learn(params, traj, hparams(lam=0.9))
    value = lambda obs: np.asarray(networks.value(params, obs), np.float64)
    v, v_next = value(traj.obs), value(traj.next_obs)
    r, term, trunc = (np.asarray(x, np.float64) for x in (traj.reward, traj.terminated, traj.truncated))
    gamma, lam, eps = config.gamma, 0.9, config.clip_eps
    adv, a_next = np.zeros_like(r), np.zeros_like(r[0])
    for t in reversed(range(len(r))):
        a_next = r[t] + gamma * (1 - term[t]) * v_next[t] - v[t] + gamma * lam * (1 - term[t]) * (1 - trunc[t]) * a_next
        adv[t] = a_next
    target, old = adv + v, v
    expected = 0.5 * np.mean(np.maximum((v - target) ** 2, (old + np.clip(v - old, -eps, eps) - target) ** 2))
    assert expected > 0.05
    np.testing.assert_allclose(stats["value_loss"], expected, rtol=1e-4)


def test_each_epoch_shuffles_with_its_own_key(one_step, monkeypatch):
    """The num_epochs passes shuffle the batch with keys split(key, num_epochs), one per epoch.
    Fails on every epoch reusing one key (the same minibatches each pass)."""
    *_, params, traj = one_step  # the same networks and window shapes: only the epochs and minibatches differ
    seen = []
    original = optim.minibatches

    def recording(key, data, num_minibatches):
        jax.debug.callback(lambda k: seen.append(np.asarray(k)), key, ordered=True)
        return original(key, data, num_minibatches)

    monkeypatch.setattr(optim, "minibatches", recording)
    config = ppo.Config(**{**ONE_STEP, "num_epochs": 3, "num_minibatches": 2})
    networks = on_policy.make_networks(config)
    learner = ppo.make_learner(config, networks)
    key = jax.random.PRNGKey(4)
    jax.block_until_ready(learner.learn(params, *learner.init(params, config), traj, config, key))
    jax.effects_barrier()
    np.testing.assert_array_equal(np.stack(seen), np.asarray(jax.random.split(key, 3)))
    assert len({tuple(k.tolist()) for k in seen}) == 3


def test_annealed_learning_rate_reaches_zero_only_after_the_last_minibatch_step():
    """anneal_lr decays lr linearly to 0 over every optimizer step of the run, num_updates ×
    num_epochs × num_minibatches, so the last update still moves the parameters. Fails on a
    schedule over num_updates steps (lr 0 from the third minibatch step on: updates 2 and 3 stand still)."""
    config = ppo.Config(**{**ONE_STEP, "total_timesteps": 3 * 4 * 8, "num_epochs": 2, "num_minibatches": 2, "anneal_lr": True})
    algorithm = ppo.make_algorithm(config)
    update = jax.jit(algorithm.update)
    states = [algorithm.init(jax.random.PRNGKey(0))]
    for _ in range(config.num_updates):
        states.append(update(states[-1])[0])
    for before, after in zip(states[:-1], states[1:]):
        moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                    for a, b in zip(jax.tree.leaves(after.params["policy"]), jax.tree.leaves(before.params["policy"])))
        assert moved > 1e-6, int(after.update)
