"""Covariance-aware vs inverse-variance weights for rlpg.pathwise.mixed_gradient.

For each (world, H): E estimates, each from one `per_episode_gradients` call on N = 16 episodes
(the lab's worlds/params/gamma). Per estimate we form
  pw   : pathwise mean, sf : score mean,
  mixed: rlpg.pathwise.mixed_gradient (current rule, cross-fitted),
  cov  : cross-fitted mixture with w* = (Vs - C)/(Vp + Vs - 2C) from the other half (unclipped),
  covc : same, w* clipped to [0, 1],
  oracle_cov : fixed per-parameter w* from estimate-level Var/Cov of (pw, sf) (2-fold over estimates),
  oracle_ind : fixed per-parameter w = Vs/(Vp+Vs) from estimate-level variances (ignores Cov).
Variance = tr Cov(estimates) / ||g||^2 (g: exact LQR gradient; Pendulum: pooled pathwise mean).

The measurement behind README's sentence on the mixture's weights (a one-off analysis, kept with
its output, mixture_weights.txt: 4000 estimates per case, about 2 minutes on 2 cores):

    PYTHONPATH=. python experiments/results/pathwise_lab/mixture_weights.py 4000
"""
import json
import sys
import time
from pathlib import Path

import jax, jax.numpy as jnp, numpy as np
from experiments import pathwise_lab
from rlpg import pathwise, exact

N, GAMMA = 16, 0.99
E = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
CASES = [a.split(":") for a in (sys.argv[2].split(",") if len(sys.argv) > 2 else
         ["lqr:stabilizing:16", "lqr:stabilizing:64", "lqr:unstable:16", "lqr:unstable:64", "pendulum:damping:64", "pendulum:zero:64"])]
B = 1000  # bootstrap resamples
rng = np.random.default_rng(0)

def gen(family, name, H, key):
    env, env_params, policy, pp = pathwise_lab.worlds(H, GAMMA)[family]
    params = pp[name]
    @jax.jit
    def f(params, keys):  # keys [e, N, 2]
        out = jax.vmap(lambda k: pathwise.per_episode_gradients(k, policy, params, env, env_params, H, GAMMA))(keys)
        fl = lambda t: jnp.concatenate([x.reshape(x.shape[0], x.shape[1], -1) for x in jax.tree.leaves(t)], axis=2)
        p, s = fl(out["pathwise"]), fl(out["score"])
        mixed = jax.vmap(pathwise.mixed_gradient)(p, s)
        return p, s, mixed
    keys = jax.random.split(key, E * N).reshape(E, N, -1)
    chunks = [f(params, keys[i:i + 500]) for i in range(0, E, 500)]
    P, S, M = (np.concatenate([np.asarray(c[j], np.float64) for c in chunks]) for j in range(3))
    truth = None
    if family == "lqr":
        gk, gs = exact.lqr_policy_gradient(env, env_params, params["theta"].T, params["log_std"])
        truth = np.asarray(pathwise_lab.flat({"log_std": gs[None], "theta": gk.T[None]})[0], np.float64)
    return P, S, M, truth

def wcov(p, s, clip):  # p, s [E, n, D] -> w* [E, D] per half
    vp, vs = p.var(1), s.var(1)
    c = ((p - p.mean(1, keepdims=True)) * (s - s.mean(1, keepdims=True))).mean(1)
    den = vp + vs - 2 * c
    w = np.where(den > 0, (vs - c) / np.where(den > 0, den, 1.0), 0.5)
    return np.clip(w, 0, 1) if clip else w

def crossfit(P, S, wfn):
    h = N // 2
    A, Bh = (P[:, :h], S[:, :h]), (P[:, h:], S[:, h:])
    wA, wB = wfn(*A), wfn(*Bh)
    comb = lambda w, p, s: w * p.mean(1) + (1 - w) * s.mean(1)
    return 0.5 * (comb(wB, *A) + comb(wA, *Bh))

def oracle(pw, sf, cov):
    # fixed per-parameter weight from estimate-level moments, 2-fold across estimates
    out = np.empty_like(pw); idx = np.arange(len(pw)) % 2
    ws = []
    for k in (0, 1):
        a, b = pw[idx != k], sf[idx != k]
        vp, vs = a.var(0), b.var(0); c = ((a - a.mean(0)) * (b - b.mean(0))).mean(0) if cov else 0
        w = (vs - c) / (vp + vs - 2 * c); ws.append(w)
        out[idx == k] = w * pw[idx == k] + (1 - w) * sf[idx == k]
    return out, np.mean(ws, 0)

results = {}
t0 = time.time()
for ci, (family, name, H) in enumerate(CASES):
    H = int(H)
    P, S, M, truth = gen(family, name, H, jax.random.PRNGKey(1000 + ci))
    pw, sf = P.mean(1), S.mean(1)
    # sanity: numpy inverse-variance cross-fit reproduces mixed_gradient
    def wind(p, s):
        vp, vs = p.var(1), s.var(1); t = vp + vs
        return np.where(t > 0, vs / np.where(t > 0, t, 1), 0.5)
    assert np.allclose(crossfit(P, S, wind), M, rtol=1e-4, atol=1e-5 * np.abs(M).max())
    ests = {"pw": pw, "sf": sf, "mixed": M,
            "cov": crossfit(P, S, lambda p, s: wcov(p, s, False)),
            "covc": crossfit(P, S, lambda p, s: wcov(p, s, True))}
    ests["oracle_cov"], w_or = oracle(pw, sf, True)
    ests["oracle_ind"], w_oi = oracle(pw, sf, False)
    ref = truth if truth is not None else pw.mean(0)
    norm2 = float(ref @ ref)
    # per-parameter estimate-level correlation between pw and sf means
    corr = [float(np.corrcoef(pw[:, d], sf[:, d])[0, 1]) for d in range(pw.shape[1])]
    bidx = rng.integers(0, E, (B, E))
    rows = {}
    var = {k: v.var(0).sum() / norm2 for k, v in ests.items()}
    bvar = {k: np.array([v[i].var(0).sum() / norm2 for i in bidx]) for k, v in ests.items()}
    for k, v in ests.items():
        mean = v.mean(0); se = v.std(0) / np.sqrt(E)
        z_truth = float(np.max(np.abs(mean - ref) / se)) if truth is not None else None
        d = v - pw  # paired difference from pathwise mean
        z_pw = float(np.max(np.abs(d.mean(0)) / np.maximum(d.std(0) / np.sqrt(E), 1e-300))) if k != "pw" else 0.0
        ratio = bvar[k] / bvar["mixed"]
        rows[k] = {"relvar": float(var[k]), "relvar_se": float(bvar[k].std()),
                   "ratio_to_mixed": float(var[k] / var["mixed"]),
                   "ratio_ci95": [float(np.percentile(ratio, 2.5)), float(np.percentile(ratio, 97.5))],
                   "max_z_vs_truth": z_truth, "max_z_vs_pw": z_pw}
    # diagnostics: mean weights used
    h = N // 2
    diag = {"corr_pw_sf_per_param": corr, "w_oracle_cov": w_or.tolist(), "w_oracle_ind": w_oi.tolist(),
            "w_ivw_mean": wind(P[:, :h], S[:, :h]).mean(0).tolist(),
            "w_cov_median": np.median(wcov(P[:, :h], S[:, :h], False), 0).tolist(),
            "w_cov_frac_outside01": float(np.mean((lambda w: (w < 0) | (w > 1))(wcov(P[:, :h], S[:, :h], False)))),
            "norm_ref": float(np.sqrt(norm2)), "ref": "exact" if truth is not None else "pooled pathwise mean (absolute var = relvar*norm^2)"}
    key = f"{family}/{name}/H={H}"
    results[key] = {"rows": rows, "diag": diag}
    print(f"\n== {key}  E={E} N={N}  ||g||={np.sqrt(norm2):.4g} ({diag['ref'][:6]})  [{time.time()-t0:.0f}s]")
    print(f"   corr(pw,sf) per param {np.round(corr,3)}  w_oracle_cov {np.round(w_or,3)}  w_oracle_ind {np.round(w_oi,3)}  "
          f"w_ivw(mean) {np.round(diag['w_ivw_mean'],3)}  w*_half(median) {np.round(diag['w_cov_median'],3)}  frac w* outside[0,1] {diag['w_cov_frac_outside01']:.2f}")
    print(f"   {'est':11s} {'relvar':>10s} {'±se':>9s} {'/mixed':>7s} {'95% CI':>15s} {'z_truth':>8s} {'z_vs_pw':>8s}")
    for k, r in rows.items():
        zt = f"{r['max_z_vs_truth']:.2f}" if r['max_z_vs_truth'] is not None else "-"
        print(f"   {k:11s} {r['relvar']:10.4g} {r['relvar_se']:9.2g} {r['ratio_to_mixed']:7.3f} "
              f"[{r['ratio_ci95'][0]:.3f},{r['ratio_ci95'][1]:.3f}] {zt:>8s} {r['max_z_vs_pw']:8.2f}", flush=True)
json.dump({"E": E, "N": N, "gamma": GAMMA, "results": results}, open(Path(__file__).with_name(f"mixture_weights_E{E}.json"), "w"), indent=1)
print(f"total {time.time()-t0:.0f}s")
