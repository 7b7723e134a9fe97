"""K-armed bandit with one-step episodes."""

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_haepo.common.checks import check_int, check_real

RewardDistribution = Literal["bernoulli", "gaussian"]
REWARD_DISTRIBUTION_OPTIONS: tuple[str, ...] = ("bernoulli", "gaussian")


class BanditEnv(gym.Env[np.ndarray, np.int64]):
    """
    K-armed bandit, one pull per episode (docs/METHOD.md section 4).

    **Problem instance.** The arm means ``mu_1..mu_K`` are drawn once, in the constructor, uniformly from [0, 1] with
    a generator seeded by ``arm_seed``. They never change afterwards: every reset, every seed of a benchmark and every
    algorithm faces the same instance. The seed given to :meth:`reset` only drives the reward noise.

    **Dynamics and rewards.** The observation is the constant ``[0.0]`` (there is no state). Each episode is one step:
    the agent picks an arm ``a`` in ``{0..K-1}``, receives a reward drawn from that arm's distribution and the episode
    terminates. With ``reward_distribution="bernoulli"`` (default) the reward is 1 with probability ``mu_a`` else 0,
    so returns are non-negative (the setting of the paper's sum-normalisation). With ``"gaussian"`` it is
    ``mu_a + reward_std * N(0, 1)``.

    **Info.** ``regret = max_k mu_k - mu_a`` (the expected regret of the pull, >= 0, noise-free), ``optimal_arm``,
    ``arm_mean`` (``mu_a``) and ``is_success`` (whether the best arm was pulled).

    **Optimum.** Always pulling ``argmax_k mu_k``: expected return ``max_k mu_k`` per episode and zero regret.

    :param n_arms: Number of arms K (>= 2)
    :param arm_seed: Seed of the arm means (the problem instance)
    :param reward_distribution: ``"bernoulli"`` or ``"gaussian"``
    :param reward_std: Standard deviation of the Gaussian reward noise (unused for Bernoulli arms)
    :param render_mode: Accepted for Gymnasium's API; the env does not render
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        n_arms: int = 10,
        arm_seed: int = 0,
        reward_distribution: RewardDistribution = "bernoulli",
        reward_std: float = 1.0,
        render_mode: str | None = None,
    ):
        n_arms = check_int("n_arms", n_arms, 2)
        if reward_distribution not in REWARD_DISTRIBUTION_OPTIONS:
            raise ValueError(f"Unknown reward_distribution {reward_distribution!r}, allowed: {REWARD_DISTRIBUTION_OPTIONS}")
        reward_std = check_real("reward_std", reward_std, 0.0)
        self.n_arms = int(n_arms)
        self.arm_seed = arm_seed
        self.reward_distribution = reward_distribution
        self.reward_std = float(reward_std)
        self.arm_means = np.random.default_rng(arm_seed).uniform(0.0, 1.0, size=self.n_arms)
        self.optimal_arm = int(np.argmax(self.arm_means))
        self.best_mean = float(self.arm_means[self.optimal_arm])
        # No rendering: render_mode is accepted (Gymnasium's protocol, SB3's make_vec_env passes one) and unused
        self.render_mode = render_mode
        self.observation_space = spaces.Box(low=0.0, high=1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_arms)

    def _obs(self) -> np.ndarray:
        return np.zeros(1, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        arm = int(action)
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"action must be an arm in [0, {self.n_arms}), got {action!r}")
        mean = float(self.arm_means[arm])
        if self.reward_distribution == "bernoulli":
            reward = float(self.np_random.random() < mean)
        else:
            reward = mean + self.reward_std * float(self.np_random.standard_normal())
        info = {
            "regret": self.best_mean - mean,
            "arm_mean": mean,
            "optimal_arm": self.optimal_arm,
            "is_success": arm == self.optimal_arm,
        }
        return self._obs(), reward, True, False, info
