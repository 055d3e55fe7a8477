"""Policy families as pure `(init, apply)` pairs, and the analytic scores of the linear ones.

A `Policy` maps parameters and an observation to the parameters of its action distribution:
`apply(params, obs [..., *obs_shape]) -> dist` with `dist` the logits [..., A] of a categorical
policy or `(mean [..., D], log_std [..., D] | [D])` of a Gaussian one; `policy.distribution`
holds the matching `log_prob`, `sample`, `mode`, `entropy` and `kl`.
"""

from __future__ import annotations

import math
import typing
from typing import Any, Callable, Literal, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rlpg import distributions
from rlpg._checks import (
    as_array, check_bool, check_choice, check_floating, check_hidden, check_in_interval, check_index, check_integer, check_min_rank,
    check_rank, check_shape, check_size,
)


class Policy(NamedTuple):
    """π_θ(·|s): `init(key) -> params`, `apply(params, obs) -> dist`, and its family."""

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], Any]
    distribution: distributions.Distribution


class ValueFunction(NamedTuple):
    """V_w(s): `init(key) -> params`, `apply(params, obs [..., *obs_shape]) -> [...]`."""

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], jax.Array]


# ----------------------------------------------------------------------------- linear softmax


def linear_softmax_logits(theta: jax.Array, phi_sa: jax.Array) -> jax.Array:
    """logits(s, a) = φ(s, a)ᵀ θ. theta [F], phi_sa [..., A, F] -> [..., A]."""
    theta, phi_sa = as_array("theta", theta), as_array("phi_sa", phi_sa)
    check_rank("theta", theta, 1, "[F]")
    check_min_rank("phi_sa", phi_sa, 2, "[..., A, F]")
    check_floating("phi_sa", phi_sa)
    check_shape("theta", theta, (jnp.shape(phi_sa)[-1],), "the feature size F of phi_sa")
    return phi_sa @ theta


def linear_softmax_score(theta: jax.Array, phi_sa: jax.Array, action: jax.Array) -> jax.Array:
    """∇_θ log π(a|s) = φ(s, a) − Σ_a' π(a'|s) φ(s, a') for π ∝ exp(φᵀθ).

    Args:
      theta: [F] parameters.
      phi_sa: [..., A, F] features of every action in each state.
      action: [...] integer actions.
    Returns:
      [..., F] scores.
    """
    phi_sa, action = as_array("phi_sa", phi_sa), as_array("action", action)
    probs = jax.nn.softmax(linear_softmax_logits(theta, phi_sa), axis=-1)
    check_integer("action", action)
    check_shape("action", action, jnp.shape(phi_sa)[:-2], "phi_sa.shape[:-2]")
    check_index("action", action, jnp.shape(phi_sa)[-2])
    phi_a = jnp.take_along_axis(phi_sa, action[..., None, None].astype(jnp.int32), axis=-2)[..., 0, :]
    return phi_a - jnp.einsum("...a,...af->...f", probs, phi_sa)


def observation_action_features(num_actions: int):
    """The features of a linear softmax over observations: o [..., F] -> φ [..., A, F·A].

    φ(o, a)[f·A + a'] = o_f · 1[a = a'], so φ(o, a)ᵀθ = Σ_f o_f W[f, a] with W = θ.reshape(F, A).
    """
    check_size("num_actions", num_actions)

    def features(obs: jax.Array) -> jax.Array:
        obs = as_array("obs", obs)
        check_min_rank("obs", obs, 1, "[..., F]")
        num_features = jnp.shape(obs)[-1]
        eye = jnp.eye(num_actions, dtype=jnp.result_type(obs, jnp.float32))
        phi = obs[..., None, :, None] * eye[:, None, :]  # [..., A, F, A]
        return jnp.reshape(phi, jnp.shape(obs)[:-1] + (num_actions, num_features * num_actions))

    return features


def linear_softmax(features: Callable[[jax.Array], jax.Array], num_features: int) -> Policy:
    """π(a|s) ∝ exp(φ(s, a)ᵀ θ) with `features(obs [...]) -> phi_sa [..., A, F]`, θ [F] = 0 at init."""
    check_size("num_features", num_features)

    def init(key):
        del key
        return jnp.zeros((num_features,), jnp.float32)

    return Policy(
        init=init,
        apply=lambda theta, obs: linear_softmax_logits(theta, features(obs)),
        distribution=distributions.categorical,
    )


# ----------------------------------------------------------------------------- linear gaussian


def linear_gaussian_mean(theta: jax.Array, phi_s: jax.Array) -> jax.Array:
    """μ(s) = φ(s)ᵀ θ. theta [F, D], phi_s [..., F] -> [..., D]."""
    theta, phi_s = as_array("theta", theta), as_array("phi_s", phi_s)
    check_rank("theta", theta, 2, "[F, D]")
    check_min_rank("phi_s", phi_s, 1, "[..., F]")
    check_floating("phi_s", phi_s)
    if jnp.shape(theta)[0] != jnp.shape(phi_s)[-1]:
        raise ValueError(
            f"`theta` [F, D] must have F = phi_s.shape[-1] = {jnp.shape(phi_s)[-1]}; "
            f"got {jnp.shape(theta)}."
        )
    return phi_s @ theta


def linear_gaussian_score(
    theta: jax.Array, phi_s: jax.Array, log_std: jax.Array, action: jax.Array
) -> jax.Array:
    """∇_θ log N(a; φ(s)ᵀθ, σ²) = φ(s) (a − μ)ᵀ / σ².

    Args:
      theta: [F, D]; phi_s: [..., F]; log_std: [D] or [..., D]; action: [..., D].
    Returns:
      [..., F, D] scores.
    """
    phi_s, log_std, action = as_array("phi_s", phi_s), as_array("log_std", log_std), as_array("action", action)
    mean = linear_gaussian_mean(theta, phi_s)
    check_shape("action", action, jnp.shape(mean), "the shape of the mean φ(s)ᵀθ")
    scaled = (action - mean) * jnp.exp(-2.0 * log_std)
    return phi_s[..., :, None] * scaled[..., None, :]


def linear_gaussian(
    features: Callable[[jax.Array], jax.Array],
    num_features: int,
    action_dim: int,
    learn_log_std: bool = True,
    init_log_std: float = 0.0,
) -> Policy:
    """a ~ N(φ(s)ᵀθ, σ²) with `features(obs) -> phi_s [..., F]`.

    Parameters are `{"theta": [F, D], "log_std": [D]}`; with `learn_log_std=False` the log-std
    stays at `init_log_std` and is not a parameter.
    """
    check_size("num_features", num_features)
    check_size("action_dim", action_dim)
    check_bool("learn_log_std", learn_log_std)
    check_in_interval("init_log_std", init_log_std, -math.inf, math.inf)
    fixed_log_std = jnp.full((action_dim,), init_log_std, jnp.float32)

    def init(key):
        del key
        params = {"theta": jnp.zeros((num_features, action_dim), jnp.float32)}
        if learn_log_std:
            params["log_std"] = fixed_log_std
        return params

    def apply(params, obs):
        log_std = params["log_std"] if learn_log_std else fixed_log_std
        return linear_gaussian_mean(params["theta"], features(obs)), log_std

    return Policy(init=init, apply=apply, distribution=distributions.gaussian)


# ----------------------------------------------------------------------------- MLPs

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu}
Activation = Literal["tanh", "relu", "gelu"]  # the keys of _ACTIVATIONS


class MLP(nn.Module):
    """Dense layers with orthogonal init; the last layer's scale sets its initial spread."""

    hidden: Sequence[int]
    out: int
    activation: str = "tanh"
    out_scale: float = 0.01

    @nn.compact
    def __call__(self, x):
        act = _ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)))(x))
        return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(self.out_scale))(x)


def _check_activation(activation: str) -> None:
    check_choice("activation", activation, typing.get_args(Activation))


def _check_mlp(obs_shape, hidden, activation: str, **sizes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(obs_shape, hidden) as tuples, after checking them, the activation and the output `sizes` (each >= 1)."""
    _check_activation(activation)
    for name, size in sizes.items():
        check_size(name, size)
    try:
        obs_shape = tuple(obs_shape)
    except TypeError:
        raise ValueError(f"`obs_shape` must be a tuple of positive ints; got {obs_shape!r}.") from None
    for n in obs_shape:
        check_size("obs_shape", n)
    return obs_shape, check_hidden(hidden, allow_empty=True)


def _flatten_obs(obs: jax.Array, obs_shape: tuple) -> jax.Array:
    """[..., *obs_shape] -> [..., prod(obs_shape)] float32."""
    n = len(obs_shape)
    if tuple(jnp.shape(obs)[jnp.ndim(obs) - n :]) != tuple(obs_shape):
        raise ValueError(f"`obs` must end in the observation shape {obs_shape}; got {jnp.shape(obs)}.")
    lead = jnp.shape(obs)[: jnp.ndim(obs) - n]
    return jnp.reshape(obs, lead + (math.prod(obs_shape),)).astype(jnp.float32)


def mlp_categorical(
    obs_shape: Sequence[int], num_actions: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh"
) -> Policy:
    """π(·|s) = softmax(MLP(s)): logits [..., A] for obs [..., *obs_shape]."""
    obs_shape, hidden = _check_mlp(obs_shape, hidden, activation, num_actions=num_actions)
    net = MLP(hidden, num_actions, activation, out_scale=0.01)
    return Policy(
        init=lambda key: net.init(key, jnp.zeros((1, math.prod(obs_shape)))),
        apply=lambda params, obs: net.apply(params, _flatten_obs(obs, obs_shape)),
        distribution=distributions.categorical,
    )


class _GaussianHead(nn.Module):
    hidden: Sequence[int]
    action_dim: int
    activation: str
    state_dependent_std: bool
    init_log_std: float

    @nn.compact
    def __call__(self, x):
        if self.state_dependent_std:
            out = MLP(self.hidden, 2 * self.action_dim, self.activation)(x)
            mean, log_std = jnp.split(out, 2, axis=-1)
            return mean, log_std + self.init_log_std
        mean = MLP(self.hidden, self.action_dim, self.activation)(x)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))
        return mean, log_std


def mlp_gaussian(
    obs_shape: Sequence[int],
    action_dim: int,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    state_dependent_std: bool = False,
    init_log_std: float = 0.0,
) -> Policy:
    """a ~ N(μ(s), σ²): mean [..., D] from an MLP; log σ a learned [D] vector
    (state-independent) or a second head of the MLP [..., D] (`state_dependent_std=True`)."""
    obs_shape, hidden = _check_mlp(obs_shape, hidden, activation, action_dim=action_dim)
    check_bool("state_dependent_std", state_dependent_std)
    check_in_interval("init_log_std", init_log_std, -math.inf, math.inf)
    net = _GaussianHead(hidden, action_dim, activation, state_dependent_std, init_log_std)
    return Policy(
        init=lambda key: net.init(key, jnp.zeros((1, math.prod(obs_shape)))),
        apply=lambda params, obs: net.apply(params, _flatten_obs(obs, obs_shape)),
        distribution=distributions.gaussian,
    )


def mlp_value(obs_shape: Sequence[int], hidden: Sequence[int] = (64, 64), activation: str = "tanh") -> ValueFunction:
    """V(s) = MLP(s): obs [..., *obs_shape] -> [...]."""
    obs_shape, hidden = _check_mlp(obs_shape, hidden, activation)
    net = MLP(hidden, 1, activation, out_scale=1.0)
    return ValueFunction(
        init=lambda key: net.init(key, jnp.zeros((1, math.prod(obs_shape)))),
        apply=lambda params, obs: net.apply(params, _flatten_obs(obs, obs_shape))[..., 0],
    )


# ----------------------------------------------------------------------------- for an environment

PolicyKind = Literal["mlp", "linear"]
ContinuousActions = Literal["clip", "tanh"]
POLICY_KINDS = typing.get_args(PolicyKind)
CONTINUOUS_ACTIONS = typing.get_args(ContinuousActions)


def make_policy(
    env, env_params, hidden=(64, 64), activation: str = "tanh", kind: str = "mlp", continuous_actions: str = "clip"
) -> Policy:
    """The policy that fits the env's action space: categorical for Discrete, Gaussian for Box.

    kind="mlp": an MLP over the (flattened) observation. kind="linear": linear in the
    observation o [F] — softmax over φ(o, a) = o ⊗ onehot(a) (`observation_action_features`,
    θ [F·A]) or a Gaussian with mean oᵀθ (θ [F, D]) and a learned log-std; zero at init.

    continuous_actions (Box spaces): "clip" — a Gaussian whose samples the rollout clips into the
    box for the env, while log-probs and the stored action stay those of the unclipped sample
    (the estimator is unbiased for the clipped env; actions beyond a bound all act as the bound).
    "tanh" — the Gaussian squashed into the box, a = loc + scale · tanh(u)
    (`distributions.tanh_gaussian`, log-probs with the change-of-variables correction, greedy
    action loc + scale · tanh(μ)); needs finite bounds, e.g. brax's [−1, 1].
    """
    from gymnax.environments import spaces  # here, so that importing rlpg.policies does not import gymnax

    if kind not in POLICY_KINDS:
        raise ValueError(f"`kind` must be one of {POLICY_KINDS}; got {kind!r}.")
    if continuous_actions not in CONTINUOUS_ACTIONS:
        raise ValueError(f"`continuous_actions` must be one of {CONTINUOUS_ACTIONS}; got {continuous_actions!r}.")
    obs_shape = env.observation_space(env_params).shape
    space = env.action_space(env_params)
    if not isinstance(space, (spaces.Discrete, spaces.Box)):
        raise ValueError(f"unsupported action space {type(space).__name__} of {env.name}.")
    discrete = isinstance(space, spaces.Discrete)
    action_size = space.n if discrete else math.prod(space.shape)
    if kind == "mlp":
        make = mlp_categorical if discrete else mlp_gaussian
        policy = make(obs_shape, action_size, hidden, activation)
    elif len(obs_shape) != 1:
        raise ValueError(f"`policy` 'linear': a linear policy needs flat observations [F]; {env.name} has shape {tuple(obs_shape)}.")
    elif discrete:
        policy = linear_softmax(observation_action_features(action_size), obs_shape[0] * action_size)
    else:
        policy = linear_gaussian(lambda obs: obs, obs_shape[0], action_size)
    if discrete or continuous_actions == "clip":
        return policy
    low, high = (jnp.broadcast_to(jnp.asarray(b, jnp.float32), space.shape).reshape(-1) for b in (space.low, space.high))
    if not bool(jnp.all(jnp.isfinite(low)) & jnp.all(jnp.isfinite(high))):
        raise ValueError(f"`continuous_actions='tanh'` needs a bounded action space; {env.name}'s is [{space.low}, {space.high}].")
    return policy._replace(distribution=distributions.tanh_gaussian(low, high))


def epsilon_greedy(q_network: Policy) -> Policy:
    """The ε-greedy policy of a Q-network, as a categorical policy over params {"q": θ, "epsilon": ε}:
    π(a|s) = ε / A + (1 − ε) [a = argmax_a' Q_θ(s, a')]; apply returns its log-probabilities [..., A]."""

    def apply(params, obs):
        q = q_network.apply(params["q"], obs)
        greedy = jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1], dtype=q.dtype)
        epsilon = params["epsilon"]
        check_in_interval("epsilon", epsilon, 0.0, 1.0)  # concrete only: traced inside training
        return jnp.log(epsilon / q.shape[-1] + (1.0 - epsilon) * greedy)

    return Policy(init=q_network.init, apply=apply, distribution=distributions.categorical)
