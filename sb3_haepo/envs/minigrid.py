"""
MiniGrid's long-horizon sparse tasks (the ``minigrid`` package, https://minigrid.farama.org) for HAEPO and PPO.

MiniGrid gives a 7 x 7 x 3 egocentric view (object index 0-10, colour index 0-5, door state 0-2 per cell) plus a
mission string, 7 discrete actions (turn left, turn right, forward, pick up, drop, toggle, done), and a single
reward on success, ``1 - 0.9 * step_count / max_steps`` (0 on time-out). The env truncates the episode itself at
``max_steps`` (no ``TimeLimit``). Two tasks with long limits, with figures over the layouts of ``reset(seed=0..99)``
(``scripts/env_baselines.py``; the shortest solution of each layout found by breadth-first search and replayed):

- ``MiniGrid-DoorKey-16x16-v0``: pick up the key, unlock the door in the wall, reach the goal square; ``max_steps =
  10 * 16 ** 2 = 2560``. Shortest solution 33.3 steps on average (15-50): optimum return 0.988. Uniformly random
  policy (7 actions): 0 successes in 100 episodes.
- ``MiniGrid-KeyCorridorS6R3-v0``: find the key in one of the side rooms off a corridor, unlock the locked room and
  pick up the ball in it (drop the key first: the agent carries one object); ``max_steps = 30 * 6 ** 2 = 1080``.
  Shortest solution 41.4 steps on average (24-80): optimum return 0.966. Uniformly random policy: 0 successes in 100
  episodes.

The RL Zoo's ``ppo.yml`` has no entry for these two, only for small MiniGrid tasks (``DoorKey-5x5``,
``KeyCorridorS3R1``, ...), all with ``FlatObsWrapper``, ``normalize: true``, 8 envs, ``MlpPolicy``, ``n_steps: 128``,
``batch_size: 64``, ``gae_lambda: 0.95``, ``gamma: 0.99``, ``n_epochs: 10``, ``ent_coef: 0.0``,
``learning_rate: 2.5e-4``, ``clip_range: 0.2`` (the README lists them with their budgets).

:func:`make_minigrid_env` builds such an env with the observation wrapper a policy needs
(:class:`MiniGridObsWrapper`, which applies minigrid's own): ``observation="flat"``
(``minigrid.wrappers.FlatObsWrapper``: the view and the one-hot mission in a uint8 vector of 7 * 7 * 3 + 96 * 28 =
2835 values, for ``"MlpPolicy"``) or ``"image"`` (``minigrid.wrappers.ImgObsWrapper``: the 7 x 7 x 3 view alone,
for a CNN). SB3's ``NatureCNN`` (kernel 8, stride 4) does not fit a 7 x 7 input: :class:`MiniGridCNN` is a small
extractor for it, and :func:`minigrid_cnn_policy_kwargs` gives the ``policy_kwargs`` that use it. The wrapped envs
are also registered (``import sb3_haepo.envs``) as ``sb3_haepo/MiniGrid-DoorKey-16x16-Flat-v0``, ``...-Image-v0``
and ``sb3_haepo/MiniGrid-KeyCorridorS6R3-Flat-v0``, ``...-Image-v0`` (``max_steps`` as a kwarg), for the benchmark
runner and ``haepo-zoo`` (``train --gym-packages sb3_haepo.envs``).

``minigrid`` is an optional dependency (``pip install "sb3_haepo[minigrid]"``): this module imports without it and
:func:`make_minigrid_env` raises an ``ImportError`` naming the extra when it is missing.
"""

from typing import Any, Literal

import gymnasium as gym
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_haepo.common.checks import check_int, check_optional_int

MiniGridObservation = Literal["flat", "image"]
MINIGRID_OBSERVATIONS: tuple[str, ...] = ("flat", "image")
# The long-horizon sparse MiniGrid tasks documented here: id -> the env's own max_steps
MINIGRID_LONG_HORIZON_TASKS: dict[str, int] = {
    "MiniGrid-DoorKey-16x16-v0": 10 * 16**2,
    "MiniGrid-KeyCorridorS6R3-v0": 30 * 6**2,
}
# Registered wrapped ids: sb3_haepo id -> (MiniGrid id, observation)
MINIGRID_WRAPPED_ENV_IDS: dict[str, tuple[str, str]] = {
    f"sb3_haepo/{env_id[: -len('-v0')]}-{observation.capitalize()}-v0": (env_id, observation)
    for env_id in MINIGRID_LONG_HORIZON_TASKS
    for observation in MINIGRID_OBSERVATIONS
}
MINIGRID_EXTRA_HINT = 'pip install "sb3_haepo[minigrid]" (or pip install "minigrid>=3.0")'


def _import_minigrid() -> None:
    """Import ``minigrid`` (which registers the ``MiniGrid-*`` ids with Gymnasium), or say how to install it."""
    try:
        import minigrid  # noqa: F401  (registers the MiniGrid ids)
    except ImportError as error:
        raise ImportError(f"The MiniGrid environments need the minigrid package: {MINIGRID_EXTRA_HINT}") from error


def make_minigrid_env(
    env_id: str,
    observation: MiniGridObservation = "flat",
    max_steps: int | None = None,
    **env_kwargs: Any,
) -> gym.Env:
    """
    Make a MiniGrid env with the observation wrapper a policy needs.

    ``make_vec_env(lambda: make_minigrid_env("MiniGrid-DoorKey-16x16-v0"), n_envs=8, seed=0)`` gives SB3 its
    vectorised env (or ``make_vec_env("sb3_haepo/MiniGrid-DoorKey-16x16-Flat-v0", ...)`` after ``import
    sb3_haepo.envs``).

    :param env_id: A MiniGrid id (``MiniGrid-DoorKey-16x16-v0``, ``MiniGrid-KeyCorridorS6R3-v0``, or any other id that
        the ``minigrid`` package registers)
    :param observation: ``"flat"`` (``FlatObsWrapper``: uint8 vector of 2835 values, for ``"MlpPolicy"``) or
        ``"image"`` (``ImgObsWrapper``: uint8 7 x 7 x 3 view, for ``"CnnPolicy"`` with :class:`MiniGridCNN`)
    :param max_steps: Episode limit (the env truncates at it; the success reward is ``1 - 0.9 * steps / max_steps``);
        None keeps the env's own (2560 for DoorKey-16x16, 1080 for KeyCorridorS6R3)
    :param env_kwargs: Passed to ``gym.make`` (e.g. ``render_mode="rgb_array"``)
    :return: The wrapped env
    """
    if observation not in MINIGRID_OBSERVATIONS:
        raise ValueError(f"Unknown observation {observation!r}, allowed: {MINIGRID_OBSERVATIONS}")
    max_steps = check_optional_int("max_steps", max_steps, 1, why_none="the env's own limit")
    _import_minigrid()
    spec = gym.registry.get(env_id)
    entry_point = spec.entry_point if spec is not None else None
    if not (isinstance(entry_point, str) and entry_point.startswith("minigrid.")):
        raise ValueError(
            f"{env_id!r} is not an environment of the minigrid package; allowed: its MiniGrid ids, e.g. "
            f"{tuple(MINIGRID_LONG_HORIZON_TASKS)}"
        )
    if max_steps is not None:
        env_kwargs["max_steps"] = max_steps
    return MiniGridObsWrapper(gym.make(env_id, **env_kwargs), observation=observation)


class MiniGridObsWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """
    MiniGrid's standard observation wrappers, recreatable from ``env.spec``: ``observation="flat"`` encodes each
    observation with ``minigrid.wrappers.FlatObsWrapper``, ``"image"`` with ``minigrid.wrappers.ImgObsWrapper``
    (the same spaces and values). minigrid's own wrappers do not record their arguments, so an env wrapped by them
    cannot be re-made from its spec (Gymnasium's ``check_env`` and ``gym.make(env.spec)`` fail); this one can.

    :param env: A MiniGrid env (dict observations with ``image`` and ``mission``)
    :param observation: ``"flat"`` or ``"image"``
    """

    def __init__(self, env: gym.Env, observation: MiniGridObservation = "flat"):
        if observation not in MINIGRID_OBSERVATIONS:
            raise ValueError(f"Unknown observation {observation!r}, allowed: {MINIGRID_OBSERVATIONS}")
        _import_minigrid()
        from minigrid.wrappers import FlatObsWrapper, ImgObsWrapper

        gym.utils.RecordConstructorArgs.__init__(self, observation=observation)
        gym.ObservationWrapper.__init__(self, env)
        self.encoder: gym.ObservationWrapper = FlatObsWrapper(env) if observation == "flat" else ImgObsWrapper(env)
        self.observation_space = self.encoder.observation_space

    def observation(self, observation: Any) -> Any:
        return self.encoder.observation(observation)


class MiniGridCNN(BaseFeaturesExtractor):
    """
    Small CNN for MiniGrid's 7 x 7 x 3 view (the network of the ``rl-starter-files`` and of MiniGrid's SB3 guide):
    three 2 x 2 convolutions (16, 32, 64 channels, stride 1, ReLU), 7 x 7 -> 4 x 4 x 64, then a linear layer to
    ``features_dim`` with ReLU. About 142k parameters with ``features_dim=128`` (SB3's NatureCNN needs at least
    36 x 36 inputs).

    SB3 transposes image observations to channels-first before the policy sees them (``VecTransposeImage``); the
    extractor also accepts a channels-last space and transposes it itself. MiniGrid's values are small integers
    (object, colour and state indices), not intensities: train with ``normalize_images=False`` (as
    :func:`minigrid_cnn_policy_kwargs` does) so that the network sees them unscaled, not divided by 255.

    :param observation_space: The image space (3 dimensions, each spatial side >= 4)
    :param features_dim: Number of output features (>= 1)
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 128):
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise ValueError(f"MiniGridCNN needs a 3-dimensional Box observation space, got {observation_space!r}")
        features_dim = check_int("features_dim", features_dim, 1)
        super().__init__(observation_space, features_dim)
        self.channels_first = is_image_space_channels_first(observation_space)
        if self.channels_first:
            n_channels, height, width = observation_space.shape
        else:
            height, width, n_channels = observation_space.shape
        if height < 4 or width < 4:
            raise ValueError(f"MiniGridCNN needs images of at least 4 x 4 cells, got {height} x {width}")
        self.cnn = nn.Sequential(
            nn.Conv2d(n_channels, 16, kernel_size=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        n_flatten = 64 * (height - 3) * (width - 3)
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        if not self.channels_first:
            observations = observations.permute(0, 3, 1, 2)
        return self.linear(self.cnn(observations.float()))


def minigrid_cnn_policy_kwargs(features_dim: int = 128) -> dict[str, Any]:
    """
    ``policy_kwargs`` for an image MiniGrid env: :class:`MiniGridCNN` with ``features_dim`` features and unscaled
    inputs, e.g. ``HAEPO("CnnPolicy", make_minigrid_env(env_id, "image"), policy_kwargs=minigrid_cnn_policy_kwargs())``.

    :param features_dim: Number of features of the CNN
    :return: A new dict (safe to modify)
    """
    return {
        "features_extractor_class": MiniGridCNN,
        "features_extractor_kwargs": {"features_dim": features_dim},
        "normalize_images": False,
    }
