"""rlpg.returns against naive Python loops over random episode boundaries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlpg import returns as R


# Window shapes [T, B]: a lone step, a short and a long window, one and several columns. A few fixed
# shapes let every example reuse the programs compiled for them (random shapes compiled anew for
# nearly every example); the seed still draws fresh values and episode boundaries.
WINDOW_SHAPES = ((1, 1), (1, 3), (5, 2), (12, 1), (12, 3))


@st.composite
def windows(draw):
    """Random [T, B] rewards with random terminations and truncations (never both at once)."""
    T, B = draw(st.sampled_from(WINDOW_SHAPES))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, B)).astype(np.float32)
    flags = rng.choice(3, size=(T, B), p=[0.6, 0.25, 0.15])  # 0 none, 1 terminated, 2 truncated
    gamma = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    lam = draw(st.sampled_from([0.0, 0.7, 1.0]))
    return rewards, flags == 1, flags == 2, gamma, lam, rng


# The property tests call each function as one compiled program (discounts traced, so one program
# per window shape); test_jit_and_vmap_agree_with_eager checks jit against eager.
jitted_reward_to_go = jax.jit(R.reward_to_go)
jitted_total_return = jax.jit(R.total_return)
jitted_gae = jax.jit(R.gae)


def naive_reward_to_go(rewards, dones, gamma, bootstrap):
    T, B = rewards.shape
    out = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            g, discount = 0.0, 1.0
            for k in range(t, T):
                g += discount * rewards[k, b]
                if dones[k, b]:
                    break
                discount *= gamma
            else:
                g += discount * bootstrap[b]
            out[t, b] = g
    return out


def naive_total_return(rewards, dones, gamma, bootstrap=None, initial_time=None):
    """Σ_k γ^τ_k r_k over each episode's steps in the window, τ counted from the episode's start
    (initial_time[b] steps before the window for the first), plus γ^τ_T·bootstrap past the window's end."""
    T, B = rewards.shape
    out = np.zeros((T, B))
    for b in range(B):
        start, tau, g = 0, (0 if initial_time is None else int(initial_time[b])), 0.0
        for t in range(T):
            g += gamma ** tau * rewards[t, b]
            tau += 1
            if dones[t, b] or t == T - 1:
                if not dones[t, b] and bootstrap is not None:
                    g += gamma ** tau * bootstrap[b]
                out[start : t + 1, b] = g
                start, tau, g = t + 1, 0, 0.0
    return out


def naive_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    T, B = rewards.shape
    adv = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            a, weight = 0.0, 1.0
            for k in range(t, T):
                delta = rewards[k, b] + gamma * (1 - terminated[k, b]) * next_values[k, b] - values[k, b]
                a += weight * delta
                if terminated[k, b] or truncated[k, b]:
                    break
                weight *= gamma * lam
            adv[t, b] = a
    return adv


@given(windows())
def test_reward_to_go_matches_naive(window):
    rewards, term, trunc, gamma, _, rng = window
    dones = term | trunc
    bootstrap = rng.normal(size=rewards.shape[1]).astype(np.float32)
    np.testing.assert_allclose(jitted_reward_to_go(rewards, dones, gamma), naive_reward_to_go(rewards, dones, gamma, 0 * bootstrap), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        jitted_reward_to_go(rewards, dones, gamma, jnp.asarray(bootstrap)),
        naive_reward_to_go(rewards, dones, gamma, bootstrap), rtol=1e-4, atol=1e-4,
    )


@given(windows())
def test_total_return_matches_naive(window):
    rewards, term, trunc, gamma, _, rng = window
    dones = term | trunc
    np.testing.assert_allclose(jitted_total_return(rewards, dones, gamma), naive_total_return(rewards, dones, gamma), rtol=1e-4, atol=1e-4)
    # A carried window: episodes under way at its start are discounted from their own start.
    bootstrap = rng.normal(size=rewards.shape[1]).astype(np.float32)
    initial_time = rng.integers(0, 6, size=rewards.shape[1]).astype(np.int32)
    np.testing.assert_allclose(
        jitted_total_return(rewards, dones, gamma, jnp.asarray(bootstrap), jnp.asarray(initial_time)),
        naive_total_return(rewards, dones, gamma, bootstrap, initial_time), rtol=1e-4, atol=1e-4,
    )


@given(windows())
def test_gae_matches_naive(window):
    rewards, term, trunc, gamma, lam, rng = window
    values = rng.normal(size=rewards.shape).astype(np.float32)
    next_values = rng.normal(size=rewards.shape).astype(np.float32)
    adv, targets = jitted_gae(rewards, values, next_values, term, trunc, gamma, lam)
    expected = naive_gae(rewards, values, next_values, term, trunc, gamma, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(targets, expected + values, rtol=1e-4, atol=1e-4)


@given(windows())
def test_gae_lambda_one_is_bootstrapped_return(window):
    """λ = 1: A + V is the discounted return, bootstrapped at truncations and at the window's end."""
    rewards, term, _, gamma, _, rng = window
    T, B = rewards.shape
    values = rng.normal(size=(T + 1, B)).astype(np.float32)
    values, next_values = values[:-1], values[1:]  # V(s_{t+1}) as the next state's value
    no_trunc = np.zeros_like(term)
    _, targets = jitted_gae(rewards, values, next_values, term, no_trunc, gamma, 1.0)
    expected = jitted_reward_to_go(rewards, term, gamma, jnp.asarray(next_values[-1]))
    np.testing.assert_allclose(targets, expected, rtol=1e-4, atol=1e-4)


def test_truncation_bootstraps_termination_does_not():
    rewards = jnp.ones((1, 2))
    adv, _ = R.gae(rewards, jnp.zeros((1, 2)), jnp.full((1, 2), 10.0), jnp.array([[True, False]]), jnp.array([[False, True]]), 0.9, 0.95)
    np.testing.assert_allclose(adv, [[1.0, 1.0 + 0.9 * 10.0]])


@given(windows())
def test_masks_match_naive(window):
    _, term, trunc, _, _, _ = window
    dones = np.asarray(term | trunc)
    T, B = dones.shape
    ends = np.array([[dones[t:, b].any() for b in range(B)] for t in range(T)])
    starts = np.array([[t == 0 and False or dones[:t, b].any() for b in range(B)] for t in range(T)])
    first = np.array([[not dones[:t, b].any() for b in range(B)] for t in range(T)])
    np.testing.assert_array_equal(R.episode_ends_mask(dones), ends)
    np.testing.assert_array_equal(R.episode_starts_mask(dones), starts)
    np.testing.assert_array_equal(R.first_episode_mask(dones), first)


def test_normalize_masked():
    x = jnp.array([1.0, 2.0, 3.0, 100.0])
    mask = jnp.array([1, 1, 1, 0])
    z = R.normalize(x, mask)
    np.testing.assert_allclose(z[:3], (np.array([1, 2, 3]) - 2) / np.std([1, 2, 3]), rtol=1e-5)
    np.testing.assert_allclose(R.normalize(x).std(), 1.0, rtol=1e-5)


def test_jit_and_vmap_agree_with_eager():
    rewards = jax.random.normal(jax.random.PRNGKey(0), (6, 4, 3))
    dones = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (6, 4, 3))
    eager = R.reward_to_go(rewards, dones, 0.9)
    np.testing.assert_allclose(jax.jit(R.reward_to_go)(rewards, dones, 0.9), eager, rtol=1e-6, atol=1e-6)
    vmapped = jax.vmap(R.reward_to_go, in_axes=(2, 2, None), out_axes=2)(rewards, dones, 0.9)
    np.testing.assert_allclose(vmapped, eager, rtol=1e-6, atol=1e-6)
    gammas = jnp.array([0.5, 0.9])  # a traced discount, swept with vmap
    swept = jax.vmap(R.reward_to_go, in_axes=(None, None, 0))(rewards, dones, gammas)
    np.testing.assert_allclose(swept[1], eager, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: R.reward_to_go(jnp.zeros((5, 2), jnp.int32), jnp.zeros((5, 2)), 0.9), TypeError, "`rewards`"),
        (lambda: R.reward_to_go(jnp.zeros((5, 2)), jnp.zeros((4, 2)), 0.9), ValueError, r"`rewards` \(5, 2\).*`dones` \(4, 2\)"),
        (lambda: R.reward_to_go(jnp.zeros(()), jnp.zeros(()), 0.9), ValueError, "`rewards` must have rank"),
        (lambda: R.reward_to_go(jnp.zeros((5,)), jnp.zeros((5,)), -0.1), ValueError, r"`gamma` must lie in \[0.0, 1.0\]; got -0.1"),
        (lambda: R.reward_to_go(jnp.zeros((5, 2)), jnp.zeros((5, 2)), 0.9, jnp.zeros(3)), ValueError, "`bootstrap_value`"),
        (lambda: R.gae(*(jnp.zeros((5,)),) * 5, 0.9, 1.5), ValueError, r"`lam` must lie in \[0.0, 1.0\]; got 1.5"),
        (lambda: R.gae(jnp.zeros((5,)), jnp.zeros((4,)), jnp.zeros((5,)), jnp.zeros((5,)), jnp.zeros((5,)), 0.9, 0.9), ValueError, "`values`"),
        (lambda: R.total_return(jnp.zeros((5, 2)), jnp.zeros((5, 3))), ValueError, "`dones`"),
        (lambda: R.normalize(jnp.arange(3)), TypeError, "`x`"),
        # A second audit's cases: each returned a number (or failed inside jax) before.
        (lambda: R.reward_to_go(jnp.zeros((0, 2)), jnp.zeros((0, 2)), 0.9), ValueError, r"`rewards` must hold at least one step.*\(0, 2\)"),
        (lambda: R.first_episode_mask(jnp.zeros((0, 2))), ValueError, "`dones` must hold at least one step"),
        (lambda: R.reward_to_go(jnp.ones((4, 2)), jnp.zeros((4, 2)), jnp.array([0.9, 0.5])), ValueError, r"`gamma` must be a scalar; got shape \(2,\)"),
        (lambda: R.gae(*(jnp.zeros((5,)),) * 5, 0.9, jnp.array([0.9])), ValueError, r"`lam` must be a scalar"),
        (lambda: R.total_return(jnp.ones((4, 2)), jnp.zeros((4, 2)), 0.9, initial_time=[-3, 0]), ValueError, r"`initial_time` must be >= 0; got \[-3, 0\]"),
        (lambda: R.total_return(jnp.ones((4, 2)), jnp.zeros((4, 2)), 0.9, initial_time=[1.5, 0.0]), TypeError, "`initial_time` must be an integer"),
        (lambda: R.episode_time(jnp.zeros((4, 2)), [-3, 0]), ValueError, "`initial` must be >= 0"),
        (lambda: R.normalize(jnp.ones(2), eps=-1e-8), ValueError, "`eps` must be > 0"),
    ],
)
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_running_discounted_return_equals_a_naive_loop():
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(7, 3)).astype(np.float32)
    dones = rng.random((7, 3)) < 0.3
    initial = np.array([1.0, -2.0, 0.5], np.float32)
    g, carry = R.running_discounted_return(jnp.asarray(rewards), jnp.asarray(dones), 0.9, jnp.asarray(initial))
    expected, running = np.zeros_like(rewards), initial.copy()
    for t in range(7):
        running = rewards[t] + 0.9 * running
        expected[t] = running
        running = np.where(dones[t], 0.0, running)
    np.testing.assert_allclose(g, expected, rtol=1e-5)
    np.testing.assert_allclose(carry, running, rtol=1e-5)


def test_episode_time_counts_from_each_episode_start():
    dones = jnp.array([[0, 0], [1, 0], [0, 1], [0, 0]], bool)
    times = R.episode_time(dones, jnp.array([3, 0]))
    np.testing.assert_array_equal(times, [[3, 0], [4, 1], [0, 2], [1, 0]])


def test_lists_and_bfloat16_scalars_are_accepted_and_give_the_arrays_numbers():
    """Python lists where arrays go, and a bfloat16 discount (refused as "not a number" before)."""
    rewards, dones = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([[0, 1], [0, 0]])
    with_array = R.reward_to_go(rewards, dones, 0.9, jnp.array([1.0, 2.0]))
    np.testing.assert_array_equal(R.reward_to_go(rewards.tolist(), dones.tolist(), 0.9, [1.0, 2.0]), with_array)
    np.testing.assert_array_equal(R.episode_time(dones.tolist(), [2, 0]), R.episode_time(dones, jnp.array([2, 0])))
    gamma = jnp.asarray(0.9, jnp.bfloat16)
    np.testing.assert_array_equal(R.reward_to_go(rewards, dones, gamma), R.reward_to_go(rewards, dones, float(gamma)))
