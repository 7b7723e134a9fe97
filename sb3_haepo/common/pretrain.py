"""
Supervised pretraining of a token-generation policy on noisy demonstrations, and the checkpoint of its actor.

The pretrained policy plays the part of the supervised fine-tuned language model of RLHF: it is the starting point
of every fine-tuning method and their frozen reference. :func:`pretrain_policy` maximises the log-likelihood of the
demonstrated tokens (:meth:`~sb3_haepo.envs.sequence.TokenSequenceEnv.demonstration`, each token corrupted with
probability ``noise``) under ``model.policy``; :func:`save_actor` / :func:`load_actor` move the actor's weights (the
features extractor and the action head) between models of HAEPO, GRPO, DPO and PPO built with the same
``policy_kwargs`` features extractor; a value head (PPO's) is not in the checkpoint and starts fresh.
"""

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_haepo.common.checks import check_int, check_real
from sb3_haepo.envs.sequence import TokenSequenceEnv

# The parameters of an ActorCriticPolicy that compute the action distribution
ACTOR_PREFIXES: tuple[str, ...] = (
    "features_extractor.",
    "pi_features_extractor.",
    "mlp_extractor.policy_net.",
    "action_net.",
    "log_std",
)


def demonstration_dataset(
    env_id: str, n_demos: int, noise: float, seed: int = 0, env_kwargs: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """
    Replay ``n_demos`` demonstrations through the env: the prompt of demonstration ``i`` is ``reset(seed=seed + i)``,
    its corruption is drawn from a generator seeded by ``seed``.

    :return: the observations (steps, length) and the demonstrated tokens (steps,), as int64
    """
    check_int("n_demos", n_demos, 1)
    env = gym.make(env_id, **(env_kwargs or {}))
    task = env.unwrapped
    if not isinstance(task, TokenSequenceEnv):
        raise ValueError(f"{env_id!r} is not a token-generation env (a TokenSequenceEnv), got {type(task).__name__}")
    rng = np.random.default_rng(seed)
    observations, actions = [], []
    for i in range(int(n_demos)):
        obs, _ = env.reset(seed=seed + i)
        for token in task.demonstration(noise, rng):
            observations.append(obs)
            actions.append(token)
            obs, _, terminated, truncated, _ = env.step(token)
            if terminated or truncated:
                break
    env.close()
    return np.asarray(observations, dtype=np.int64), np.asarray(actions, dtype=np.int64)


def pretrain_policy(
    model: BaseAlgorithm,
    env_id: str,
    n_demos: int = 1000,
    noise: float = 0.3,
    epochs: int = 3,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
) -> list[float]:
    """
    Train ``model.policy`` by maximum likelihood on noisy demonstrations (:func:`demonstration_dataset`): Adam on the
    mean negative log-probability of the demonstrated tokens, ``epochs`` passes over the steps in shuffled
    minibatches. Only the actor gets gradients (the value head, if any, is untouched); the optimizer is a fresh Adam,
    so the model's own optimizer state is untouched too.

    With noisy demonstrations the maximum-likelihood policy puts about ``noise`` of its mass on wrong tokens at every
    step, so it beats the random policy clearly while staying far from the optimum: the room fine-tuning works in.

    :param model: an SB3 model with an ``ActorCriticPolicy`` over the env's spaces
    :param env_id: a registered token-generation env id
    :param n_demos: number of demonstrations (prompts ``reset(seed=seed + i)``)
    :param noise: probability of corrupting each demonstrated token, in [0, 1]
    :param epochs: number of passes over the demonstrations, ``>= 1``
    :param batch_size: steps per minibatch, ``>= 1``
    :param learning_rate: Adam's learning rate, ``> 0``
    :param seed: seed of the prompts, the corruption and the minibatch order
    :param env_kwargs: kwargs of ``gym.make``
    :return: the mean loss (negative log-likelihood per token) of each epoch
    """
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    check_real("learning_rate", learning_rate, 0.0, low_open=True)
    policy = model.policy
    assert isinstance(policy, ActorCriticPolicy), f"pretrain_policy needs an ActorCriticPolicy, got {policy}"
    observations, actions = demonstration_dataset(env_id, n_demos, noise, seed, env_kwargs)
    if observations.shape[1:] != policy.observation_space.shape:
        raise ValueError(
            f"The env {env_id!r} gives observations of shape {observations.shape[1:]}, the policy expects "
            f"{policy.observation_space.shape}: build the model on the same env and env_kwargs"
        )
    optimizer = th.optim.Adam(policy.parameters(), lr=learning_rate)
    generator = th.Generator().manual_seed(seed)
    obs_tensor = th.as_tensor(observations, device=policy.device).float()
    action_tensor = th.as_tensor(actions, device=policy.device)
    policy.set_training_mode(True)
    losses = []
    for _ in range(int(epochs)):
        epoch_losses = []
        for indices in th.randperm(len(actions), generator=generator).split(int(batch_size)):
            indices = indices.to(policy.device)
            distribution = policy.get_distribution(obs_tensor[indices])
            loss = -distribution.log_prob(action_tensor[indices]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_losses.append(float(loss.detach()))
        losses.append(float(np.mean(epoch_losses)))
    policy.set_training_mode(False)
    return losses


def actor_state_dict(policy: ActorCriticPolicy) -> dict[str, th.Tensor]:
    """:return: the actor's parameters and buffers of ``policy`` (on the CPU), keyed as in its ``state_dict``"""
    return {key: value.detach().cpu().clone() for key, value in policy.state_dict().items() if key.startswith(ACTOR_PREFIXES)}


def load_actor_state(policy: ActorCriticPolicy, state: dict[str, th.Tensor]) -> None:
    """
    Load an actor (:func:`actor_state_dict`) into ``policy``; its value head is left as it is.

    :raises ValueError: if an actor parameter of ``policy`` is missing from ``state`` or ``state`` holds a key that
        ``policy`` does not have (e.g. another ``net_arch`` for ``pi``); a shape mismatch raises PyTorch's error
    """
    missing, unexpected = policy.load_state_dict(state, strict=False)
    missing_actor = [key for key in missing if key.startswith(ACTOR_PREFIXES)]
    if missing_actor or unexpected:
        raise ValueError(
            f"The actor does not match the policy: missing {missing_actor}, unexpected {list(unexpected)}; build the "
            "policy with the same features extractor and net_arch['pi'] as the pretrained one"
        )


def save_actor(policy: ActorCriticPolicy, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """
    Save the actor of ``policy`` with ``metadata`` (e.g. the env, the pretraining settings) to ``path`` (torch format).

    :return: the path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    th.save({"actor": actor_state_dict(policy), "metadata": dict(metadata or {})}, path)
    return path


def actor_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """:return: the metadata saved with the actor by :func:`save_actor`, without loading the actor anywhere"""
    return th.load(Path(path), map_location="cpu", weights_only=True)["metadata"]


def load_actor(policy: ActorCriticPolicy, path: str | Path) -> dict[str, Any]:
    """
    Load the actor saved by :func:`save_actor` into ``policy`` (:func:`load_actor_state`).

    :return: the metadata saved with it
    """
    checkpoint = th.load(Path(path), map_location=policy.device, weights_only=True)
    load_actor_state(policy, checkpoint["actor"])
    return checkpoint["metadata"]
