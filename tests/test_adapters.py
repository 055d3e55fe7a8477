"""The adapters at the episode boundary: on a time-limit step the bootstrap observation
(`next_obs`) is the one reached before the reset and the next observation a fresh reset's;
a termination is `terminated`, never `truncated`, so GAE never bootstraps it; a trained policy
reloads with `load_policy` and acts.

brax is compiled once per module (a few programs: reset, one auto-resetting step, brax's own
EpisodeWrapper step) and stepped from Python; Craftax's full step takes over a minute to compile
on CPU, so its `done` split is checked on constructed states (the PPO run on Craftax is in
benchmarks/craftax_ppo.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import spaces

import rlpg
from experiments import train as train_cli
from rlpg import envs, policies, returns, rollout
from rlpg.algos import ppo

# ----------------------------------------------------------------------------- the older gymnax step


@struct.dataclass
class CorridorState:
    position: jax.Array
    time: jax.Array


@struct.dataclass
class CorridorParams:
    goal: int = 3
    max_steps_in_episode: int = 5


class OldCorridor:
    """An env written against the older gymnax interface: 5-value `step_env`, `is_terminal`
    including the time limit, its own space classes. Action 1 moves right, 0 stays; reaching
    `goal` ends the episode. obs = [position, time], reward 1 per step."""

    default_params = CorridorParams()

    def reset_env(self, key, params):
        return jnp.zeros(2), CorridorState(position=jnp.int32(0), time=jnp.int32(0))

    def is_terminal(self, state, params):
        return (state.position >= params.goal) | (state.time >= params.max_steps_in_episode)

    def step_env(self, key, state, action, params):
        state = CorridorState(position=state.position + action, time=state.time + 1)
        obs = jnp.stack([state.position, state.time]).astype(jnp.float32)
        return obs, state, jnp.float32(1.0), self.is_terminal(state, params), {"discount": 1.0}

    def observation_space(self, params):
        return type("Box", (), {"low": 0.0, "high": 10.0, "shape": (2,), "dtype": jnp.float32})()

    def action_space(self, params):
        return type("Discrete", (), {"n": 2})()


def _play(env, params, actions):
    """Step one environment through `actions` [T] with rlpg's rollout.step; returns the per-step
    (obs before, next_obs, obs after, terminated, truncated) as numpy arrays [T, ...]."""
    step = jax.jit(lambda key, batch, action, params: rollout.step(key, env, params, batch, action))
    batch = rollout.reset(jax.random.PRNGKey(0), env, params, 1)
    rows = []
    for t, action in enumerate(actions):
        before = batch.obs[0]
        batch, _, terminated, truncated, next_obs, *_ = step(jax.random.PRNGKey(t + 1), batch, jnp.asarray([action]), params)
        rows.append((before, next_obs[0], batch.obs[0], terminated[0], truncated[0]))
    return [np.asarray(column) for column in zip(*rows)]


def test_legacy_env_time_limit_truncates_and_bootstraps_from_the_pre_reset_observation():
    env = envs.LegacyGymnaxEnv(OldCorridor())
    params = env.default_params.replace(env_params=CorridorParams(goal=3, max_steps_in_episode=2))
    assert params.max_steps_in_episode == 5  # the adapter's own limit is read once from the defaults
    assert isinstance(env.action_space(params), spaces.Discrete) and env.action_space(params).n == 2
    assert isinstance(env.observation_space(params), spaces.Box) and env.observation_space(params).shape == (2,)
    before, next_obs, after, terminated, truncated = _play(env, params, [0, 0, 1, 0])
    np.testing.assert_array_equal(truncated, [False, True, False, True])
    np.testing.assert_array_equal(terminated, False)
    np.testing.assert_array_equal(next_obs[1], [0.0, 2.0])  # reached at the limit, before the reset
    np.testing.assert_array_equal(after[1], [0.0, 0.0])  # the next episode's first observation
    np.testing.assert_array_equal(before[2], [0.0, 0.0])
    np.testing.assert_array_equal(next_obs[3], [1.0, 2.0])


def test_legacy_env_termination_never_bootstraps_even_on_the_limit_step():
    env = envs.LegacyGymnaxEnv(OldCorridor())
    # goal reached at step 3 with the limit at 5; then the goal and the limit on the same step (3 of 3)
    for limit, expected_done_step in ((5, 2), (3, 2)):
        params = env.default_params.replace(env_params=CorridorParams(goal=3, max_steps_in_episode=limit))
        _, next_obs, after, terminated, truncated = _play(env, params, [1, 1, 1, 1])
        assert terminated.tolist() == [False, False, True, False], limit
        assert not truncated.any(), limit
        np.testing.assert_array_equal(next_obs[expected_done_step], [3.0, 3.0])
        np.testing.assert_array_equal(after[expected_done_step], [0.0, 0.0])
    # GAE on such a window: the terminated step's target is its reward alone, the truncated one's r + γ V(s').
    value = lambda obs: 10.0 + obs[..., 1]  # noqa: E731
    rewards = jnp.ones((2,))
    obs, next_obs = jnp.array([[2.0, 2.0], [0.0, 1.0]]), jnp.array([[3.0, 3.0], [0.0, 2.0]])
    _, targets = returns.gae(rewards, value(obs), value(next_obs), jnp.array([True, False]), jnp.array([False, True]), 0.9, 0.95)
    np.testing.assert_allclose(targets, [1.0, 1.0 + 0.9 * 12.0], rtol=1e-6)


def test_legacy_env_without_a_time_counter_counts_every_end_as_termination():
    class NoCounter(OldCorridor):
        def reset_env(self, key, params):
            return jnp.zeros(2), {"position": jnp.int32(0)}

    with pytest.raises(ValueError, match="`max_steps_in_episode` must be given: NoCounter has no time counter"):
        envs.LegacyGymnaxEnv(NoCounter())
    with pytest.raises(ValueError, match="has no `step_env`"):
        envs.LegacyGymnaxEnv(object())


def test_legacy_env_split_of_craftax_done():
    """Craftax: the time counter is `timestep`/`max_timesteps`; death on the last step is a termination."""
    pytest.importorskip("craftax")
    env, params = envs.make_craftax("Craftax-Classic-Symbolic-v1")
    assert env._counter == ("timestep", "max_timesteps") and params.max_steps_in_episode == 10_000
    assert env.action_space(params).n == 17 and env.observation_space(params).shape == (1345,)
    _, abstract = jax.eval_shape(env.env.reset_env, jax.ShapeDtypeStruct((2,), jnp.uint32), params.env_params)
    state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract).replace(player_health=jnp.float32(9.0))
    limit = params.env_params.max_timesteps
    cases = {  # (timestep, health) -> (terminated, truncated)
        (limit, 9.0): (False, True),
        (limit, 0.0): (True, False),
        (limit - 1, 0.0): (True, False),
        (limit - 1, 9.0): (False, False),
    }
    for (timestep, health), expected in cases.items():
        s = state.replace(timestep=jnp.int32(timestep), player_health=jnp.float32(health))
        done = env.env.is_terminal(s, params.env_params)
        split = env.split_done(s, done, params.env_params)
        assert (bool(split[0]), bool(split[1])) == expected, (timestep, health)


# ----------------------------------------------------------------------------- brax


@pytest.fixture(scope="module")
def brax_pendulum():
    """BraxEnv over inverted_pendulum with a 4-step limit, its compiled reset and step, and brax's
    own EpisodeWrapper (the flags to agree with)."""
    pytest.importorskip("brax")
    from brax.envs.wrappers import training

    env, params = envs.make("brax/inverted_pendulum")
    assert params.max_steps_in_episode == 1000
    params = params.replace(max_steps_in_episode=4)
    reset = jax.jit(lambda key, params: rollout.reset(key, env, params, 2))
    step = jax.jit(lambda key, batch, action, params: rollout.step(key, env, params, batch, action))  # params traced
    wrapped = training.EpisodeWrapper(env.brax_env, episode_length=4, action_repeat=1)
    return env, params, reset, step, wrapped


def _brax_window(brax_pendulum, actions):
    """Step 2 envs through `actions` [T, 2, 1]; per step: obs before, reward, terminated,
    truncated, next_obs, obs after, and the brax states before each step."""
    env, params, reset, step, _ = brax_pendulum
    batch = reset(jax.random.PRNGKey(0), params)
    out = []
    for t, action in enumerate(actions):
        before = batch
        batch, reward, terminated, truncated, next_obs, *_ = step(jax.random.PRNGKey(100 + t), batch, action, params)
        out.append(dict(before=before, reward=reward, terminated=terminated, truncated=truncated, next_obs=next_obs, after=batch))
    return out


def test_brax_time_limit_truncates_bootstraps_from_the_reached_state_and_resets_fresh(brax_pendulum):
    env, params, _, _, wrapped = brax_pendulum
    assert env.action_space(params).shape == (1,) and float(env.action_space(params).low) == -1.0
    assert env.observation_space(params).shape == (4,)
    window = _brax_window(brax_pendulum, jnp.zeros((5, 2, 1)))
    np.testing.assert_array_equal([np.asarray(w["truncated"]) for w in window], [[False] * 2] * 3 + [[True] * 2] + [[False] * 2])
    assert not any(np.asarray(w["terminated"]).any() for w in window)
    # the bootstrap observation of the limit step is the state that step reached: the same step
    # (same state, key and action) without the time limit continues from it
    last = window[3]
    step = brax_pendulum[3]
    unlimited = params.replace(max_steps_in_episode=1000)
    continued = step(jax.random.PRNGKey(103), last["before"], jnp.zeros((2, 1)), unlimited)[0]
    np.testing.assert_array_equal(last["next_obs"], continued.obs)
    assert np.abs(np.asarray(last["next_obs"] - last["before"].obs)).max() > 0  # it moved
    # ... and the next observation a fresh reset: a reset's spread (|q|, |qd| <= 0.01), not the reached
    # state, and not the first episode's first observation (brax's AutoResetWrapper would restore that one)
    after = np.asarray(last["after"].obs)
    assert np.abs(after).max() <= 0.01 and not np.allclose(after, last["next_obs"])
    first = np.asarray(window[0]["before"].obs)
    assert np.abs(after - first).max() > 1e-4
    np.testing.assert_array_equal(np.asarray(last["after"].env_state.time), 0)
    # brax's EpisodeWrapper calls the same step `truncation`
    wstate = jax.jit(wrapped.reset)(jax.random.PRNGKey(3))  # op by op it would compile some 200 kernels
    wstep = jax.jit(wrapped.step)
    flags = []
    for _ in range(4):
        wstate = wstep(wstate, jnp.zeros(1))
        flags.append((float(wstate.done), float(wstate.info["truncation"])))
    assert flags == [(0.0, 0.0)] * 3 + [(1.0, 1.0)]


def test_brax_termination_is_terminated_never_truncated(brax_pendulum):
    env, params, reset, step, _ = brax_pendulum
    params = params.replace(max_steps_in_episode=1000)
    batch = reset(jax.random.PRNGKey(1), params)
    push = jnp.ones((2, 1))
    for t in range(60):
        batch, _, terminated, truncated, next_obs, _, ep_length = step(jax.random.PRNGKey(t), batch, push, params)
        if bool(terminated.any()):
            break
    assert bool(terminated.all()), "pushing the cart at full force tips the pole past 0.2 rad in both envs"
    assert not bool(truncated.any())
    np.testing.assert_array_less(0.2, np.abs(np.asarray(next_obs[:, 1])))  # the pole angle that ended it
    assert np.abs(np.asarray(batch.obs)).max() <= 0.01  # reset after the end
    np.testing.assert_array_equal(ep_length, t + 1)


def test_brax_observation_size_comes_from_an_abstract_reset():
    """brax's own `observation_size` resets the env op by op, compiling each op (10-30 s);
    BraxEnv reads the size off an abstract reset: brax's reset sees only tracers."""
    pytest.importorskip("brax")
    env, params = envs.make("brax/inverted_pendulum")
    reset, keys = env.brax_env.reset, []
    env.brax_env.reset = lambda key: (keys.append(key), reset(key))[1]
    assert [env.observation_space(params).shape for _ in range(2)] == [(4,), (4,)]
    assert len(keys) == 1 and isinstance(keys[0], jax.core.Tracer)  # two reads, one abstract reset


@pytest.mark.parametrize("continuous_actions", ["tanh"])
def test_brax_ppo_trains_and_reloads_with_load_policy(tmp_path, continuous_actions):
    pytest.importorskip("brax")
    out = tmp_path / "run"
    args = train_cli.Args(
        algo="ppo", env="brax/inverted_pendulum", num_seeds=1, total_timesteps=2048, num_envs=8, num_steps=16,
        num_minibatches=4, hidden=(16,), eval_episodes=2, log_every=0, out=out, continuous_actions=continuous_actions,
    )
    summary = train_cli.run(args)
    assert summary["env_steps_per_seed"] == 2048
    act = rlpg.load_policy(out)
    action = act(np.zeros(4, np.float32))
    assert action.shape == (1,) and -1.0 < float(action[0]) < 1.0
    sampled = act(np.zeros(4, np.float32), jax.random.PRNGKey(0))
    assert sampled.shape == (1,) and -1.0 < float(sampled[0]) < 1.0


# ----------------------------------------------------------------------------- continuous actions


def test_tanh_policy_acts_inside_the_box_and_clip_stays_the_plain_gaussian():
    env, params = envs.make("Pendulum-v1")  # Box [-2, 2]
    clip = policies.make_policy(env, params, (8,), continuous_actions="clip")
    tanh = policies.make_policy(env, params, (8,), continuous_actions="tanh")
    assert clip.distribution is rlpg.distributions.gaussian
    theta = tanh.init(jax.random.PRNGKey(0))
    dist = tanh.apply(theta, jnp.zeros((1000, 3)))
    dist = (dist[0] + 3.0, dist[1])  # push the mean far out: samples still inside the box
    a = tanh.distribution.sample(jax.random.PRNGKey(1), dist)
    assert a.shape == (1000, 1) and float(jnp.abs(a).max()) < 2.0 and float(a.mean()) > 1.9
    np.testing.assert_allclose(tanh.distribution.mode(dist), 2.0 * np.tanh(np.asarray(dist[0])), rtol=1e-6)
    expected = rlpg.distributions.tanh_gaussian_log_prob(*dist, a, -2.0, 2.0)
    np.testing.assert_allclose(tanh.distribution.log_prob(dist, a), expected, rtol=1e-6)

    class Unbounded:
        name = "Unbounded"

        def observation_space(self, params):
            return spaces.Box(0.0, 1.0, (3,))

        def action_space(self, params):
            return spaces.Box(-jnp.inf, jnp.inf, (1,))

    with pytest.raises(ValueError, match="`continuous_actions='tanh'` needs a bounded action space; Unbounded's"):
        policies.make_policy(Unbounded(), None, continuous_actions="tanh")
    with pytest.raises(ValueError, match="`continuous_actions` must be one of"):
        policies.make_policy(env, params, continuous_actions="squash")
    with pytest.raises(ValueError, match="`continuous_actions` must be one of"):
        ppo.Config(env_id="Pendulum-v1", continuous_actions="squash").validate()
