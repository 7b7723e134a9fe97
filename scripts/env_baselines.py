"""
The optimum and random-policy figures of the long-horizon tasks in ``sb3_haepo.envs`` (module docstrings, README).

- Random walks ``RandomWalk1k/10k/100k-v0``: exact (``success_statistics``), for the optimal policy (always right),
  the uniformly random one and policies that move right with probability 0.6 and 0.75. About 3 CPU-seconds.
- DeepSea: the exact ``2 ** -N`` and ``2 ** -N - 0.005`` of the random policy, checked by simulation on N = 10.
- MiniGrid (needs the ``minigrid`` extra): the uniformly random policy (7 actions) on ``--episodes`` layouts
  (``reset(seed=i)``, i = 0, 1, ...; actions from ``numpy.random.default_rng(i)``), and the shortest solution of
  each layout, found by breadth-first search over (cell, direction, stage, doors opened, dropped key) and replayed
  in the env (a replay that does not succeed with the reward of its length is reported and left out).

    python scripts/env_baselines.py                      # everything, 100 MiniGrid episodes per task
    python scripts/env_baselines.py --episodes 20 --skip-minigrid
"""

import argparse
import sys
import time
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

import sb3_haepo.envs  # noqa: F401  (registers the envs)
from sb3_haepo.envs import (
    DEEP_SEA_ENV_IDS,
    LONG_RANDOM_WALKS,
    MINIGRID_LONG_HORIZON_TASKS,
    DeepSeaEnv,
    play_actions,
    success_statistics,
)

# MiniGrid's actions and direction vectors (minigrid.core.constants.DIR_TO_VEC)
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = 0, 1, 2, 3, 4, 5
DIR_TO_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))
# Stages of a solution: 0 key on the floor, 1 key carried, 2 locked door open (key carried), 3 key dropped
KEY_ON_FLOOR, KEY_CARRIED, LOCKED_DOOR_OPEN, KEY_DROPPED = 0, 1, 2, 3


def random_walk_table() -> list[str]:
    lines = [
        "| id | horizon | goal_distance | slip_prob | optimum: success | optimum: mean steps to the goal | "
        "random: success | random: mean length | P(right)=0.6: success | P(right)=0.75: success |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for env_id, kwargs in LONG_RANDOM_WALKS.items():
        horizon, goal_distance, slip_prob = int(kwargs["horizon"]), int(kwargs["goal_distance"]), kwargs["slip_prob"]
        optimum = success_statistics(horizon, goal_distance, slip_prob)
        rates = {q: success_statistics(horizon, goal_distance, slip_prob, right_prob=q) for q in (0.5, 0.6, 0.75)}
        lines.append(
            f"| `{env_id}` | {horizon:,} | {goal_distance:,} | {slip_prob} | {optimum.success_rate:.5f} | "
            f"{optimum.mean_steps_to_goal:,.1f} ({optimum.mean_steps_to_goal / horizon:.1%} of the horizon) | "
            f"{rates[0.5].success_rate:.2e} | {rates[0.5].mean_episode_length:,.1f} | {rates[0.6].success_rate:.4f} | "
            f"{rates[0.75].success_rate:.4f} |"
        )
    return lines


def deep_sea_table(n_episodes: int = 20_000) -> list[str]:
    lines = ["| id | N | optimum return | random: success 2^-N | random: expected return |", "|---|---|---|---|---|"]
    for env_id in DEEP_SEA_ENV_IDS:
        size = gym.make(env_id).unwrapped.size
        lines.append(f"| `{env_id}` | {size} | 0.99 | {2.0**-size:.2e} | {2.0**-size - 0.005:.4g} |")
    env = DeepSeaEnv(size=10)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(2, size=(n_episodes, 10))
    successes, total = play_actions(env, actions)
    lines.append(
        f"\nDeepSea10, {n_episodes:,} random episodes (numpy seed 0): {successes} successes ({successes / n_episodes:.2e}, "
        f"exact {2.0**-10:.2e}), mean return {total / n_episodes:.4f} (exact {2.0**-10 - 0.005:.4f})"
    )
    return lines


State = tuple[int, int, int, int, int, tuple[int, int]]  # x, y, direction, stage, doors opened (bits), dropped key


class LayoutSearch:
    """
    Breadth-first search for the shortest solution of a DoorKey or KeyCorridor layout (after ``reset``).

    States are (cell, direction, stage, unlocked doors opened, where the key was dropped). The search leaves out
    actions that never shorten a solution (closing doors, dropping the key in DoorKey, picking it up again).
    """

    def __init__(self, env: gym.Env):
        grid_env: Any = env.unwrapped
        grid = grid_env.grid
        self.objects: dict[tuple[int, int], Any] = {}
        for x in range(grid.width):
            for y in range(grid.height):
                if grid.get(x, y) is not None:
                    self.objects[(x, y)] = grid.get(x, y)
        objects = self.objects.items()
        self.key_pos = next(pos for pos, obj in objects if obj.type == "key")
        self.locked_pos = next(pos for pos, obj in objects if obj.type == "door" and obj.is_locked)
        self.ball_pos = next((pos for pos, obj in objects if obj.type == "ball"), None)
        doors = [pos for pos, obj in objects if obj.type == "door" and not obj.is_locked and not obj.is_open]
        self.door_bit = {pos: 1 << index for index, pos in enumerate(doors)}
        self.start: State = (int(grid_env.agent_pos[0]), int(grid_env.agent_pos[1]), grid_env.agent_dir, 0, 0, (-1, -1))

    def passable(self, pos: tuple[int, int], stage: int, opened: int, dropped: tuple[int, int]) -> bool:
        obj = self.objects.get(pos)
        if pos == dropped:
            return False
        if pos == self.key_pos:
            return stage >= KEY_CARRIED
        if pos == self.locked_pos:
            return stage >= LOCKED_DOOR_OPEN
        if obj is None or obj.type == "goal":
            return True
        return obj.type == "door" and bool(obj.is_open or opened & self.door_bit[pos])

    def successors(self, state: State) -> tuple[list[tuple[State, int]], bool]:
        """The states one action away (with the action), and whether one more action solves the task."""
        x, y, direction, stage, opened, dropped = state
        front = (x + DIR_TO_VEC[direction][0], y + DIR_TO_VEC[direction][1])
        front_obj = self.objects.get(front)
        moves: list[tuple[State, int]] = [
            ((x, y, (direction - 1) % 4, stage, opened, dropped), LEFT),
            ((x, y, (direction + 1) % 4, stage, opened, dropped), RIGHT),
        ]
        if self.passable(front, stage, opened, dropped):
            moves.append(((*front, direction, stage, opened, dropped), FORWARD))
        if front == self.key_pos and stage == KEY_ON_FLOOR:
            moves.append(((x, y, direction, KEY_CARRIED, opened, dropped), PICKUP))
        if front == self.locked_pos and stage == KEY_CARRIED:
            moves.append(((x, y, direction, LOCKED_DOOR_OPEN, opened, dropped), TOGGLE))
        if front in self.door_bit and not opened & self.door_bit[front]:
            moves.append(((x, y, direction, stage, opened | self.door_bit[front], dropped), TOGGLE))
        if self.ball_pos is None:
            # DoorKey: step onto the goal
            return moves, front_obj is not None and front_obj.type == "goal"
        # KeyCorridor: the agent carries one object, so the key goes down (on an empty cell) before the ball
        if stage == LOCKED_DOOR_OPEN and (front_obj is None or front == self.key_pos):
            moves.append(((x, y, direction, KEY_DROPPED, opened, front), DROP))
        return moves, front == self.ball_pos and stage == KEY_DROPPED

    def solve(self) -> list[int] | None:
        """The shortest action sequence that solves the layout (None if there is none)."""
        parents: dict[State, tuple[State, int] | None] = {self.start: None}
        queue = deque([self.start])
        while queue:
            state = queue.popleft()
            moves, solved_next = self.successors(state)
            if solved_next:
                actions = [FORWARD if self.ball_pos is None else PICKUP]
                parent = parents[state]
                while parent is not None:
                    state, action = parent
                    actions.append(action)
                    parent = parents[state]
                return actions[::-1]
            for successor, action in moves:
                if successor not in parents:
                    parents[successor] = (state, action)
                    queue.append(successor)
        return None


def minigrid_table(n_episodes: int) -> list[str]:
    from sb3_haepo.envs import make_minigrid_env

    lines = [
        "| task | max_steps | optimum: shortest solution, mean (min-max) | optimum: mean return | random: successes | "
        "random: mean return | random: mean length |",
        "|---|---|---|---|---|---|---|",
    ]
    for env_id, max_steps in MINIGRID_LONG_HORIZON_TASKS.items():
        env = make_minigrid_env(env_id, "image")
        start = time.time()
        lengths, returns, failed_replays = [], [], 0
        random_successes, random_returns, random_lengths = 0, [], []
        for seed in range(n_episodes):
            env.reset(seed=seed)
            plan = LayoutSearch(env).solve()
            reward, terminated = 0.0, False
            for action in plan or []:
                _, reward_, terminated, _, _ = env.step(action)
                reward = float(reward_)
            if plan is not None and terminated and abs(reward - (1 - 0.9 * len(plan) / max_steps)) < 1e-9:
                lengths.append(len(plan))
                returns.append(reward)
            else:
                failed_replays += 1
            # Uniformly random policy on the same layout
            env.reset(seed=seed)
            rng = np.random.default_rng(seed)
            total, steps, terminated, truncated = 0.0, 0, False, False
            while not (terminated or truncated):
                _, reward_, terminated, truncated, _ = env.step(int(rng.integers(7)))
                total += float(reward_)
                steps += 1
            random_successes += int(terminated)
            random_returns.append(total)
            random_lengths.append(steps)
        lines.append(
            f"| `{env_id}` | {max_steps:,} | {np.mean(lengths):.1f} ({min(lengths)}-{max(lengths)}) steps, "
            f"{len(lengths)} layouts | {np.mean(returns):.4f} | {random_successes}/{n_episodes} | "
            f"{np.mean(random_returns):.4f} | {np.mean(random_lengths):,.0f} |"
        )
        print(f"{env_id}: {time.time() - start:.0f} s, replays that failed: {failed_replays}", file=sys.stderr)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100, help="MiniGrid layouts (= random episodes) per task")
    parser.add_argument("--skip-minigrid", action="store_true", help="only the random walks and DeepSea")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    print("\n".join(random_walk_table()), end="\n\n")
    print("\n".join(deep_sea_table()), end="\n\n")
    if not args.skip_minigrid:
        print("\n".join(minigrid_table(args.episodes)))


if __name__ == "__main__":
    main()
