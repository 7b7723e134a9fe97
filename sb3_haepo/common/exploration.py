"""
Held logit noise: exploration for discrete actions that keeps its randomness for a whole episode.

Sampling a fresh action at every step explores badly where a task needs a consistent behaviour over many steps
(MountainCar-v0 needs the car pumped back and forth: docs/LEARNING.md entry 23). gSDE (``use_sde``) solves this for
Gaussian actions by drawing a noise matrix that is held for several steps. Held logit noise does the same for the
categorical, multi-categorical and Bernoulli distributions of ``Discrete``, ``MultiDiscrete`` and ``MultiBinary``
actions: at the start of every episode a matrix ``Z`` of shape ``(latent_dim, n_logits)`` is drawn with standard
normal entries, and for the whole episode the policy's logits are

``logits(s) = action_net(h(s)) + std * h(s) @ Z``

where ``h(s)`` is the actor's latent features (the output of ``mlp_extractor.forward_actor``). Each episode is thus
played by a policy randomly perturbed in a state-dependent way, held for the episode (like a random controller of
ARS), instead of a policy whose randomness is drawn anew at each step.

The update conditions on the drawn noise: the log-probability of step ``t`` of episode ``k`` is that of the perturbed
distribution with the episode's ``Z_k`` (stored once per episode, not per step). Because ``Z`` is drawn independently
of the parameters, the likelihood of an episode is ``p(Z_k) * prod_t pi(a_t | s_t, Z_k)``, and its gradient with
respect to the parameters is the gradient of ``sum_t log pi(a_t | s_t, Z_k)``, through ``h`` in both terms: the
estimator stays exact (docs/METHOD.md section 14). Evaluation and ``predict()`` use the unperturbed policy.
"""

import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs

from sb3_haepo.common.checks import check_real

# The action spaces whose distribution is parameterised by logits
LOGIT_NOISE_SPACES = (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def check_logit_noise_std(logit_noise_std: float, action_space: spaces.Space | None, use_sde: bool) -> None:
    """
    :param action_space: the action space (None: not known yet, e.g. a model being loaded: not checked)
    :raises ValueError: unless ``logit_noise_std`` is a finite number >= 0, and, when it is > 0, the actions are
        ``Discrete``, ``MultiDiscrete`` or ``MultiBinary`` (gSDE, ``use_sde``, is the held noise of ``Box`` actions)
    """
    check_real("logit_noise_std", logit_noise_std, 0.0, why="0 disables it")
    if logit_noise_std > 0 and action_space is not None and not isinstance(action_space, LOGIT_NOISE_SPACES):
        raise ValueError(
            f"logit_noise_std={logit_noise_std!r} perturbs the logits of Discrete, MultiDiscrete or MultiBinary actions, "
            f"but the action space is {action_space}: for Box actions use use_sde=True (gSDE) instead"
        )
    if logit_noise_std > 0 and use_sde:
        raise ValueError(f"logit_noise_std={logit_noise_std!r} and use_sde=True are two kinds of held noise: use one")


def logit_noise_shape(policy: ActorCriticPolicy) -> tuple[int, int]:
    """:return: the shape of one episode's noise matrix ``Z``: ``(latent_dim, n_logits)`` of the policy's actor"""
    assert isinstance(policy.action_net, th.nn.Linear), f"Expected a linear action head, got {policy.action_net}"
    return int(policy.mlp_extractor.latent_dim_pi), int(policy.action_net.out_features)


def sample_logit_noise(n: int, shape: tuple[int, int], device: th.device | str = "cpu") -> th.Tensor:
    """:return: ``n`` noise matrices with independent standard normal entries, shape ``(n, *shape)``"""
    return th.randn((n, *shape), device=device)


def perturbed_logits(
    logits: th.Tensor, latent: th.Tensor, episode_noise: th.Tensor, episode_index: th.Tensor, std: float
) -> th.Tensor:
    """
    The logits of each row under its episode's held noise. Each row's matrix is gathered, so a call holds
    ``batch * latent_dim * n_logits`` values (2 MB for 4096 steps of CartPole's 64 x 2; 151 MB for a CNN's 512
    latent features and 18 actions: lower ``batch_size`` to bound it). Forming ``h @ Z`` once per episode instead
    would hold ``batch * min(U, latent_dim) * n_logits`` for ``U`` episodes, but it rounds differently, and the
    published runs were made with this form (docs/LEARNING.md, "Next" item 0).

    :param logits: the unperturbed logits ``action_net(h)``, shape (batch, n_logits)
    :param latent: the actor's latent features ``h``, shape (batch, latent_dim)
    :param episode_noise: the noise matrices ``Z`` of the episodes, shape (n_episodes, latent_dim, n_logits)
    :param episode_index: the episode of each row, in ``[0, n_episodes)``, shape (batch,)
    :param std: the scale of the perturbation
    :return: ``logits + std * h @ Z[episode_index]`` row by row, shape (batch, n_logits)
    """
    return logits + std * th.einsum("bl,bla->ba", latent, episode_noise[episode_index])


def logit_noise_distribution(
    policy: ActorCriticPolicy, obs: PyTorchObs, episode_noise: th.Tensor, episode_index: th.Tensor, std: float
) -> Distribution:
    """
    The policy's action distribution with held logit noise: as ``policy.get_distribution(obs)``, with the logits
    perturbed by :func:`perturbed_logits`. Gradients flow through the latent features in both terms.

    :param episode_noise: the noise matrices of the episodes, shape (n_episodes, latent_dim, n_logits)
    :param episode_index: the episode of each observation, shape (batch,)
    """
    # As ActorCriticPolicy.get_distribution: the actor's features extractor, through BasePolicy's method
    features = BasePolicy.extract_features(policy, obs, policy.pi_features_extractor)
    latent = policy.mlp_extractor.forward_actor(features)
    logits = perturbed_logits(policy.action_net(latent), latent, episode_noise, episode_index, std)
    return policy.action_dist.proba_distribution(action_logits=logits)  # type: ignore[call-arg]
