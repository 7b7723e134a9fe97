"""Sparse-reward random walk on a line, with a long horizon, and the exact law of its success."""

from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_haepo.common.checks import check_int, check_real


def check_random_walk_arguments(horizon: int, goal_distance: int, slip_prob: float) -> None:
    """
    Check the arguments of :class:`RandomWalkEnv` (and of :func:`success_statistics`).

    :raises ValueError: naming the bad value and what is allowed
    """
    check_int("horizon", horizon, 1)
    check_int("goal_distance", goal_distance, 1)
    check_real("slip_prob", slip_prob, 0.0, 1.0, high_open=True)


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

    **Optimum.** Always moving right: with ``slip_prob = 0`` the goal is reached in ``goal_distance`` steps, return 1,
    success rate 1. With slip ``p`` the always-right walk drifts ``1 - 2p`` per step and needs about
    ``goal_distance / (1 - 2p)`` steps, so it may run out of horizon. The undiscounted return equals the success flag,
    so an evaluation's mean return is the success rate. :func:`success_statistics` gives the exact success rate and
    mean episode length of any policy that moves right with a fixed probability (the optimum and the uniformly
    random policy included); the long variants ``RandomWalk1k/10k/100k-v0`` (:mod:`sb3_haepo.envs`) are tuned with
    it.

    :param horizon: Maximal number of steps of an episode (>= 1)
    :param goal_distance: Distance from the start to the goal (>= 1). Default 30: a uniformly random policy reaches
        it within 500 steps in about 35% of the episodes (measured over 2000 episodes).
    :param slip_prob: Probability that a move goes in the direction opposite to the action, in [0, 1)
    :param render_mode: Accepted for Gymnasium's API; the env does not render
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(self, horizon: int = 500, goal_distance: int = 30, slip_prob: float = 0.0, render_mode: str | None = None):
        check_random_walk_arguments(horizon, goal_distance, slip_prob)
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


class RandomWalkStatistics(NamedTuple):
    """Exact law of a policy's episodes on :class:`RandomWalkEnv` (see :func:`success_statistics`)."""

    success_rate: float
    """Probability of reaching the goal within the horizon (= the expected undiscounted return)"""
    mean_steps_to_goal: float
    """Expected number of steps of a successful episode (``nan`` when the success rate is 0)"""
    mean_episode_length: float
    """Expected number of steps of an episode (successful ones end at the goal, the others at the horizon)"""


def success_statistics(
    horizon: int, goal_distance: int, slip_prob: float = 0.0, right_prob: float = 1.0
) -> RandomWalkStatistics:
    """
    Exact success rate and episode lengths on :class:`RandomWalkEnv` of the policy that picks action 1 (right) with
    probability ``right_prob`` at every step, whatever the state: ``right_prob=1`` is the optimal policy, ``0.5`` the
    uniformly random one.

    The position is a Markov chain that moves right with probability ``r = right_prob (1 - p) + (1 - right_prob) p``
    (``p = slip_prob``) and left otherwise (staying at the wall 0); the function propagates its distribution over
    ``{0, ..., goal_distance - 1}`` for ``horizon`` steps and sums the mass that enters the goal at each step. Cost:
    ``horizon * goal_distance`` floating-point operations (about 2 s for ``horizon = 10**5``, ``goal_distance =
    1100``); no sampling error, only float64 rounding.

    :param horizon: Maximal number of steps of an episode (>= 1)
    :param goal_distance: Distance from the start to the goal (>= 1)
    :param slip_prob: Probability that a move goes in the direction opposite to the action, in [0, 1)
    :param right_prob: Probability that the policy picks action 1 (right), in [0, 1]
    :return: The success rate, the mean number of steps of a successful episode and the mean episode length
    """
    check_random_walk_arguments(horizon, goal_distance, slip_prob)
    check_real("right_prob", right_prob, 0.0, 1.0)
    step_right = right_prob * (1.0 - slip_prob) + (1.0 - right_prob) * slip_prob
    step_left = 1.0 - step_right
    # distribution[x]: probability of being at x < goal_distance without having reached the goal
    distribution = np.zeros(int(goal_distance))
    distribution[0] = 1.0
    hits = np.empty(int(horizon))
    for t in range(int(horizon)):
        hits[t] = step_right * distribution[-1]
        moved = np.zeros_like(distribution)
        moved[1:] = step_right * distribution[:-1]
        moved[:-1] += step_left * distribution[1:]
        moved[0] += step_left * distribution[0]
        distribution = moved
    success_rate = float(hits.sum())
    steps = np.arange(1, int(horizon) + 1)
    steps_of_successes = float((hits * steps).sum())
    mean_steps_to_goal = steps_of_successes / success_rate if success_rate > 0 else float("nan")
    mean_episode_length = steps_of_successes + (1.0 - success_rate) * int(horizon)
    return RandomWalkStatistics(success_rate, mean_steps_to_goal, mean_episode_length)
