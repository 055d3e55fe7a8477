"""Analytic scores of the linear families equal autodiff; MLP policies have the documented shapes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlpg import distributions as D
from rlpg import policies as P


# Each check runs as one jitted program per shape, drawn from a few fixed shapes that cover every
# size's extremes (unbatched and batched, one and several actions/features, dimensions that differ):
# the seeds vary the values, while an eager jax.grad over random shapes compiled every primitive
# anew for every example (36 s of a 2-core suite run).
@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def linear_softmax_score_and_autodiff(batch, num_actions, num_features, seed):
    lead = (batch,) if batch else ()
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    theta = jax.random.normal(k1, (num_features,))
    phi = jax.random.normal(k2, lead + (num_actions, num_features))
    action = jax.random.randint(k3, lead, 0, num_actions)

    def log_prob(theta, phi, a):
        return D.categorical_log_prob(P.linear_softmax_logits(theta, phi), a)

    grad = jax.vmap(jax.grad(log_prob), (None, 0, 0))(theta, phi, action) if batch else jax.grad(log_prob)(theta, phi, action)
    return P.linear_softmax_score(theta, phi, action), grad


# (batch, num_actions, num_features); batch 0 means no leading axis.
SOFTMAX_SHAPES = ((0, 2, 1), (0, 5, 6), (3, 2, 6), (3, 5, 1))


@given(st.sampled_from(SOFTMAX_SHAPES), st.integers(0, 2**31 - 1))
def test_linear_softmax_score_equals_autodiff(shape, seed):
    batch, num_actions, num_features = shape
    score, grad = linear_softmax_score_and_autodiff(batch, num_actions, num_features, seed)
    np.testing.assert_allclose(score, grad, rtol=1e-5, atol=1e-5)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def linear_gaussian_score_and_autodiff(batch, num_features, action_dim, seed):
    lead = (batch,) if batch else ()
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(seed), 4)
    theta = jax.random.normal(k1, (num_features, action_dim))
    phi = jax.random.normal(k2, lead + (num_features,))
    log_std = 0.3 * jax.random.normal(k3, (action_dim,))
    action = jax.random.normal(k4, lead + (action_dim,))

    def log_prob(theta, phi, a):
        return D.gaussian_log_prob(P.linear_gaussian_mean(theta, phi), log_std, a)

    grad = jax.vmap(jax.grad(log_prob), (None, 0, 0))(theta, phi, action) if batch else jax.grad(log_prob)(theta, phi, action)
    return P.linear_gaussian_score(theta, phi, log_std, action), grad


# (batch, num_features, action_dim); batch 0 means no leading axis.
GAUSSIAN_SHAPES = ((0, 1, 1), (0, 5, 3), (3, 1, 3), (3, 5, 1))


@given(st.sampled_from(GAUSSIAN_SHAPES), st.integers(0, 2**31 - 1))
def test_linear_gaussian_score_equals_autodiff(shape, seed):
    batch, num_features, action_dim = shape
    score, grad = linear_gaussian_score_and_autodiff(batch, num_features, action_dim, seed)
    np.testing.assert_allclose(score, grad, rtol=1e-4, atol=1e-5)


def test_linear_policies_as_pairs():
    features = lambda obs: jax.nn.one_hot(obs, 3)[..., None, :] * jnp.ones((2, 1))  # [..., A=2, F=3]
    pol = P.linear_softmax(features, 3)
    theta = pol.init(jax.random.PRNGKey(0))
    logits = pol.apply(theta, jnp.array([0, 2, 1]))
    assert logits.shape == (3, 2)
    gauss = P.linear_gaussian(lambda obs: obs, 4, 2, learn_log_std=False, init_log_std=-1.0)
    params = gauss.init(jax.random.PRNGKey(0))
    assert set(params) == {"theta"}
    mean, log_std = gauss.apply(params, jnp.ones((5, 4)))
    assert mean.shape == (5, 2) and np.allclose(log_std, -1.0)


def test_mlp_policies_shapes_and_batch_independence():
    obs = jax.random.normal(jax.random.PRNGKey(0), (7, 3, 4))
    cat = P.mlp_categorical((4,), 2, hidden=(16,))
    params = cat.init(jax.random.PRNGKey(1))
    logits = cat.apply(params, obs)
    assert logits.shape == (7, 3, 2)
    np.testing.assert_allclose(cat.apply(params, obs[2, 1]), logits[2, 1], rtol=1e-6, atol=1e-6)

    for state_dependent in (False, True):
        gauss = P.mlp_gaussian((4,), 2, hidden=(16,), state_dependent_std=state_dependent, init_log_std=-0.5)
        mean, log_std = gauss.apply(gauss.init(jax.random.PRNGKey(1)), obs)
        assert mean.shape == (7, 3, 2)
        assert log_std.shape == ((7, 3, 2) if state_dependent else (2,))
        assert D.gaussian.log_prob((mean, log_std), mean).shape == (7, 3)

    value = P.mlp_value((4,), hidden=(16,))
    assert value.apply(value.init(jax.random.PRNGKey(2)), obs).shape == (7, 3)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="`theta`"):
        P.linear_softmax_score(jnp.zeros(3), jnp.zeros((2, 4)), jnp.array(0))
    with pytest.raises(ValueError, match="`theta`"):
        P.linear_gaussian_mean(jnp.zeros((3, 1)), jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match="`obs`"):
        cat = P.mlp_categorical((4,), 2)
        cat.apply(cat.init(jax.random.PRNGKey(0)), jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="`activation`"):
        P.mlp_value((4,), activation="sigmoid")


def test_gaussian_log_std_starts_at_init_log_std_with_either_head():
    """mlp_gaussian(init_log_std=c): log σ is c at init, as a learned vector or as a second head of
    the MLP (state_dependent_std=True, offset by c; its last layer is scaled 0.01, so the head
    starts near 0). Fails when the state-dependent head drops the offset (log σ ≈ 0)."""
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    for state_dependent in (False, True):
        policy = P.mlp_gaussian((3,), 2, hidden=(8,), state_dependent_std=state_dependent, init_log_std=-1.5)
        _, log_std = policy.apply(policy.init(jax.random.PRNGKey(0)), obs)
        np.testing.assert_allclose(jnp.broadcast_to(log_std, (5, 2)), -1.5, atol=0.1, err_msg=str(state_dependent))
