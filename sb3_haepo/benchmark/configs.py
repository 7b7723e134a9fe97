"""Algorithms, default hyperparameters, thresholds and logged info keys of the benchmark."""

from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import LinearSchedule

from sb3_haepo.dpo import DPO
from sb3_haepo.grpo import GRPO
from sb3_haepo.haepo import EPISODE_CREDIT_PRESET, HAEPO

ALGOS: dict[str, type[BaseAlgorithm]] = {"haepo": HAEPO, "ppo": PPO, "grpo": GRPO, "dpo": DPO}

BANDITS = ("sb3_haepo/Bandit10-v0", "sb3_haepo/Bandit20-v0", "sb3_haepo/Bandit30-v0")
RANDOM_WALK = "sb3_haepo/RandomWalk-v0"
# The long-horizon sparse tasks (sb3_haepo/envs): evaluation return = success rate on the random walks, 0.99 x success
# rate on DeepSea (its treasure is worth 1 minus 0.01 for the moves that reach it)
LONG_RANDOM_WALKS = ("sb3_haepo/RandomWalk1k-v0", "sb3_haepo/RandomWalk10k-v0", "sb3_haepo/RandomWalk100k-v0")
DEEP_SEAS = ("sb3_haepo/DeepSea10-v0", "sb3_haepo/DeepSea30-v0", "sb3_haepo/DeepSea100-v0")

# rl-zoo3's tuned PPO settings for CartPole-v1 (its hyperparams/ppo.yml, with n_envs: 8):
# lin_0.001 and lin_0.2 are linear decays to 0 over the training budget
PPO_ZOO_CARTPOLE: dict[str, Any] = dict(
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate=LinearSchedule(0.001, 0.0, 1.0),
    clip_range=LinearSchedule(0.2, 0.0, 1.0),
)

# Default training budget per env, in env steps
N_TIMESTEPS: dict[str, int] = {
    **{env_id: 20_000 for env_id in BANDITS},
    RANDOM_WALK: 100_000,
    "CartPole-v1": 100_000,
}
DEFAULT_N_TIMESTEPS = 100_000

# Threshold on the mean evaluation return for "steps to threshold" (None: not reported)
THRESHOLDS: dict[str, float | None] = {
    "CartPole-v1": 475.0,
    RANDOM_WALK: 0.9,  # evaluation return = success rate
    **{env_id: 0.9 for env_id in LONG_RANDOM_WALKS + DEEP_SEAS},
    "Acrobot-v1": -100.0,
    "MountainCar-v0": -110.0,
    "LunarLander-v3": 200.0,
    "Pendulum-v1": -200.0,
    "MountainCarContinuous-v0": 90.0,
}

# Keys of the final info dict written to the monitor csv of each training episode
INFO_KEYWORDS: dict[str, tuple[str, ...]] = {
    **{env_id: ("regret", "is_success") for env_id in BANDITS},
    **{env_id: ("is_success",) for env_id in (RANDOM_WALK, *LONG_RANDOM_WALKS, *DEEP_SEAS)},
}


def get_hyperparams(algo: str, env_id: str) -> dict[str, Any]:
    """
    Hyperparameters of one algorithm on one env: ``n_envs`` plus the algorithm's constructor kwargs.

    PPO on CartPole-v1 uses the RL Zoo's tuned settings (``hyperparams/ppo.yml``); everything else uses the
    algorithm's defaults, except on the paper's own tasks: there HAEPO runs the paper's episode-level update
    (:data:`~sb3_haepo.haepo.EPISODE_CREDIT_PRESET`, the settings these benchmarks were published with), with the
    paper's sum-normalisation on the bandits, where the critic-free methods share HAEPO's learning rate. Nothing here
    was tuned on these benchmarks.

    :param algo: a key of :data:`ALGOS`
    :param env_id: Gymnasium id
    :return: a new dict
    """
    if algo not in ALGOS:
        raise ValueError(f"Unknown algo {algo!r}, allowed: {sorted(ALGOS)}")
    hyperparams: dict[str, Any] = {"n_envs": 1}
    if algo == "ppo" and env_id == "CartPole-v1":
        hyperparams.update(n_envs=8, **PPO_ZOO_CARTPOLE)
    elif algo == "ppo" and env_id in BANDITS:
        # One-step episodes: smaller rollouts so that PPO updates as often as the group methods
        hyperparams.update(n_steps=64, batch_size=64)
    elif env_id in BANDITS:
        hyperparams.update(learning_rate=3e-3)
        if algo == "haepo":
            hyperparams.update(EPISODE_CREDIT_PRESET, normalize_returns="sum")
    elif env_id == RANDOM_WALK and algo == "haepo":
        hyperparams.update(EPISODE_CREDIT_PRESET)
    return hyperparams


def env_folder_name(env_id: str) -> str:
    """:return: the env id as one folder name (``/`` of namespaced ids replaced by ``-``)"""
    return env_id.replace("/", "-")
