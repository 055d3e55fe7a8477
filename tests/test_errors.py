"""Bad input at every public door fails with an error that names the argument (issue 16).

Each case is a call that used to fail deep inside jax/flax/numpy with a message naming nothing,
or worse, returned a wrong number silently. Nothing here trains: the checks run before any
computation, so every case is cheap. `rlpg.checked` (value checks compiled in with checkify)
is tested on small jitted programs.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import rlpg
from experiments import train as train_cli
from rlpg import distributions as D
from rlpg import estimators as E
from rlpg import exact as X
from rlpg import lab as L
from rlpg import normalization as N
from rlpg import policies as P
from rlpg import replay as RB
from rlpg import returns as R
from rlpg import rollout as RO
from rlpg._checks import check_seed
from rlpg.algos import a2c, dqn, npg, over_seeds, ppo, reinforce

KEY = jax.random.PRNGKey(0)
LOGITS = jnp.array([0.1, 0.2, 0.3])
NAN_LOGITS = jnp.array([0.1, jnp.nan, 0.3])
THETA, PHI = jnp.zeros(2), jnp.ones((3, 2))
REW = jnp.ones(5)
DONES = jnp.array([0, 0, 1, 0, 0])
MDP = X.tabular_mdp(jnp.ones((2, 2, 2)) / 2, jnp.zeros((2, 2)), jnp.array([0.5, 0.5]), 0.9)
TINY = dict(num_envs=2, num_steps=4, total_timesteps=8, hidden=(4,))
TINY_DQN = dict(num_envs=2, train_freq=4, total_timesteps=16, buffer_size=8, batch_size=4, learning_starts=0, hidden=(4,))


def identity(v):
    return v


@pytest.fixture(scope="module")
def cartpole():
    env, env_params = rlpg.envs.make("CartPole-v1")
    return env, env_params, rlpg.policies.make_policy(env, env_params, (4,))


@pytest.fixture(scope="module")
def bandit():
    env, _ = rlpg.envs.make("MultiArmedBandit-v0")
    return env, L.tabular_params(env, horizon=3), jnp.zeros((env.num_states, env.num_actions))


# (name the message must hold in backquotes, call) — library functions on concrete inputs.
LIBRARY_CASES = {
    "categorical action out of range": ("action", lambda: D.categorical_log_prob(LOGITS, jnp.array(5))),
    "categorical negative action": ("action", lambda: D.categorical_log_prob(LOGITS, jnp.array(-1))),
    "categorical batch action out of range": ("action", lambda: D.categorical_log_prob(jnp.zeros((4, 3)), jnp.array([0, 1, 2, 3]))),
    "categorical NaN logits": ("logits", lambda: D.categorical_log_prob(NAN_LOGITS, 0)),
    "entropy NaN logits": ("logits", lambda: D.categorical_entropy(NAN_LOGITS)),
    "entropy non-numeric logits": ("logits", lambda: D.categorical_entropy([[1.0, "a"]])),
    "sample with an int key": ("key", lambda: D.categorical_sample(0, LOGITS)),
    "categorical kl shapes": ("p_logits", lambda: D.categorical_kl(LOGITS, jnp.zeros(4))),
    "categorical kl batch shapes": ("p_logits", lambda: D.categorical_kl(jnp.zeros((4, 3)), jnp.zeros((2, 3)))),
    "gaussian kl shapes": ("p_mean", lambda: D.gaussian_kl(jnp.zeros(2), jnp.zeros(2), jnp.zeros(3), jnp.zeros(3))),
    "gaussian NaN mean": ("mean", lambda: D.gaussian_log_prob(jnp.array([0.0, jnp.nan]), jnp.zeros(2), jnp.zeros(2))),
    "gaussian sample int key": ("key", lambda: D.gaussian_sample(3, jnp.zeros(2), jnp.zeros(2))),
    "linear score action out of range": ("action", lambda: P.linear_softmax_score(THETA, PHI, jnp.array(7))),
    "linear score float action": ("action", lambda: P.linear_softmax_score(THETA, PHI, jnp.array(1.5))),
    "linear score action shape": ("action", lambda: P.linear_softmax_score(THETA, jnp.ones((4, 3, 2)), jnp.array([0, 1]))),
    "linear logits non-numeric theta": ("theta", lambda: P.linear_softmax_logits([0.0, "x"], PHI)),
    "mlp num_actions 0": ("num_actions", lambda: P.mlp_categorical((4,), 0)),
    "mlp width 0": ("hidden", lambda: P.mlp_categorical((4,), 2, (0,))),
    "mlp negative width": ("hidden", lambda: P.mlp_categorical((4,), 2, (-4,))),
    "mlp float width": ("hidden", lambda: P.mlp_value((4,), (2.5,))),
    "mlp action_dim 0": ("action_dim", lambda: P.mlp_gaussian((4,), 0)),
    "mlp obs_shape int": ("obs_shape", lambda: P.mlp_categorical(4, 2)),
    "linear_softmax no features": ("num_features", lambda: P.linear_softmax(identity, 0)),
    "linear_gaussian action_dim 0": ("action_dim", lambda: P.linear_gaussian(identity, 2, 0)),
    "dones 2": ("dones", lambda: R.reward_to_go(REW, DONES * 2, 0.9)),
    "dones 0.5": ("dones", lambda: R.reward_to_go(REW, DONES * 0.5, 0.9)),
    "total_return dones 3": ("dones", lambda: R.total_return(REW, DONES * 3)),
    "episode mask dones 2": ("dones", lambda: R.episode_ends_mask(DONES * 2)),
    "gae terminated 2": ("terminated", lambda: R.gae(REW, REW, REW, DONES * 2, DONES, 0.9, 0.9)),
    "gae truncated 0.3": ("truncated", lambda: R.gae(REW, REW, REW, DONES, DONES * 0.3, 0.9, 0.9)),
    "gamma str": ("gamma", lambda: R.reward_to_go(REW, DONES, "0.9")),
    "normalize all-zero mask": ("mask", lambda: R.normalize(REW, jnp.zeros(5))),
    "normalize mask 2": ("mask", lambda: R.normalize(REW, jnp.full(5, 2.0))),
    "rewards non-numeric": ("rewards", lambda: R.reward_to_go(["a"], [0], 0.9)),
    "baseline shape": ("baseline", lambda: E.reinforce_weights(REW, jnp.zeros(4))),
    "baseline broadcasts to another shape": ("baseline", lambda: E.reinforce_weights(REW, jnp.zeros((2, 5)))),
    "reinforce_weights all-zero mask": ("mask", lambda: E.reinforce_weights(REW, None, True, jnp.zeros(5))),
    "loss mask 2": ("mask", lambda: E.reinforce_loss(REW, REW, jnp.full(5, 2.0))),
    "ppo clip_eps < 0": ("clip_eps", lambda: E.ppo_clip_loss(REW, REW, REW, -0.2)),
    "clipped value clip_eps < 0": ("clip_eps", lambda: E.clipped_value_loss(REW, REW, REW, -1.0)),
    "ratio diagnostics clip_eps < 0": ("clip_eps", lambda: E.ratio_diagnostics(REW, REW, -0.1)),
    "natural gradient max_kl < 0": ("max_kl", lambda: E.natural_gradient_step(jnp.ones(2), identity, -0.01, 3)),
    "natural gradient cg_iters 0": ("cg_iters", lambda: E.natural_gradient_step(jnp.ones(2), identity, 0.01, 0)),
    "cg iters -1": ("iters", lambda: E.conjugate_gradient(identity, jnp.ones(2), -1)),
    "cg iters 2.5": ("iters", lambda: E.conjugate_gradient(identity, jnp.ones(2), 2.5)),
    "entropy_bonus mask shape": ("entropies", lambda: E.entropy_bonus(jnp.ones(3), jnp.ones(2))),
    "init_stats shape int": ("shape", lambda: N.init_stats(3)),
    "update_stats non-numeric": ("batch", lambda: N.update_stats(N.init_stats(()), ["a"])),
    "standardize shape": ("x", lambda: N.standardize(N.init_stats((3,)), jnp.ones((5, 2)))),
    "TabularMDP built directly, rows not summing to 1": (
        "transitions", lambda: X.value_function(X.TabularMDP(jnp.full((2, 2, 2), 0.7), MDP.rewards, MDP.initial, MDP.gamma), jnp.zeros((2, 2)))),
    "TabularMDP built directly, initial not summing to 1": (
        "initial", lambda: X.finite_horizon_values(X.TabularMDP(MDP.transitions, MDP.rewards, jnp.array([0.9, 0.9]), MDP.gamma), jnp.zeros((2, 2)), 3)),
    "exact NaN logits": ("logits", lambda: X.value_function(MDP, jnp.full((2, 2), jnp.nan))),
    "random_mdp int key": ("key", lambda: X.random_mdp(0, 3, 2)),
    "random_mdp no states": ("num_states", lambda: X.random_mdp(KEY, 0, 2)),
    "random_mdp no actions": ("num_actions", lambda: X.random_mdp(KEY, 3, 0)),
    "deterministic policies no actions": ("num_actions", lambda: X.deterministic_observation_policies(jnp.eye(2), 0)),
    "replay batch_size 2.5": ("batch_size", lambda: RB.sample(KEY, RB.init({"x": jnp.zeros(3)}, 8), 2.5)),
    "replay int key": ("key", lambda: RB.sample(0, RB.init({"x": jnp.zeros(3)}, 8), 2)),
    "replay wrong structure": ("transitions", lambda: RB.add(RB.init({"x": jnp.zeros(3)}, 8), {"y": jnp.zeros((2, 3))})),
    "make_env int": ("env", lambda: rlpg.envs.make(3)),
    "seed beyond 2**31": ("seed", lambda: check_seed("seed", 2**40)),
    "seed count beyond 2**31": ("seed", lambda: check_seed("seed", 2**31 - 2, count=5)),
}


@pytest.mark.parametrize("name", LIBRARY_CASES)
def test_library_error_names_the_argument(name):
    argument, call = LIBRARY_CASES[name]
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call()


ROLLOUT_CASES = {
    "reset no envs": ("num_envs", lambda env, params, pol: RO.reset(KEY, env, params, 0)),
    "reset int key": ("key", lambda env, params, pol: RO.reset(0, env, params, 2)),
    "rollout no steps": ("num_steps", lambda env, params, pol: RO.rollout(KEY, pol, None, env, params, None, 0)),
    "evaluate no episodes": ("num_episodes", lambda env, params, pol: RO.evaluate(KEY, pol, None, env, params, 0)),
    "evaluate max_steps -1": ("max_steps", lambda env, params, pol: RO.evaluate(KEY, pol, None, env, params, 2, max_steps=-1)),
    "policy width 0": ("hidden", lambda env, params, pol: rlpg.policies.make_policy(env, params, (0,))),
}


@pytest.mark.parametrize("name", ROLLOUT_CASES)
def test_rollout_error_names_the_argument(name, cartpole):
    argument, call = ROLLOUT_CASES[name]
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call(*cartpole)


LAB_CASES = {
    "no batch sizes": ("batch_sizes", lambda env, params, logits: L.measure(KEY, env, params, logits, [], 2)),
    "batch size 0": ("batch_sizes", lambda env, params, logits: L.measure(KEY, env, params, logits, [0], 2)),
    "one batch": ("num_batches", lambda env, params, logits: L.measure(KEY, env, params, logits, [2], 1)),
    "logits of another world": ("logits", lambda env, params, logits: L.sample_episodes(KEY, env, params, jnp.zeros((9, 9)), 2)),
    "horizon 0": ("horizon", lambda env, params, logits: L.tabular_params(env, horizon=0)),
    "NaN logits measured": ("logits", lambda env, params, logits: L.measure(KEY, env, params, logits.at[0, 1].set(jnp.nan), [2], 2)),
    "logits of another world measured": ("logits", lambda env, params, logits: L.measure(KEY, env, params, jnp.zeros((9, 9)), [2], 2)),
}


@pytest.mark.parametrize("name", LAB_CASES)
def test_lab_error_names_the_argument(name, bandit):
    argument, call = LAB_CASES[name]
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call(*bandit)


def test_python_numbers_are_accepted_as_arrays():
    """A Python int where an array is expected gives the array's answer, not a TypeError."""
    assert D.categorical_log_prob(LOGITS, 1) == D.categorical_log_prob(LOGITS, jnp.array(1))
    np.testing.assert_array_equal(P.linear_softmax_score(THETA, PHI, 1), P.linear_softmax_score(THETA, PHI, jnp.array(1)))
    np.testing.assert_array_equal(R.reward_to_go([1.0, 2.0], [0, 1], 0.5), R.reward_to_go(jnp.array([1.0, 2.0]), jnp.array([0, 1]), 0.5))
    assert D.categorical_log_prob(jnp.array([0.0, -jnp.inf]), 0) == 0.0  # −inf logits: an impossible action, allowed


# ----------------------------------------------------------------------------- hyperparameters

ALGORITHMS = {
    "reinforce": (reinforce, TINY),
    "a2c": (a2c, TINY),
    "ppo": (ppo, {**TINY, "num_minibatches": 2}),
    "npg": (npg, TINY),
    "dqn": (dqn, TINY_DQN),
}
HPARAM_CASES = [
    ("reinforce", {"gamma": 1.5}, ValueError, r"`gamma` must lie in \[0.0, 1.0\]; got 1.5"),
    ("reinforce", {"lr": -1.0}, ValueError, "`lr` must be > 0; got -1.0"),
    ("reinforce", {"lr": "fast"}, TypeError, "`lr` must be a number"),
    ("reinforce", {"reward_scale": jnp.array([1.0, 0.0])}, ValueError, "`reward_scale` must be > 0"),
    ("a2c", {"lam": "x"}, TypeError, "`lam` must be a number"),
    ("a2c", {"lam": 1.5}, ValueError, "`lam` must lie in"),
    ("ppo", {"clip_eps": -1.0}, ValueError, "`clip_eps` must be > 0"),
    ("ppo", {"max_grad_norm": float("nan")}, ValueError, "`max_grad_norm` must be > 0"),
    ("npg", {"max_kl": -1.0}, ValueError, "`max_kl` must be > 0"),
    ("npg", {"damping": None}, TypeError, "`damping` must be a number"),
    ("dqn", {"eps_start": 2.0}, ValueError, "`eps_start` must lie in"),
    ("dqn", {"tau": True}, TypeError, "`tau` must be a number"),
]


@pytest.fixture(scope="module")
def algorithms():
    return {name: module.make_algorithm(module.Config(**fields)) for name, (module, fields) in ALGORITHMS.items()}


@pytest.mark.parametrize("algo, hparams, error, words", HPARAM_CASES)
def test_bad_hparams_are_refused_by_init_with_the_config_message(algorithms, algo, hparams, error, words):
    algorithm = algorithms[algo]
    with pytest.raises(error, match=words):
        algorithm.init(KEY, hparams)
    with pytest.raises(error, match=words):  # the Config's own check says the same
        ALGORITHMS[algo][0].Config(**ALGORITHMS[algo][1], **hparams).validate()


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_init_refuses_what_is_not_a_key(algorithms, algo):
    for key in (0, 2**64, jnp.zeros(2), jax.random.split(KEY, 3)):
        with pytest.raises(TypeError, match="`key` must be one PRNG key"):
            algorithms[algo].init(key)


def test_over_seeds_checks_hparams_on_the_host(algorithms):
    train = rlpg.algos.train_fn(algorithms["reinforce"])
    keys = jax.random.split(KEY, 2)
    with pytest.raises(ValueError, match=r"`gamma` must lie in \[0.0, 1.0\]; got \[0.89.*, 1.5\]"):
        over_seeds(train)(keys, {"gamma": jnp.array([0.9, 1.5])})
    with pytest.raises(ValueError, match=r"`lr` must have the seed axis first, of size \(2,\)"):
        over_seeds(train)(keys, {"lr": jnp.array([1e-3, 2e-3, 3e-3])})
    with pytest.raises(ValueError, match="`lr` must have the seed axis first"):
        over_seeds(algorithms["ppo"].init)(keys, {"lr": 1e-3})
    with pytest.raises(TypeError, match="`lr` must be a number"):
        over_seeds(train)(keys, {"lr": ["a", "b"]})


@pytest.mark.parametrize(
    "module, fields, words",
    [
        (reinforce, dict(gamma="0.9"), "`gamma` must be a number"),
        (reinforce, dict(lr=True), "`lr` must be a number"),
        (reinforce, dict(normalize="yes"), "`normalize` must be True or False"),
        (reinforce, dict(log_every=2.5), "`log_every` must be >= 0"),
        (reinforce, dict(env_id=3), "`env` must be an environment id"),
        (reinforce, dict(activation="sigmoid"), "`activation` must be one of"),
        (reinforce, dict(reward_scale=float("nan")), "`reward_scale` must be > 0"),
        (ppo, dict(clip_value="no"), "`clip_value` must be True or False"),
        (ppo, dict(num_epochs=1.5), "`num_epochs` must be a positive integer"),
        (ppo, dict(max_grad_norm=float("inf")), "`max_grad_norm` must be > 0"),
        (a2c, dict(normalize_advantages=None), "`normalize_advantages` must be True or False"),
        (npg, dict(damping="a"), "`damping` must be a number"),
        (dqn, dict(double="x"), "`double` must be True or False"),
        (dqn, dict(activation="swish"), "`activation` must be one of"),
        (dqn, dict(hidden=None), "`hidden` must be a tuple"),
    ],
)
def test_bad_config_field_is_named(module, fields, words):
    with pytest.raises((ValueError, TypeError), match=words):
        module.Config(**fields).validate()


@pytest.mark.parametrize("module, per_update", [(reinforce, dict(num_envs=2, num_steps=1)), (ppo, dict(num_envs=2, num_steps=2, num_minibatches=4)),
                                                 (dqn, dict(num_envs=2, train_freq=1))])
def test_env_steps_beyond_int32_are_refused(module, per_update):
    """The programs count env steps in int32: a run of 2³¹ steps per seed would report negative
    env_steps (and DQN's ε schedule would restart), so validate refuses it; 2³¹ − 1 is accepted."""
    steps_per_update = module.Config(**per_update).steps_per_update
    assert module.Config(**per_update, total_timesteps=2**31 - 1).validate().num_updates * steps_per_update <= 2**31 - 1
    with pytest.raises(ValueError, match=r"`total_timesteps` \(2,147,483,648\) must be at most 2,147,483,647"):
        module.Config(**per_update, total_timesteps=2**31).validate()


def test_cli_unwritable_out_fails_before_compiling(tmp_path):
    with pytest.raises(PermissionError, match="`out` /proc/rlpg-run cannot be created"):
        train_cli.run(train_cli.Args(out=Path("/proc/rlpg-run"), num_seeds=1))


# ----------------------------------------------------------------------------- under jit: rlpg.checked


def test_jit_skips_value_checks_and_checked_compiles_them_in():
    """Traced values are not read (no device sync): under jit an out-of-range action is not
    caught; `rlpg.checked` catches it, and on good input returns the same numbers."""
    log_prob = jax.jit(D.categorical_log_prob)
    assert np.isnan(log_prob(LOGITS, jnp.array(5)))  # documented: unchecked under jit
    checked = rlpg.checked(D.categorical_log_prob)
    with pytest.raises(checkify.JaxRuntimeError, match=r"`action` must lie in \[0, 3\)"):
        checked(LOGITS, jnp.array(5))
    with pytest.raises(checkify.JaxRuntimeError, match="`logits` must not hold NaN"):
        checked(NAN_LOGITS, jnp.array(0))
    assert checked(LOGITS, jnp.array(2)) == log_prob(LOGITS, jnp.array(2))


def test_checked_catches_traced_hparams_and_flags():
    rtg = rlpg.checked(jax.vmap(lambda gamma, dones: R.reward_to_go(REW, dones, gamma), in_axes=(0, None)))
    with pytest.raises(checkify.JaxRuntimeError, match="`gamma` must lie in"):
        rtg(jnp.array([0.9, 1.5]), DONES)
    with pytest.raises(checkify.JaxRuntimeError, match="`dones` must hold only 0 and 1"):
        rtg(jnp.array([0.9, 0.5]), DONES * 2)
    np.testing.assert_array_equal(rtg(jnp.array([0.9, 0.5]), DONES), jax.vmap(lambda g: R.reward_to_go(REW, DONES, g))(jnp.array([0.9, 0.5])))
    mdp_value = rlpg.checked(X.value_function)
    with pytest.raises(checkify.JaxRuntimeError, match="`transitions` must be non-negative and sum to 1"):
        mdp_value(X.TabularMDP(jnp.full((2, 2, 2), 0.7), MDP.rewards, MDP.initial, MDP.gamma), jnp.zeros((2, 2)))


def test_checked_catches_traced_hparams_of_an_algorithm(algorithms):
    init = rlpg.checked(jax.vmap(algorithms["a2c"].init))
    keys = jax.random.split(KEY, 2)
    with pytest.raises(checkify.JaxRuntimeError, match="`gamma` must lie in"):
        init(keys, {"gamma": jnp.array([0.9, 1.5])})


# --- bad input, second audit
#
# Each case below either used to return a wrong number silently (a negative KL, NaN values, an
# out-of-range step read as another one, data dropped) or failed deep inside jax/numpy with a
# message naming nothing. The list cases check that a Python list gives the array's numbers.

from rlpg import pathwise as PW  # noqa: E402
from rlpg import value_learning as VL  # noqa: E402
from rlpg.algos import optim  # noqa: E402

LQR_SYSTEM = dict(
    A=[[1.0, 0.2], [-0.1, 0.9]], B=[[0.0], [0.3]], Q=[[1.0, 0.2], [0.2, 0.5]], R=[[0.3]],
    initial_mean=[1.0, -0.5], initial_cov=[[0.2, 0.05], [0.05, 0.1]], noise_cov=[[0.02, 0.0], [0.0, 0.05]],
)  # fmt: skip
LQR_H = 4
LQR = rlpg.envs.LQR(**LQR_SYSTEM, horizon=LQR_H, gamma=0.9)
LQR_PARAMS = LQR.default_params
GAIN, LQR_LOG_STD, X0 = jnp.array([[-0.4, -0.8]]), jnp.array([-0.7]), jnp.array([1.0, -0.5])
ALL_NEG_INF_ROW = jnp.array([[0.0, 1.0], [-jnp.inf, -jnp.inf]])
REPLAY_EXAMPLE = {"obs": jnp.zeros(3), "action": jnp.zeros((), jnp.int32), "done": jnp.zeros((), bool)}
REPLAY_BATCH = {"obs": jnp.ones((2, 3)), "action": jnp.array([1, 2]), "done": jnp.array([True, False])}
Q_NEXT = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, -1.0]])


def _pathwise_setup():
    env = rlpg.envs.LQR(**LQR_SYSTEM, horizon=LQR_H, gamma=0.9).with_transition_gradients()
    params = {"theta": jnp.asarray([[-0.4], [-0.8]]), "log_std": jnp.asarray([-0.7])}
    return env, env.linear_policy(), params


def _score_return(baseline):
    env, policy, params = _pathwise_setup()
    return PW.score_function_return(KEY, policy, params, env, env.default_params, LQR_H, 0.9, baseline)


def _per_episode_gradients(keys):
    env, policy, params = _pathwise_setup()
    return PW.per_episode_gradients(keys, policy, params, env, env.default_params, LQR_H)


# (name the message must hold in backquotes, call)
SECOND_AUDIT_CASES = {
    # distributions
    "categorical kl A mismatch (was a negative KL)": ("q_logits", lambda: D.categorical_kl([0.0, 1.0, 2.0], [5.0])),
    "gaussian kl D mismatch (was 1.5)": ("q_mean", lambda: D.gaussian_kl([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0], [0.0])),
    "gaussian kl batch mismatch of log_std": (
        "q_log_std", lambda: D.gaussian_kl(jnp.zeros(2), jnp.zeros((3, 2)), jnp.zeros(2), jnp.zeros((4, 2)))),
    "gaussian kl batch mismatch of means": ("q_mean", lambda: D.gaussian_kl(jnp.zeros((3, 2)), jnp.zeros(2), jnp.zeros((4, 2)), jnp.zeros(2))),
    "log_prob all -inf row (was NaN)": ("logits", lambda: D.categorical_log_prob(ALL_NEG_INF_ROW, jnp.array([0, 0]))),
    "entropy all -inf row (was NaN)": ("logits", lambda: D.categorical_entropy(ALL_NEG_INF_ROW)),
    "sample all -inf row (was action 0)": ("logits", lambda: D.categorical_sample(KEY, [-jnp.inf, -jnp.inf])),
    "mode all -inf row": ("logits", lambda: D.categorical_mode(ALL_NEG_INF_ROW)),
    "kl all -inf row of q": ("q_logits", lambda: D.categorical_kl(jnp.zeros((2, 2)), ALL_NEG_INF_ROW)),
    "int64 action beyond int32 (wrapped to 1)": ("action", lambda: D.categorical_log_prob(LOGITS, np.array(2**33 + 1))),
    "Python int action beyond int32": ("action", lambda: D.categorical_log_prob(LOGITS, 2**40)),
    "sample no actions": ("logits", lambda: D.categorical_sample(KEY, jnp.zeros((2, 0)))),
    "mode no actions": ("logits", lambda: D.categorical_mode(jnp.zeros((2, 0)))),
    "entropy no actions (was -0.)": ("logits", lambda: D.categorical_entropy(jnp.zeros((2, 0)))),
    "tanh log_prob low > high (was NaN)": ("low", lambda: D.tanh_gaussian_log_prob([0.0], [0.0], [0.0], 1.0, -1.0)),
    "tanh log_prob low == high (was inf)": ("high", lambda: D.tanh_gaussian_log_prob([0.0], [0.0], [1.0], 1.0, 1.0)),
    "tanh entropy -inf low (was NaN)": ("low", lambda: D.tanh_gaussian_entropy([0.0], [0.0], -jnp.inf, 1.0)),
    "tanh sample NaN high": ("high", lambda: D.tanh_gaussian_sample(KEY, [0.0], [0.0], -1.0, jnp.nan)),
    "tanh mode low > high": ("low", lambda: D.tanh_gaussian_mode([0.0, 0.0], jnp.array([0.0, 2.0]), 1.0)),
    "tanh low of another D": ("low", lambda: D.tanh_gaussian_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), -jnp.ones(3), 1.0)),
    "tanh high of another D": ("high", lambda: D.tanh_gaussian_sample(KEY, jnp.zeros(2), jnp.zeros(2), -1.0, jnp.ones((2, 2)))),
    "tanh mode NaN mean": ("mean", lambda: D.tanh_gaussian_mode([jnp.nan])),
    "tanh mode scalar mean": ("mean", lambda: D.tanh_gaussian_mode(0.0)),
    "tanh mode int mean": ("mean", lambda: D.tanh_gaussian_mode(jnp.zeros(2, int))),
    "tanh action shape": ("action", lambda: D.tanh_gaussian_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.zeros(3))),
    "tanh entropy NaN log_std": ("log_std", lambda: D.tanh_gaussian_entropy(jnp.zeros(2), jnp.array([0.0, jnp.nan]))),
    "gaussian entropy NaN log_std (was NaN)": ("log_std", lambda: D.gaussian_entropy([0.0, jnp.nan])),
    "gaussian entropy inf log_std": ("log_std", lambda: D.gaussian_entropy(jnp.array([jnp.inf]))),
    # exact
    "exact all -inf row (was NaN)": ("logits", lambda: X.value_function(MDP, ALL_NEG_INF_ROW)),
    "finite horizon all -inf row": ("logits", lambda: X.finite_horizon_values(MDP, ALL_NEG_INF_ROW, 3)),
    "policy_probs NaN (was NaN)": ("logits", lambda: X.policy_probs(jnp.array([[0.0, jnp.nan]]))),
    "policy_probs all -inf row": ("logits", lambda: X.policy_probs(ALL_NEG_INF_ROW)),
    "policy_probs list of str": ("logits", lambda: X.policy_probs(["a", "b"])),
    "features NaN theta (was named logits)": ("theta", lambda: X.features_expected_return(MDP, [jnp.nan, 0.0], jnp.ones((2, 2, 2)))),
    "features NaN phi": ("phi", lambda: X.features_expected_return(MDP, [0.0, 0.0], jnp.ones((2, 2, 2)).at[0, 0, 0].set(jnp.nan))),
    "features theta of another F (was named phi_sa)": ("phi", lambda: X.features_expected_return(MDP, jnp.zeros(3), jnp.ones((2, 2, 2)))),
    "features gradient theta of another F": ("theta", lambda: X.features_policy_gradient(MDP, jnp.zeros(3), jnp.ones((2, 2, 2)))),
    "finite horizon per-state discount": ("discount", lambda: X.finite_horizon_values(MDP, jnp.zeros((2, 2)), 3, jnp.array([0.5, 0.9]))),
    "finite horizon discount [1]": ("discount", lambda: X.finite_horizon_expected_return(MDP, jnp.zeros((2, 2)), 3, jnp.array([0.5]))),
    "horizon True (was 1)": ("horizon", lambda: X.finite_horizon_values(MDP, jnp.zeros((2, 2)), True)),
    "optimal return horizon False": ("horizon", lambda: X.finite_horizon_optimal_return(MDP, False)),
    "lqr_value t beyond H (was -0.0)": ("t", lambda: X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, X0, LQR_H + 10)),
    "lqr_value t -1 (was -0.0)": ("t", lambda: X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, X0, -1)),
    "lqr_value batch t beyond H": ("t", lambda: X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, jnp.ones((2, 2)), jnp.array([0, LQR_H + 1]))),
    "lqr_value t 1.5": ("t", lambda: X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, X0, 1.5)),
    "lqr_value t of another batch shape": ("t", lambda: X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, jnp.ones((3, 2)), jnp.zeros(4, int))),
    "lqr_value x of another size": ("x", lambda: X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, jnp.ones(3))),
    "lqr_value scalar x": ("x", lambda: X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, 1.0)),
    "lqr_value int x": ("x", lambda: X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, jnp.ones(2, int))),
    "lqr_riccati gain shape": ("gain", lambda: X.lqr_riccati(LQR, LQR_PARAMS, jnp.zeros((2, 2)))),
    "lqr_riccati int gain": ("gain", lambda: X.lqr_riccati(LQR, LQR_PARAMS, jnp.zeros((1, 2), int))),
    "lqr log_std of str": ("log_std", lambda: X.lqr_expected_return(LQR, LQR_PARAMS, GAIN, ["a"])),
    # pathwise
    "mixed_gradient N 4 against 6": ("score", lambda: PW.mixed_gradient({"a": jnp.ones((4, 2))}, {"a": jnp.ones((6, 2))})),
    "mixed_gradient leaf [4, 1] against [4, 2]": ("score", lambda: PW.mixed_gradient({"a": jnp.ones((4, 1))}, {"a": jnp.ones((4, 2))})),
    "mixed_gradient structures": ("score", lambda: PW.mixed_gradient({"a": jnp.ones((4, 1))}, {"b": jnp.ones((4, 1))})),
    "mixed_gradient leaves of two N": (
        "pathwise", lambda: PW.mixed_gradient({"a": jnp.ones(4), "b": jnp.ones(6)}, {"a": jnp.ones(4), "b": jnp.ones(6)})),
    "mixed_gradient rank-0 leaf": ("pathwise", lambda: PW.mixed_gradient(jnp.ones(()), jnp.ones(()))),
    "mixed_gradient list of numbers": ("pathwise", lambda: PW.mixed_gradient([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])),
    "mixed_gradient nothing": ("pathwise", lambda: PW.mixed_gradient([], [])),
    "inverse_variance_weights N 4 against 5": ("score", lambda: PW.inverse_variance_weights(jnp.ones((4, 2)), jnp.ones((5, 2)))),
    "score baseline of length 1 (was accepted)": ("baseline", lambda: _score_return(jnp.zeros(1))),
    "score baseline of length H + 1": ("baseline", lambda: _score_return(jnp.zeros(LQR_H + 1))),
    "per_episode_gradients one raw key (read as 2 episodes)": ("keys", lambda: _per_episode_gradients(KEY)),
    "per_episode_gradients one typed key": ("keys", lambda: _per_episode_gradients(jax.random.key(0))),
    "leave_one_out_baseline list of str": ("rewards", lambda: PW.leave_one_out_baseline([["a"]])),
    # replay
    "sample an empty buffer (was zeros)": ("buffer", lambda: RB.sample(KEY, RB.init(REPLAY_EXAMPLE, 4), 2)),
    "add float actions to int slots (truncated)": ("transitions", lambda: RB.add(RB.init(REPLAY_EXAMPLE, 4), {**REPLAY_BATCH, "action": jnp.array([1.5, 2.0])})),
    "add int flags to bool slots": ("transitions", lambda: RB.add(RB.init(REPLAY_EXAMPLE, 4), {**REPLAY_BATCH, "done": jnp.array([2, 0])})),
    "add one transition without batch axis": (
        "transitions", lambda: RB.add(RB.init(REPLAY_EXAMPLE, 4), {"obs": jnp.ones(3), "action": jnp.array(1), "done": jnp.array(True)})),
    # optim
    "minibatches leaves of N 4 and 6 (dropped data)": ("data", lambda: optim.minibatches(KEY, {"a": jnp.ones(4), "b": jnp.ones(6)}, 2)),
    "minibatches 0": ("num_minibatches", lambda: optim.minibatches(KEY, {"a": jnp.ones(4)}, 0)),
    "minibatches -2": ("num_minibatches", lambda: optim.minibatches(KEY, {"a": jnp.ones(4)}, -2)),
    "minibatches rank-0 leaf": ("data", lambda: optim.minibatches(KEY, {"a": jnp.ones(())}, 1)),
    "permutation -1": ("n", lambda: optim.permutation(KEY, -1)),
    "permutation 2.5": ("n", lambda: optim.permutation(KEY, 2.5)),
    "adam lr -1": ("lr", lambda: optim.adam(-1.0, 0.5)),
    "adam max_grad_norm 0": ("max_grad_norm", lambda: optim.adam(1e-3, 0.0)),
    "adam anneal_steps -1": ("anneal_steps", lambda: optim.adam(1e-3, 0.5, -1)),
    "clipped_adam lr 0": ("lr", lambda: optim.clipped_adam(0.0, 0.5)),
    "clipped_adam max_grad_norm NaN": ("max_grad_norm", lambda: optim.clipped_adam(1e-3, float("nan"))),
    # lab
    "tabular_estimate action out of range": (
        "action", lambda: L.tabular_estimate(jnp.eye(2)[jnp.zeros((3, 4), int)], jnp.full((3, 4), 5), jnp.zeros((2, 2)), jnp.ones((3, 4)))),
    "tabular_estimate float action": (
        "action", lambda: L.tabular_estimate(jnp.eye(2)[jnp.zeros((3, 4), int)], jnp.full((3, 4), 1.0), jnp.zeros((2, 2)), jnp.ones((3, 4)))),
    "tabular_estimate obs of another S": (
        "obs", lambda: L.tabular_estimate(jnp.ones((3, 4, 3)), jnp.zeros((3, 4), int), jnp.zeros((2, 2)), jnp.ones((3, 4)))),
    "estimator_stats shapes": ("estimates", lambda: L.estimator_stats(np.ones((4, 3)), np.ones(2))),
    "estimator_stats N = 0": ("estimates", lambda: L.estimator_stats(np.ones((0, 3)), np.ones(3))),
    "estimator_stats scalar": ("estimates", lambda: L.estimator_stats(1.0, 1.0)),
    "estimator_stats num_sigmas < 0": ("num_sigmas", lambda: L.estimator_stats(np.ones((4, 3)), np.ones(3), -1.0)),
    # value learning
    "td_target terminated 2": ("terminated", lambda: VL.td_target(jnp.ones(3), jnp.array([0, 2, 0]), Q_NEXT, 0.9)),
    "td_target no actions": ("next_q_target", lambda: VL.td_target(jnp.ones(3), jnp.zeros(3, bool), jnp.zeros((3, 0)), 0.9)),
    "td_target list of str": ("reward", lambda: VL.td_target(["a"], [0], [[1.0]], 0.9)),
    "td_loss int q_taken": ("q_taken", lambda: VL.td_loss(jnp.array([1, 2]), jnp.array([1.0, 2.0]))),
    "td_loss int target": ("target", lambda: VL.td_loss(jnp.array([1.0, 2.0]), jnp.array([1, 2]))),
}


@pytest.mark.parametrize("name", SECOND_AUDIT_CASES)
def test_second_audit_error_names_the_argument(name):
    argument, call = SECOND_AUDIT_CASES[name]
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call()


def test_second_audit_messages_say_expected_and_actual():
    with pytest.raises(ValueError, match=r"`p_logits` and `q_logits` must have the same last axis A .*\(3,\), `q_logits` \(1,\)"):
        D.categorical_kl([0.0, 1.0, 2.0], [5.0])
    with pytest.raises(ValueError, match=r"`action` must lie in \[0, 3\); got 8589934593"):
        D.categorical_log_prob(LOGITS, np.array(2**33 + 1))
    with pytest.raises(ValueError, match=r"`low` and `high` must satisfy low < high elementwise; got low=1.0, high=-1.0"):
        D.tanh_gaussian_log_prob([0.0], [0.0], [0.0], 1.0, -1.0)
    with pytest.raises(ValueError, match=r"`t` must lie in \[0, 5\); got 14"):
        X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, X0, 14)
    with pytest.raises(ValueError, match=r"`baseline` must have shape \(4,\) .*got \(1,\)"):
        _score_return(jnp.zeros(1))
    with pytest.raises(TypeError, match=r"`keys` must be N PRNG keys .*one key: split it"):
        _per_episode_gradients(KEY)
    with pytest.raises(TypeError, match=r"`transitions`\['action'\] must have a dtype the buffer's int32 slots hold .*got float32"):
        RB.add(RB.init(REPLAY_EXAMPLE, 4), {**REPLAY_BATCH, "action": jnp.array([1.5, 2.0])})
    with pytest.raises(ValueError, match=r"`data` leaves must share one batch size N .*N = 4 at `data`\['a'\], N = 6 at `data`\['b'\]"):
        optim.minibatches(KEY, {"a": jnp.ones(4), "b": jnp.ones(6)}, 2)
    env, _ = rlpg.envs.make("MultiArmedBandit-v0")
    with pytest.raises(ValueError, match=r"`num_episodes` must be a positive integer; got 0"):
        L.sample_episodes(KEY, env, L.tabular_params(env, horizon=3), jnp.zeros((env.num_states, env.num_actions)), 0)


def test_second_audit_valid_calls_still_pass():
    """What the new checks must not refuse: −inf for some actions, a box of [D] bounds, t = H,
    a batch of typed keys, n = 0, a traced lr, a bool flag into a float slot, N = 1 estimates."""
    assert np.isfinite(D.categorical_entropy(jnp.array([[0.0, -jnp.inf], [1.0, 2.0]]))).all()
    assert D.categorical_log_prob(LOGITS, np.array(2, np.int64)) == D.categorical_log_prob(LOGITS, jnp.array(2))
    assert np.isfinite(D.tanh_gaussian_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), jnp.array([-1.0, -2.0]), jnp.array([1.0, 3.0])))
    assert X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, X0, LQR_H) == 0.0  # nothing left at t = H
    assert optim.permutation(KEY, 0).shape == (0,)
    jax.jit(lambda lr: optim.adam(lr, 0.5, 3).init({"policy": jnp.ones(2), "value": jnp.ones(2)}))(1e-3)
    optim.adam(1e-3, 0.5, 0)
    optim.clipped_adam(lambda step: 1e-3, 0.5)  # a schedule
    buffer = RB.add(RB.init({"done": jnp.zeros((), jnp.float32)}, 4), {"done": jnp.array([True, False])})
    np.testing.assert_array_equal(buffer.data["done"][:2], [1.0, 0.0])
    assert L.estimator_stats(np.ones((1, 3)), np.ones(3))["num_batches"] == 1
    # traced values are not read (no device sync): an empty buffer and a 2 in terminated pass under jit
    jax.jit(RB.sample, static_argnums=2)(KEY, RB.init(REPLAY_EXAMPLE, 4), 2)
    jax.jit(VL.td_target)(jnp.ones(3), jnp.array([0, 2, 0]), Q_NEXT, 0.9)
    _, _, params = _pathwise_setup()
    out = _per_episode_gradients(jax.random.split(jax.random.key(0), 4))
    assert out["return"].shape == (4,)
    mixed = PW.mixed_gradient(out["pathwise"], out["score"])
    assert jax.tree.map(jnp.shape, mixed) == jax.tree.map(jnp.shape, params)


def test_second_audit_checked_compiles_the_new_value_checks_in():
    with pytest.raises(checkify.JaxRuntimeError, match="`logits` must hold at least one finite logit per row"):
        rlpg.checked(D.categorical_entropy)(ALL_NEG_INF_ROW)
    with pytest.raises(checkify.JaxRuntimeError, match="`low` and `high` must satisfy low < high"):
        rlpg.checked(lambda low: D.tanh_gaussian_mode(jnp.zeros(2), low, 1.0))(2.0)
    with pytest.raises(checkify.JaxRuntimeError, match="`terminated` must hold only 0 and 1"):
        rlpg.checked(VL.td_target)(jnp.ones(3), jnp.array([0, 2, 0]), Q_NEXT, 0.9)


def _tolist(tree):
    return jax.tree.map(lambda x: np.asarray(x).tolist(), tree)


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(x, y)


def test_second_audit_lists_give_the_arrays_numbers():
    mean, log_std, action = jnp.array([0.1, -0.3]), jnp.array([-0.5, 0.2]), jnp.array([0.4, -0.9])
    low, high = jnp.array([-1.0, -2.0]), jnp.array([1.0, 0.5])
    list_args = _tolist((mean, log_std, action, low, high))
    _assert_same(D.tanh_gaussian_log_prob(*list_args), D.tanh_gaussian_log_prob(mean, log_std, action, low, high))
    _assert_same(D.tanh_gaussian_sample(KEY, *list_args[:2], *list_args[3:]), D.tanh_gaussian_sample(KEY, mean, log_std, low, high))
    _assert_same(D.tanh_gaussian_mode(list_args[0], *list_args[3:]), D.tanh_gaussian_mode(mean, low, high))
    _assert_same(D.tanh_gaussian_entropy(*list_args[:2], *list_args[3:]), D.tanh_gaussian_entropy(mean, log_std, low, high))
    _assert_same(D.tanh_gaussian_entropy(list_args[0], list_args[1]), D.tanh_gaussian_entropy(mean, log_std))

    mdp = X.random_mdp(KEY, 3, 2)
    logits = jnp.array([[0.3, -jnp.inf], [1.0, 0.5], [-0.2, 0.1]])
    for fn in (X.value_function, X.q_function, X.discounted_state_distribution, X.expected_return, X.policy_gradient, X.policy_gradient_theorem):
        _assert_same(fn(mdp, _tolist(logits)), fn(mdp, logits))
    for fn in (X.finite_horizon_values, X.finite_horizon_expected_return, X.finite_horizon_policy_gradient):
        _assert_same(fn(mdp, _tolist(logits), 3, 0.9), fn(mdp, logits, 3, 0.9))
    _assert_same(X.policy_probs(_tolist(logits)), X.policy_probs(logits))
    theta, phi = jnp.array([0.2, -0.4]), jax.random.normal(KEY, (3, 2, 2))
    _assert_same(X.features_expected_return(mdp, _tolist(theta), _tolist(phi)), X.features_expected_return(mdp, theta, phi))
    _assert_same(X.features_policy_gradient(mdp, _tolist(theta), _tolist(phi)), X.features_policy_gradient(mdp, theta, phi))
    for fn in (X.lqr_expected_return, X.lqr_state_moments, X.lqr_policy_gradient):
        _assert_same(fn(LQR, LQR_PARAMS, _tolist(GAIN), _tolist(LQR_LOG_STD)), fn(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD))
    _assert_same(X.lqr_riccati(LQR, LQR_PARAMS, _tolist(GAIN)), X.lqr_riccati(LQR, LQR_PARAMS, GAIN))
    xs, ts = jnp.array([[1.0, -0.5], [0.3, 0.2]]), jnp.array([0, 2])
    _assert_same(X.lqr_value(LQR, LQR_PARAMS, *_tolist((GAIN, LQR_LOG_STD, xs, ts))), X.lqr_value(LQR, LQR_PARAMS, GAIN, LQR_LOG_STD, xs, ts))

    baseline = jnp.linspace(0.0, -1.0, LQR_H)
    _assert_same(_score_return(_tolist(baseline)), _score_return(baseline))
    rewards = jnp.arange(6.0).reshape(2, 3)
    _assert_same(PW.leave_one_out_baseline(_tolist(rewards)), PW.leave_one_out_baseline(rewards))

    obs, act, lg, w = jnp.eye(2)[jnp.array([[0, 1], [1, 1]])], jnp.array([[0, 1], [1, 0]]), jnp.array([[0.1, 0.2], [0.3, -0.1]]), jnp.ones((2, 2))
    _assert_same(L.tabular_estimate(*_tolist((obs, act, lg, w))), L.tabular_estimate(obs, act, lg, w))

    reward, terminated, q_online = jnp.array([1.0, 2.0, 3.0]), jnp.array([False, True, False]), Q_NEXT[::-1]
    for online in (None, q_online):
        _assert_same(VL.td_target(*_tolist((reward, terminated, Q_NEXT)), 0.9, None if online is None else _tolist(online)),
                     VL.td_target(reward, terminated, Q_NEXT, 0.9, online))
    for loss in ("huber", "mse"):
        _assert_same(VL.td_loss(_tolist(reward), _tolist(Q_NEXT[:, 0]), loss), VL.td_loss(reward, Q_NEXT[:, 0], loss))


# --- bad input, the audit's remaining cases (sharding, policies, envs, numeric_hparams)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: rlpg.sharding.check_divisible(rlpg.sharding.make_mesh(1, 1), num_seeds=0), ValueError, "`num_seeds` must be a positive integer; got 0"),
        (lambda: rlpg.sharding.check_divisible(rlpg.sharding.make_mesh(1, 1), num_envs="2"), ValueError, "`num_envs` must be a positive integer; got '2'"),
        (lambda: rlpg.sharding.reporting_seeds(rlpg.sharding.make_mesh(1, 1), -3), ValueError, "`num_seeds` must be a positive integer; got -3"),
        (lambda: P.observation_action_features(0), ValueError, "`num_actions` must be a positive integer; got 0"),
        (lambda: P.linear_gaussian(lambda o: o, 2, 1, learn_log_std="no"), TypeError, "`learn_log_std` must be True or False"),
        (lambda: P.linear_gaussian(lambda o: o, 2, 1, init_log_std=[0.0, 0.0]), ValueError, r"`init_log_std` must be a scalar; got shape \(2,\)"),
        (lambda: P.mlp_gaussian((3,), 1, (4,), state_dependent_std="yes"), TypeError, "`state_dependent_std` must be True or False"),
        (lambda: P.epsilon_greedy(P.mlp_categorical((3,), 2, (4,))).apply({"q": P.mlp_categorical((3,), 2, (4,)).init(KEY), "epsilon": 1.5}, jnp.zeros(3)),
         ValueError, r"`epsilon` must lie in \[0.0, 1.0\]; got 1.5"),
        (lambda: rlpg.envs.MultiArmedBandit([]), ValueError, "`arm_means` must hold at least one arm"),
        (lambda: rlpg.envs.CliffWalking(max_steps_in_episode=2.5), ValueError, "`max_steps_in_episode` must be a positive integer; got 2.5"),
        (lambda: rlpg.algos.numeric_hparams(reinforce.Config(), 0), ValueError, "`num_seeds` must be a positive integer; got 0"),
    ],
)
def test_the_audits_remaining_cases_name_the_argument(call, error, words):
    """Each returned something before: a mesh check passing 0 or -3 seeds, features of 0 actions,
    a string taken for True, ε = 1.5 giving log-probabilities of a negative probability, a bandit
    with no arm, a time limit of 2.5 truncated to 2, hparams of no seed."""
    with pytest.raises(error, match=words):
        call()


def test_numpy_integers_make_a_mesh():
    assert rlpg.sharding.make_mesh(np.int64(1), np.int64(1)).shape == {"seeds": 1, "envs": 1}
