"""The REINFORCE surrogate's gradient is the explicit Σ w ∇log π, and the estimator is unbiased."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlpg import distributions as D
from rlpg import estimators as E
from rlpg import policies as P


def _linear_problem(T=5, B=3, A=4, F=6, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    theta = jax.random.normal(k[0], (F,))
    phi = jax.random.normal(k[1], (T, B, A, F))
    actions = jax.random.randint(k[2], (T, B), 0, A)
    weights = jax.random.normal(k[3], (T, B))
    return theta, phi, actions, weights


def test_surrogate_gradient_is_explicit_estimator():
    theta, phi, actions, weights = _linear_problem()
    mask = jnp.ones_like(weights).at[3:, 1].set(0.0)

    def loss(theta):
        log_probs = D.categorical_log_prob(P.linear_softmax_logits(theta, phi), actions)
        return E.reinforce_loss(log_probs, weights, mask)

    explicit = np.zeros_like(theta)
    for t in range(phi.shape[0]):
        for b in range(phi.shape[1]):
            if mask[t, b]:
                explicit += weights[t, b] * np.asarray(P.linear_softmax_score(theta, phi[t, b], actions[t, b]))
    np.testing.assert_allclose(jax.grad(loss)(theta), -explicit / mask.sum(), rtol=1e-5, atol=1e-6)


def test_no_gradient_flows_through_weights():
    theta, phi, actions, _ = _linear_problem()

    def loss(theta):
        log_probs = D.categorical_log_prob(P.linear_softmax_logits(theta, phi), actions)
        return E.reinforce_loss(log_probs, jnp.exp(log_probs))  # weights depending on θ

    def detached(theta):
        log_probs = D.categorical_log_prob(P.linear_softmax_logits(theta, phi), actions)
        return -jnp.mean(jax.lax.stop_gradient(jnp.exp(log_probs)) * log_probs)

    np.testing.assert_allclose(jax.grad(loss)(theta), jax.grad(detached)(theta), rtol=1e-6, atol=1e-6)


def test_per_sample_grads_match_loop():
    theta, phi, actions, _ = _linear_problem()
    phi, actions = phi.reshape(-1, *phi.shape[2:]), actions.reshape(-1)

    def log_prob(theta, phi_sa, a):
        return D.categorical_log_prob(P.linear_softmax_logits(theta, phi_sa), a)

    scores = E.per_sample_grads(log_prob, theta, phi, actions)
    assert scores.shape == (phi.shape[0], theta.shape[0])
    for i in (0, 7, phi.shape[0] - 1):
        np.testing.assert_allclose(scores[i], P.linear_softmax_score(theta, phi[i], actions[i]), rtol=1e-5, atol=1e-6)


def test_weights_baseline_and_normalization():
    g = jnp.array([[1.0, 4.0], [3.0, 8.0]])
    np.testing.assert_allclose(E.reinforce_weights(g, 2.0), g - 2.0)
    np.testing.assert_allclose(E.reinforce_weights(g, E.batch_mean_baseline(g)), g - 4.0)
    w = E.reinforce_weights(g, g * 0.5, normalize=True)
    np.testing.assert_allclose([w.mean(), w.std()], [0.0, 1.0], atol=1e-5)
    mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(E.batch_mean_baseline(g, mask), 8.0 / 3.0, rtol=1e-6, atol=1e-6)


def test_estimator_is_unbiased_on_a_bandit():
    """Mean of m = 200,000 single-pull estimates r(a) ∇log π(a) vs the exact ∇ Σ_a π(a) r(a)."""
    logits = jnp.array([0.2, -0.4, 0.1])
    reward_means = jnp.array([1.0, 2.0, -0.5])
    exact = jax.grad(lambda l: jnp.sum(jax.nn.softmax(l) * reward_means))(logits)

    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    n = 200_000
    actions = D.categorical_sample(k1, jnp.broadcast_to(logits, (n, 3)))
    rewards = reward_means[actions] + jax.random.normal(k2, (n,))
    per_sample = E.per_sample_grads(lambda l, a, r: -E.reinforce_loss(D.categorical_log_prob(l, a)[None], r[None]), logits, actions, rewards)
    mean = per_sample.mean(0)
    stderr = per_sample.std(0) / np.sqrt(n)
    assert np.all(np.abs(mean - exact) < 4 * stderr), (mean, exact, stderr)
    # and a constant baseline keeps it unbiased while cutting the variance
    with_baseline = E.per_sample_grads(lambda l, a, r: -E.reinforce_loss(D.categorical_log_prob(l, a)[None], r[None] - 1.0), logits, actions, rewards)
    assert np.all(np.abs(with_baseline.mean(0) - exact) < 4 * with_baseline.std(0) / np.sqrt(n))
    assert with_baseline.var(0).sum() < per_sample.var(0).sum()


X = jnp.arange(6.0).reshape(3, 2)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: E.reinforce_loss(jnp.zeros((5, 2)), jnp.zeros((5, 3))), ValueError, "`log_probs`"),
        (lambda: E.reinforce_loss(jnp.zeros((5, 2)), jnp.zeros((5, 2), jnp.int32)), TypeError, "`weights`"),
        (lambda: E.reinforce_loss(jnp.zeros((5, 2)), jnp.zeros((5, 2)), jnp.ones((5,))), ValueError, "`mask`"),
        (lambda: E.value_loss(jnp.zeros((5, 2)), jnp.zeros((4, 2))), ValueError, "`targets`"),
        (lambda: E.reinforce_weights(jnp.arange(4)), TypeError, "`returns`"),
        # A second audit's cases: each returned a number (or failed inside jax) before.
        (lambda: E.masked_mean(jnp.array([1.0, 2.0]), jnp.array([0, 0])), ValueError, "`mask` must select at least one entry"),
        (lambda: E.value_loss(jnp.ones(3), jnp.zeros(3), jnp.zeros(3)), ValueError, "`mask` must select at least one entry"),
        (lambda: E.reinforce_loss(X, X, count=0), ValueError, "`count` must be > 0; got 0."),
        (lambda: E.reinforce_loss(X, X, count=-1.0), ValueError, "`count` must be > 0"),
        (lambda: E.reinforce_loss(X, X, count=jnp.array([1.0, 2.0])), ValueError, r"`count` must be a scalar; got shape \(2,\)"),
        (lambda: E.reinforce_loss(X, X, 2 * jnp.ones_like(X), count=6), ValueError, "`mask` must hold only 0 and 1"),
        (lambda: E.reinforce_weights(X, normalize="no"), TypeError, "`normalize` must be True or False"),
        (lambda: E.ppo_clip_loss(X, X, X, jnp.array([0.2, 0.1])), ValueError, "`clip_eps` must be a scalar"),
        (lambda: E.leave_one_out_normalize(jnp.ones(3)), ValueError, "`weights` must have rank 2"),
        (lambda: E.leave_one_out_normalize(X, jnp.ones(3)), ValueError, r"`weights` \(3, 2\), `mask` \(3,\)"),
        (lambda: E.leave_one_out_baseline(X, 2 * jnp.ones_like(X)), ValueError, "`mask` must hold only 0 and 1"),
        (lambda: E.natural_gradient_step(jnp.ones((3, 1)), lambda v: v, 0.01, 3), ValueError, "`grad` must have rank 1"),
        (lambda: E.conjugate_gradient(lambda v: v, jnp.ones(3, jnp.int32), 3), TypeError, "`b` must be a floating-point array"),
        (lambda: E.fisher_vector_product(lambda t: t, jnp.ones(3), jnp.ones(3, jnp.bfloat16)), TypeError, "`v` must have `theta`'s dtype"),
    ],
)
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_ppo_clip_loss_equals_naive_formula_and_its_gradient_vanishes_when_clipped():
    k = jax.random.split(jax.random.PRNGKey(3), 3)
    log_probs = jax.random.normal(k[0], (6, 3)) * 0.3 - 1.0
    old = log_probs + jax.random.normal(k[1], (6, 3)) * 0.3
    adv = jax.random.normal(k[2], (6, 3))
    eps = 0.2
    naive = 0.0
    for t in range(6):
        for b in range(3):
            ratio = float(np.exp(log_probs[t, b] - old[t, b]))
            naive += min(ratio * adv[t, b], min(max(ratio, 1 - eps), 1 + eps) * adv[t, b])
    np.testing.assert_allclose(E.ppo_clip_loss(log_probs, old, adv, eps), -naive / 18, rtol=1e-5)
    grad = np.asarray(jax.grad(E.ppo_clip_loss)(log_probs, old, adv, eps))
    ratio = np.exp(log_probs - old)
    clipped = ((ratio > 1 + eps) & (adv > 0)) | ((ratio < 1 - eps) & (adv < 0))
    assert clipped.any() and (~clipped).any()
    np.testing.assert_array_equal(grad[clipped], 0.0)
    np.testing.assert_allclose(grad[~clipped], -(ratio * adv)[~clipped] / 18, rtol=1e-5)
    # at θ = θ_old the clipped surrogate's gradient is the REINFORCE estimator's
    np.testing.assert_allclose(
        jax.grad(E.ppo_clip_loss)(log_probs, log_probs, adv, eps), jax.grad(E.reinforce_loss)(log_probs, adv), rtol=1e-6, atol=1e-6
    )


def test_clipped_value_loss_and_ratio_diagnostics_equal_naive_formulas():
    values = jnp.array([1.0, 2.0, 0.0, -1.0])
    old = jnp.array([0.5, 2.5, 0.0, 0.0])
    targets = jnp.array([3.0, 2.2, 1.0, -2.0])
    eps = 0.2
    clipped = np.array([0.7, 2.3, 0.0, -0.2])
    naive = 0.5 * np.mean(np.maximum((np.asarray(values) - targets) ** 2, (clipped - targets) ** 2))
    np.testing.assert_allclose(E.clipped_value_loss(values, old, targets, eps), naive, rtol=1e-6, atol=1e-6)
    log_ratio = jnp.array([0.0, 0.1, -0.3, 0.25])
    diag = E.ratio_diagnostics(log_ratio, jnp.zeros(4), eps)
    r = np.exp(np.asarray(log_ratio))
    np.testing.assert_allclose(diag["approx_kl"], np.mean(r - 1 - np.log(r)), rtol=1e-6, atol=1e-6)
    assert float(diag["clip_fraction"]) == 0.5


def test_leave_one_out_baseline_and_normalize_match_a_naive_loop():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 4)).astype(np.float32) * 3 + 2
    mask = (rng.random((6, 4)) > 0.3).astype(np.float32)
    b = np.asarray(E.leave_one_out_baseline(jnp.asarray(g), jnp.asarray(mask)))
    w = np.asarray(E.leave_one_out_normalize(jnp.asarray(g), jnp.asarray(mask)))
    for e in range(4):
        others = np.concatenate([g[:, j][mask[:, j] > 0] for j in range(4) if j != e])
        np.testing.assert_allclose(b[:, e], others.mean(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(w[:, e], (g[:, e] - others.mean()) / others.std(), rtol=1e-4, atol=1e-4)
    # the other columns all equal: centre only, never divide by a spread of ~0
    flat = np.array([[5.0, 5.0, 5.0], [5.0, 5.0, 9.0]], np.float32)
    np.testing.assert_allclose(E.leave_one_out_normalize(jnp.asarray(flat))[:, 2], [0.0, 4.0], atol=1e-4)


def test_reinforce_loss_with_a_count_divides_by_that_constant():
    log_probs = jnp.array([[-1.0, -2.0], [-0.5, -3.0]])
    weights = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    mask = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    expected = -(1.0 * -1.0 + 3.0 * -0.5 + 4.0 * -3.0) / 10.0
    np.testing.assert_allclose(E.reinforce_loss(log_probs, weights, mask, count=10.0), expected, rtol=1e-6, atol=1e-6)


def test_lists_are_accepted_where_arrays_go_and_give_the_arrays_numbers():
    x, m = jnp.array([[1.0, 2.0], [3.0, 5.0]]), jnp.array([[1.0, 1.0], [0.0, 1.0]])
    for fn, args in [
        (E.leave_one_out_baseline, (x, m)), (E.leave_one_out_normalize, (x, m)),
        (E.clipped_value_loss, (x, x + 1.0, x - 1.0, 0.2, m)), (E.ratio_diagnostics, (x, x / 2.0, 0.2, m)),
        (lambda g: E.natural_gradient_step(g, lambda v: 2.0 * v, 0.01, 3), (x[0],)),
    ]:
        as_lists = [a.tolist() if isinstance(a, jax.Array) else a for a in args]
        np.testing.assert_array_equal(jax.tree.leaves(fn(*as_lists)), jax.tree.leaves(fn(*args)))


def test_normalized_weights_use_the_statistics_of_the_masked_steps_only():
    """reinforce_weights(G, b, normalize=True, mask=m) standardizes G − b by the mean and std of
    the entries where m = 1 (masked-out steps, e.g. after an episode's end, must not count), as a
    naive computation over those entries does. Fails on statistics over all entries."""
    g = jnp.array([[1.0, 4.0, -2.0], [3.0, 8.0, 100.0], [0.5, -50.0, 7.0]])
    baseline = jnp.array([[0.5, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    mask = jnp.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    w = np.asarray(E.reinforce_weights(g, baseline, normalize=True, mask=mask))
    raw = np.asarray(g - baseline)
    counted = raw[np.asarray(mask) > 0]
    np.testing.assert_allclose(w, (raw - counted.mean()) / counted.std(), rtol=1e-5, atol=1e-5)
    assert np.allclose(w[np.asarray(mask) > 0].mean(), 0.0, atol=1e-5)


def test_entropy_bonus_and_value_loss_average_over_the_masked_steps():
    """entropy_bonus is the mean entropy over mask = 1 and value_loss ½ the mean squared error
    there (steps after an episode's end must not count). Fails on plain means over all steps."""
    ent = jnp.array([[1.0, 2.0], [3.0, 10.0]])
    mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(E.entropy_bonus(ent, mask), 2.0, rtol=1e-6)
    np.testing.assert_allclose(E.entropy_bonus(ent), 4.0, rtol=1e-6)
    values, targets = jnp.array([[1.0, 0.0], [2.0, 9.0]]), jnp.array([[0.0, 2.0], [2.0, 0.0]])
    np.testing.assert_allclose(E.value_loss(values, targets, mask), 0.5 * (1.0 + 4.0 + 0.0) / 3, rtol=1e-6)
