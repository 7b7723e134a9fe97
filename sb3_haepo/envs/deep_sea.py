"""DeepSea: bsuite's deep-exploration chain on an N x N grid (Osband et al., https://arxiv.org/abs/1908.03568)."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_haepo.common.checks import check_bool, check_int, check_real


class DeepSeaEnv(gym.Env[np.ndarray, np.int64]):
    """
    bsuite's deterministic ``deep_sea`` as a Gymnasium env: an exploration chain where the only reward is at the end
    of a path that a randomly exploring agent follows with probability ``2 ** -size``.

    **Dynamics.** The agent starts in the top-left cell ``(row, column) = (0, 0)`` of an N x N grid (``N = size``).
    Each step descends one row and moves one column left or right (clipped to ``[0, N - 1]``: "left" in column 0
    stays there). The episode terminates after exactly N steps, when the agent leaves the bottom row.

    **Action mapping.** Which of the actions 0 and 1 means "right" is drawn per cell, independently, with probability
    1/2 (``mapping[row, column]`` is the action that moves right), so no fixed action sequence helps and the agent
    must learn the right action of every cell on its way. The mapping is drawn once, in the constructor, from
    ``mapping_seed`` (as bsuite draws it: ``numpy.random.RandomState(mapping_seed).binomial(1, 0.5, (N, N))``, so
    ``mapping_seed=42``, the default, is the mapping of bsuite's ``deep_sea`` sweep). It never depends on the seed given
    to :meth:`reset`: the envs of a ``make_vec_env`` (seeded ``seed + rank``) and an evaluation env built with the
    same kwargs are one MDP. A different ``mapping_seed`` is a different MDP. The dynamics are deterministic, so the
    reset seed changes nothing. ``randomize_actions=False`` makes action 1 "right" in every cell (bsuite's debug mode).

    **Rewards.** Moving right costs ``move_cost / N`` (default 0.01 / N); moving left is free. Taking "right" in the
    bottom-right cell ``(N - 1, N - 1)`` gives +1 (the treasure; ``is_success=True`` in the final step's ``info``,
    False otherwise). The agent reaches column N - 1 only on the bottom row, after N - 1 right moves, so the treasure
    takes N right moves in a row.

    **Observation.** The one-hot N x N grid of the agent's cell, flattened row by row: float32 of shape ``(N * N,)``
    with a 1 at index ``row * N + column``, all zeros after the last step (as bsuite). With it an MLP policy (SB3's
    ``MlpPolicy``) can set each cell's action with one input weight; ``(row, column)`` coordinates would force it to
    memorise a random bit per cell from two numbers.

    **Optimum and random policy.** The optimal policy moves right N times: return ``1 - move_cost`` (0.99), success
    rate 1. Moving left always returns 0 (the local optimum a learner falls back to after paying the cost of right
    moves without finding the treasure). A uniformly random policy takes "right" at each step with probability 1/2
    whatever the mapping, so it succeeds with probability ``2 ** -N`` (N = 10: 9.8e-4; 30: 9.3e-10; 100: 7.9e-31)
    and its expected return is ``2 ** -N - move_cost / 2``.

    :param size: Grid size N = episode length (>= 1)
    :param mapping_seed: Seed of the per-cell action mapping (the problem instance); an integer, never None, so that
        every instance built with the same kwargs is the same MDP
    :param randomize_actions: Draw the mapping (True, the DeepSea problem) or make action 1 "right" everywhere
    :param move_cost: Total cost of N right moves (bsuite's ``unscaled_move_cost``), >= 0
    :param render_mode: Accepted for Gymnasium's API; the env does not render
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        size: int = 10,
        mapping_seed: int = 42,
        randomize_actions: bool = True,
        move_cost: float = 0.01,
        render_mode: str | None = None,
    ):
        check_int("size", size, 1)
        check_int("mapping_seed", mapping_seed, 0, why="None would give every instance its own MDP")
        randomize_actions = check_bool("randomize_actions", randomize_actions)
        move_cost = check_real("move_cost", move_cost, 0.0)
        self.size = int(size)
        self.mapping_seed = int(mapping_seed)
        self.randomize_actions = randomize_actions
        self.move_cost = float(move_cost)
        # action_mapping[row, column]: the action that moves right in that cell
        self.action_mapping = np.ones((self.size, self.size), dtype=np.int64)
        if self.randomize_actions:
            rng = np.random.RandomState(self.mapping_seed)
            self.action_mapping = rng.binomial(1, 0.5, (self.size, self.size)).astype(np.int64)
        self.optimal_return = 1.0 - self.move_cost
        # No rendering: render_mode is accepted (Gymnasium's protocol, SB3's make_vec_env passes one) and unused
        self.render_mode = render_mode
        self.observation_space = spaces.Box(low=0.0, high=1.0, shape=(self.size * self.size,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.row = 0
        self.column = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.size * self.size, dtype=np.float32)
        if self.row < self.size:
            obs[self.row * self.size + self.column] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.row = 0
        self.column = 0
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if int(action) not in (0, 1):
            raise ValueError(f"action must be 0 or 1, got {action}")
        if self.row >= self.size:
            raise RuntimeError("The episode is over (the agent left the bottom row): call reset()")
        move_right = int(action) == self.action_mapping[self.row, self.column]
        reward = 0.0
        found_treasure = bool(move_right and self.column == self.size - 1)
        if found_treasure:
            reward += 1.0
        if move_right:
            reward -= self.move_cost / self.size
            self.column = min(self.column + 1, self.size - 1)
        else:
            self.column = max(self.column - 1, 0)
        self.row += 1
        terminated = self.row == self.size
        info: dict[str, Any] = {}
        if terminated:
            info["is_success"] = found_treasure
        return self._obs(), reward, terminated, False, info


def play_actions(env: DeepSeaEnv, actions: np.ndarray) -> tuple[int, float]:
    """
    Play fixed action sequences on ``env``, one episode per row of ``actions`` (shape ``(n_episodes, env.size)``).

    :return: the number of episodes that found the treasure, and the total return over all episodes
    """
    if actions.ndim != 2 or actions.shape[1] != env.size:
        raise ValueError(f"actions must have shape (n_episodes, {env.size}), got {actions.shape}")
    successes, total = 0, 0.0
    for episode in actions:
        env.reset()
        info: dict[str, Any] = {}
        for action in episode:
            _, reward, _, _, info = env.step(np.int64(action))
            total += float(reward)
        successes += int(info["is_success"])
    return successes, total
