"""The estimator lab: the textbook claims about score-function estimators, as numbers.

Fixed keys throughout, so every assertion is deterministic; the settings were chosen so the
claims hold with a wide margin (see the comments), not by luck of a seed.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import estimator_lab
from rlpg import envs, exact, lab
from rlpg.algos import reinforce

H = 4


@pytest.fixture(scope="module")
def mdp_world():
    env = envs.RandomTabularMDP.from_key(jax.random.PRNGKey(0), 4, 3, max_steps_in_episode=H)
    logits = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    return env, lab.tabular_params(env), logits


@pytest.fixture(scope="module")
def mdp_results(mdp_world):
    env, params, logits = mdp_world
    res = lab.measure(jax.random.PRNGKey(2), env, params, logits, (1, 4, 64), 500)
    return {(r["variant"], r["m"]): r for r in res["rows"]}


@pytest.fixture(scope="module")
def bandit_results():
    # All-positive rewards on a scale far from 1: standardizing the weights rescales the
    # estimate by ~1/std(R) ≈ 1/12 (and m = 1 gives exactly 0), a bias of ~‖∇J‖.
    env = envs.MultiArmedBandit(jnp.array([10.0, 20.0, 40.0]))
    logits = jax.random.normal(jax.random.PRNGKey(3), (2, 3))
    res = lab.measure(jax.random.PRNGKey(4), env, lab.tabular_params(env), logits, (1, 4), 300)
    return {(r["variant"], r["m"]): r for r in res["rows"]}


def test_finite_horizon_values_match_exact_objective(mdp_world):
    env, params, logits = mdp_world
    mdp = env.tabular_mdp(params)
    v = exact.finite_horizon_values(mdp, logits, H)
    assert v.shape == (H + 1, 4)
    np.testing.assert_allclose(v[H], 0.0)
    for t in range(H + 1):  # V_t is the (H − t)-step objective from each state
        for s in range(4):
            start = mdp.replace(initial=jax.nn.one_hot(s, 4))
            np.testing.assert_allclose(
                v[t, s], exact.finite_horizon_expected_return(start, logits, H - t), rtol=1e-5, atol=1e-5
            )


def test_einsum_estimate_equals_autodiff_of_surrogate(mdp_world):
    env, params, logits = mdp_world
    m = 8
    traj, mask = lab.sample_episodes(jax.random.PRNGKey(5), env, params, logits, m)
    mdp = env.tabular_mdp(params)
    values = exact.finite_horizon_values(mdp, logits, H)
    weights = lab.variant_weights(traj, mask, values, 0.5, values[:H] + 0.25)
    for name, w in weights.items():
        w = w * mask

        def surrogate(theta):
            log_pi = jax.nn.log_softmax(traj.obs @ theta, axis=-1)  # [T, m, A]
            log_pi_a = jnp.take_along_axis(log_pi, traj.action[..., None], axis=-1)[..., 0]
            return jnp.sum(jax.lax.stop_gradient(w) * log_pi_a) / m

        np.testing.assert_allclose(
            lab.tabular_estimate(traj.obs, traj.action, logits, w), jax.grad(surrogate)(logits),
            rtol=1e-4, atol=1e-5, err_msg=name,
        )


@pytest.mark.parametrize("variant", lab.UNBIASED)
def test_unbiased_variants_have_bias_inside_interval(mdp_results, bandit_results, variant):
    for results in (mdp_results, bandit_results):
        for (v, m), r in results.items():
            if v == variant:
                assert r["bias"] <= r["bias_ci"], (v, m, r)


def test_normalized_is_biased(mdp_results, bandit_results):
    for m in (1, 4):
        r = bandit_results[("normalized", m)]
        assert r["bias"] > 3 * r["bias_ci"], r
    r = mdp_results[("normalized", 64)]
    assert r["bias"] > 3 * r["bias_ci"], r


def test_variance_ordering(mdp_results):
    for m in (1, 4, 64):
        total = mdp_results[("total", m)]["variance"]
        rtg = mdp_results[("reward_to_go", m)]["variance"]
        value = mdp_results[("rtg_value_baseline", m)]["variance"]
        assert rtg <= total, m
        assert value < rtg, m


def test_monte_carlo_values_against_a_loop(mdp_world):
    env, params, logits = mdp_world
    traj, mask = lab.sample_episodes(jax.random.PRNGKey(6), env, params, logits, 16)
    got = np.asarray(lab.monte_carlo_values(traj, mask))
    states = np.asarray(traj.obs).argmax(-1)
    rewards, done, keep = np.asarray(traj.reward), np.asarray(traj.done), np.asarray(mask)
    totals, visits = np.zeros((H, 4)), np.zeros((H, 4))
    for i in range(16):
        for t in range(H):
            if keep[t, i]:
                end = t + int(np.argmax(done[t:, i])) if done[t:, i].any() else H - 1
                totals[t, states[t, i]] += rewards[t : end + 1, i].sum()
                visits[t, states[t, i]] += 1
    np.testing.assert_allclose(got, totals / np.maximum(visits, 1), rtol=1e-5, atol=1e-5)


def test_learned_baseline_cuts_variance_with_enough_data(mdp_results):
    # Fit on 64 other episodes, V̂ is close to V: the variance falls well below reward-to-go's
    # (0.20 vs 0.30; the exact V gives 0.19). Fit on one other episode, V̂ is that episode's
    # noisy return and the baseline adds variance instead (19.3 vs 16.6).
    variance = {(v, m): r["variance"] for (v, m), r in mdp_results.items()}
    assert variance["rtg_learned_baseline", 64] < 0.8 * variance["reward_to_go", 64]
    assert variance["rtg_learned_baseline", 64] < 1.2 * variance["rtg_value_baseline", 64]
    assert variance["rtg_learned_baseline", 1] > variance["reward_to_go", 1]


def test_bandit_baseline_reduces_variance(bandit_results):
    # H = 1: reward-to-go is the whole return, and the value baseline is J itself.
    for m in (1, 4):
        assert bandit_results[("reward_to_go", m)]["variance"] == pytest.approx(bandit_results[("total", m)]["variance"])
        assert bandit_results[("rtg_value_baseline", m)]["variance"] < 0.5 * bandit_results[("reward_to_go", m)]["variance"]


@pytest.mark.parametrize("variant", ["reward_to_go", "rtg_value_baseline"])
def test_rmse_falls_as_one_over_sqrt_m(mdp_results, variant):
    ratio = mdp_results[(variant, 4)]["rmse"] / mdp_results[(variant, 64)]["rmse"]
    assert 3.3 < ratio < 4.8, ratio  # sqrt(64 / 4) = 4


def test_cli_quick_writes_the_folder(tmp_path):
    out = tmp_path / "lab"
    args = estimator_lab.Args(
        out=out, quick=True, num_states=3, num_actions=2, horizon=3, path_worlds=("LongEpisodeChain-v0",)
    )
    results = estimator_lab.run(args)
    names = ("results.json", "results.md", "error_vs_m.png", "variance_by_variant.png")
    for name in names + (estimator_lab.PATH_JSON, estimator_lab.PATH_MD, estimator_lab.PATH_PLOT):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["worlds"]) == {"random_mdp", "bandit"}
    assert len(saved["worlds"]["bandit"]["rows"]) == len(lab.VARIANTS) * 3
    assert saved["num_batches"] == results["num_batches"] == 200
    assert "| rtg_value_baseline |" in (out / "results.md").read_text()
    assert "| reward_to_go/rloo/gradient |" in (out / estimator_lab.PATH_MD).read_text()
    with pytest.raises(FileExistsError, match="overwrite"):
        estimator_lab.run(args)


def test_training_path_measures_the_update_training_runs():
    """On the chain, the counted update matches ∇J (cos >= 0.99, inside its band); the value
    baseline's untrained critic, bootstrapped at the window's cut, is flagged as biased."""
    env, _ = envs.make("LongEpisodeChain-v0")
    base = reinforce.Config(env_id="LongEpisodeChain-v0", policy="linear", num_envs=8, num_steps=6, total_timesteps=48, hidden=(8,))
    configs = {"none": base.replace(baseline="none", normalize=False), "value": base.replace(baseline="value", normalize=False)}
    theta = jax.random.normal(jax.random.PRNGKey(3), (env.num_features * env.num_actions,)) * 0.5
    res = lab.measure_training_path(jax.random.PRNGKey(1), configs, theta, 600, batch_sizes=(1, 16))
    rows = {r["variant"]: r for r in res["rows"]}
    assert rows["none"]["cosine"] >= 0.99 and not rows["none"]["biased"], rows["none"]
    assert rows["value"]["biased"], rows["value"]
    assert rows["none"]["relative_error"]["16"] < rows["none"]["relative_error"]["1"]


def test_direction_stats_flag_a_mean_against_the_gradient_as_biased():
    """c of the best c·∇J is fitted over c >= 0: a mean pointing against ∇J fits c = 0, its whole
    length is the residual, and it is biased (a free c < 0 fitted it exactly: residual 0, 'unbiased');
    a positive multiple within noise is not; identical estimates (no spread) give finite numbers."""
    target = np.array([0.3, -0.4, 1.2])
    noise = np.random.default_rng(0).normal(size=(1000, 3)) * 0.1
    against = lab._direction_stats(-target + noise, target, (1, 16), 3.0)
    assert against["scale"] == 0.0 and against["biased"], against
    np.testing.assert_allclose(against["residual"], np.linalg.norm((-target + noise).mean(0)), rtol=1e-12)
    assert against["cosine"] < -0.99 and np.isfinite(against["variance"]) and np.isfinite(against["relative_error"]["16"])
    along = lab._direction_stats(2.0 * target + noise, target, (1, 16), 3.0)
    assert along["scale"] == pytest.approx(2.0, rel=0.02) and not along["biased"], along
    constant = lab._direction_stats(np.tile(target, (100, 1)), target, (1,), 3.0)
    assert constant["scale"] == pytest.approx(1.0) and all(np.isfinite(v) for v in (constant["band"], constant["residual"]))


def test_training_path_refuses_configs_of_other_batches():
    base = reinforce.Config(env_id="LongEpisodeChain-v0", policy="linear", num_envs=8, num_steps=6, total_timesteps=48, hidden=(8,))
    configs = {"none": base.replace(baseline="none", normalize=False), "wide": base.replace(baseline="rloo", num_envs=4)}
    with pytest.raises(ValueError, match=r"`configs` must share num_envs: 'wide' has 4, the first config 8"):
        lab.measure_training_path(jax.random.PRNGKey(1), configs, jnp.zeros(4), 10)


def test_estimator_stats_equal_their_formulas():
    """bias = ‖mean − ∇J‖, variance = tr of the unbiased (ddof 1) covariance, bias_ci =
    k·sqrt(tr Cov / N), rmse and cosine, on 4 hand-made estimates against numpy formulas.
    Fails on the biased variance (ddof 0), which shrinks the band of every unbiasedness test."""
    g = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, -1.0], [2.0, 3.0]])
    target = np.array([1.0, 1.0])
    stats = lab.estimator_stats(g, target, num_sigmas=2.0)
    mean = g.mean(0)
    variance = sum(np.sum((g[:, j] - mean[j]) ** 2) / 3 for j in range(2))
    cos = [x @ target / (np.linalg.norm(x) * np.linalg.norm(target)) for x in g]
    np.testing.assert_allclose(stats["bias"], np.linalg.norm(mean - target), rtol=1e-12)
    np.testing.assert_allclose(stats["variance"], variance, rtol=1e-12)
    np.testing.assert_allclose(stats["bias_ci"], 2.0 * np.sqrt(variance / 4), rtol=1e-12)
    np.testing.assert_allclose(stats["rmse"], np.sqrt(np.mean([np.sum((x - target) ** 2) for x in g])), rtol=1e-12)
    np.testing.assert_allclose(stats["cosine"], np.mean(cos), rtol=1e-12)
    assert stats["num_batches"] == 4


def test_monte_carlo_values_count_only_the_first_episode():
    """A bandit rolled out for 3 steps plays 3 one-step episodes; only the first is masked in, so
    V̂_0(start) is the mean of the first pulls' rewards and V̂_t = 0 for t ≥ 1 (no counted visit).
    Fails when the masked-out later episodes' returns enter the totals (the visits stay masked)."""
    env = envs.MultiArmedBandit(jnp.array([1.0, 2.0, 4.0]))
    params = lab.tabular_params(env, horizon=3)
    traj, mask = lab.sample_episodes(jax.random.PRNGKey(9), env, params, jnp.zeros((2, 3)), 8)
    assert np.asarray(mask).tolist() == [[1] * 8, [0] * 8, [0] * 8]
    got = np.asarray(lab.monte_carlo_values(traj, mask))
    want = np.zeros((3, 2))
    want[0, 0] = np.asarray(traj.reward)[0].mean()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
