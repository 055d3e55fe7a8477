"""rlpg.envs.register: a registered id reaches every place rlpg takes an id (Config.env_id,
experiments.train --env, load_policy, also in a fresh process through `module:id`), and an id
registered twice or an env without rlpg's interface is refused by name before anything compiles."""

import sys
import textwrap

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import rlpg
from experiments import train as train_cli
from rlpg import envs
from rlpg.algos import a2c, dqn, npg, ppo, reinforce
from rlpg.envs import registration


@pytest.fixture
def clean_registry():
    """Registrations made by a test are removed after it."""
    before = dict(registration._REGISTERED)
    yield
    registration._REGISTERED.clear()
    registration._REGISTERED.update(before)
    registration._CHECKED.clear()


def test_registered_id_reaches_make_env_and_every_algorithm_config(clean_registry):
    calls = []

    def factory():
        calls.append(1)
        return gymnax.make("CartPole-v1")

    envs.register("test/Pole-v0", factory)
    assert "test/Pole-v0" in envs.registered_ids() and envs.is_registered("test/Pole-v0")
    env, params = envs.make("test/Pole-v0")
    assert env.name == "CartPole-v1" and calls == [1]
    for module in (reinforce, a2c, ppo, npg, dqn):
        module.Config(env_id="test/Pole-v0").validate()
    assert len(calls) == 6  # the factory builds the env each time (no shared instance)


def test_a_registered_id_twice_or_a_builtin_id_is_refused_by_name(clean_registry):
    envs.register("test/Twice-v0", lambda: gymnax.make("CartPole-v1"))
    with pytest.raises(ValueError, match=r"'test/Twice-v0' is already registered.*overwrite=True"):
        envs.register("test/Twice-v0", lambda: gymnax.make("Acrobot-v1"))
    envs.register("test/Twice-v0", lambda: gymnax.make("Acrobot-v1"), overwrite=True)
    assert envs.make("test/Twice-v0")[0].name == "Acrobot-v1"
    for builtin in ("CartPole-v1", "CliffWalking-v0"):
        with pytest.raises(ValueError, match=f"'{builtin}' is already built in"):
            envs.register(builtin, lambda: gymnax.make("CartPole-v1"), overwrite=True)
    with pytest.raises(ValueError, match="reserved prefix 'brax'"):
        envs.register("brax/mine", lambda: gymnax.make("CartPole-v1"))
    with pytest.raises(ValueError, match="non-empty string"):
        envs.register("", lambda: gymnax.make("CartPole-v1"))
    with pytest.raises(TypeError, match="'test/x' must be callable"):
        envs.register("test/x", gymnax.make("CartPole-v1"))


class _NoStep:
    """An object with reset and spaces but no step."""

    def reset(self, key, params):
        return jnp.zeros(2), None

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (2,))

    def action_space(self, params):
        return spaces.Discrete(2)


class _FiveValueStep(gymnax.environments.environment.Environment):
    """The older gymnax step: (obs, state, reward, done, info), auto-resetting without the final observation."""

    @property
    def default_params(self):
        return gymnax.environments.environment.EnvParams(max_steps_in_episode=4)

    def reset(self, key, params=None):
        return jnp.zeros(2), gymnax.environments.environment.EnvState(time=jnp.int32(0))

    def step(self, key, state, action, params=None):
        return jnp.zeros(2), state, jnp.float32(1.0), jnp.bool_(False), {}

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (2,))

    def action_space(self, params=None):
        return spaces.Discrete(2)


class _NoFinalObservation(_FiveValueStep):
    def step(self, key, state, action, params=None):
        return jnp.zeros(2), state, jnp.float32(1.0), jnp.bool_(False), jnp.bool_(False), {}


class _OtherSpaces(_NoFinalObservation):
    def action_space(self, params=None):
        return type("Discrete", (), {"n": 2, "shape": ()})()


class _WrongObsShape(gymnax.environments.environment.Environment):
    """A gymnax 1.x env whose observation_space disagrees with its observations."""

    @property
    def default_params(self):
        return gymnax.environments.environment.EnvParams(max_steps_in_episode=4)

    def reset_env(self, key, params):
        return jnp.zeros(3), gymnax.environments.environment.EnvState(time=jnp.int32(0))

    def step_env(self, key, state, action, params):
        return jnp.zeros(3), state.replace(time=state.time + 1), jnp.float32(0.0), jnp.bool_(False), {}

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (2,))

    def action_space(self, params=None):
        return spaces.Discrete(2)


@pytest.mark.parametrize(
    "env, words",
    [
        (_NoStep(), "has no `step` method"),
        (_FiveValueStep(), r"step returns 5 values; rlpg needs .* the older gymnax step .*: wrap the env in rlpg.envs.LegacyGymnaxEnv"),
        (_NoFinalObservation(), "step's info has no 'final_observation'"),
        (_OtherSpaces(), "`action_space` is a .*Discrete; rlpg needs gymnax spaces"),
        (_WrongObsShape(), r"reset.s observation has shape \(3,\), observation_space says \(2,\)"),
    ],
)
def test_an_env_without_the_interface_is_refused_by_id_before_compiling(clean_registry, env, words):
    params = gymnax.environments.environment.EnvParams(max_steps_in_episode=4)
    envs.register("test/Broken-v0", lambda: (env, params))
    with pytest.raises(ValueError, match=r"environment 'test/Broken-v0' \(.*\): " + words):
        ppo.Config(env_id="test/Broken-v0").validate()


def test_a_factory_must_return_env_and_params(clean_registry):
    envs.register("test/Bare-v0", lambda: gymnax.make("CartPole-v1")[0])
    with pytest.raises(TypeError, match="factory of 'test/Bare-v0' must return"):
        envs.make("test/Bare-v0")


def test_unknown_ids_name_registered_close_ones(clean_registry):
    envs.register("test/MyPole-v0", lambda: gymnax.make("CartPole-v1"))
    with pytest.raises(ValueError, match="Did you mean test/MyPole-v0"):
        envs.make("test/MyPole-v1")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_rlpg'"):
        envs.make("no_such_module_rlpg:Thing-v0")


def test_module_id_trains_from_the_cli_and_reloads_in_a_fresh_registry(clean_registry, tmp_path, monkeypatch):
    """`--env mymodule:id` imports the module that registers the id; load_policy on the saved run
    does the same with an empty registry (as a fresh process would) and plays the policy."""
    (tmp_path / "rlpg_test_user_envs.py").write_text(textwrap.dedent("""
        import gymnax
        import rlpg
        rlpg.envs.register("UserPole-v0", lambda: gymnax.make("CartPole-v1"))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    args = train_cli.Args(
        algo="ppo", env="rlpg_test_user_envs:UserPole-v0", num_seeds=1, total_timesteps=2048,
        num_envs=4, num_steps=32, hidden=(16,), eval_episodes=2, log_every=0, out=out,
    )
    summary = train_cli.run(args)
    assert summary["env_steps_per_seed"] == 2048
    registration._REGISTERED.clear()  # a fresh process: nothing registered, the module not imported
    monkeypatch.delitem(sys.modules, "rlpg_test_user_envs")
    act = rlpg.load_policy(out)
    assert "UserPole-v0" in envs.registered_ids()
    action = act(np.zeros(4, np.float32))
    assert action in (0, 1)
    assert act(np.zeros(4, np.float32), jax.random.PRNGKey(0)) in (0, 1)
