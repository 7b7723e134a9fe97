"""Sparse-reward random walk on a line, with a long horizon."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class RandomWalkEnv(gym.Env[np.ndarray, np.int64]):
    """
    Sparse-reward random walk with a fixed horizon (docs/METHOD.md section 4: 500 steps in the paper).

    **Dynamics.** The agent is at an integer position ``x`` in ``{0, ..., goal_distance}``, starting at 0. Action 1
    moves right (``x + 1``), action 0 moves left (``max(x - 1, 0)``: position 0 is a reflecting wall). With
    probability ``slip_prob`` the move goes the other way (default 0: deterministic moves). A uniformly random
    policy performs the unbiased reflected random walk that gives the env its name; it needs about
    ``goal_distance ** 2`` steps to reach the goal.

    **Observation.** ``[x / goal_distance, t / horizon]`` (float32 in [0, 1]), with ``t`` the number of steps taken,
    so the state is Markov despite the time limit.

    **Rewards and termination.** Reward 1 on the step that reaches ``x = goal_distance`` (the episode then
    terminates, ``is_success=True``), 0 on every other step. The episode is truncated when ``t`` reaches ``horizon``
    without reaching the goal (``is_success=False``). The env enforces the horizon itself: it is registered
    without a ``TimeLimit`` wrapper, so any ``horizon`` (10^4 and beyond) works.

    **Optimum.** Always moving right: the goal is reached in ``goal_distance`` steps, return 1, success rate 1
    (with ``slip_prob = 0``). The undiscounted return equals the success flag, so an evaluation's mean return is the
    success rate.

    :param horizon: Maximal number of steps of an episode (>= 1)
    :param goal_distance: Distance from the start to the goal (>= 1). Default 30: a uniformly random policy reaches
        it within 500 steps in about 35% of the episodes (measured over 2000 episodes).
    :param slip_prob: Probability that a move goes in the direction opposite to the action, in [0, 1)
    :param render_mode: Accepted for Gymnasium's API; the env does not render
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(self, horizon: int = 500, goal_distance: int = 30, slip_prob: float = 0.0, render_mode: str | None = None):
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        if not isinstance(goal_distance, (int, np.integer)) or goal_distance < 1:
            raise ValueError(f"goal_distance must be an integer >= 1, got {goal_distance!r}")
        if not 0.0 <= slip_prob < 1.0:
            raise ValueError(f"slip_prob must be in [0, 1), got {slip_prob!r}")
        self.horizon = int(horizon)
        self.goal_distance = int(goal_distance)
        self.slip_prob = float(slip_prob)
        # No rendering: render_mode is accepted (Gymnasium's protocol, SB3's make_vec_env passes one) and unused
        self.render_mode = render_mode
        self.observation_space = spaces.Box(low=0.0, high=1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.position = 0
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.position / self.goal_distance, self.t / self.horizon], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = 0
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if int(action) not in (0, 1):
            raise ValueError(f"action must be 0 (left) or 1 (right), got {action!r}")
        direction = 1 if int(action) == 1 else -1
        if self.slip_prob > 0 and self.np_random.random() < self.slip_prob:
            direction = -direction
        self.position = max(self.position + direction, 0)
        self.t += 1
        terminated = self.position >= self.goal_distance
        truncated = not terminated and self.t >= self.horizon
        reward = 1.0 if terminated else 0.0
        info: dict[str, Any] = {"position": self.position}
        if terminated or truncated:
            info["is_success"] = terminated
        return self._obs(), reward, terminated, truncated, info
