"""
Lab probe (docs/LEARNING.md entry 22): what does a uniformly random policy's success on RandomWalk1k-v0 say about
the actions?

``sb3_haepo/RandomWalk1k-v0`` (horizon 1,000, goal 110, slip 0.4, a reflecting wall at 0) is simulated here in
numpy with the env's dynamics (a move goes the other way with probability 0.4), for episodes whose actions are
drawn uniformly. For the episodes that reach the goal the probe prints their number, their mean length, and the
excess of "right" over "left" actions among their steps: the information a method that credits a successful
episode's actions can extract from one success. It then shows where HAEPO's per-step credit puts that success's
weight: the advantages (:func:`~sb3_haepo.common.utils.reward_to_go_advantages`) of a group of 8 episodes, one
success of the mean length and 7 failures of 1,000 steps, for three discounts.

Usage: ``PYTHONPATH=. python docs/lab/walk_success_actions.py [--episodes 200000] [--seed 0]`` (about 5 s)
"""

import argparse

import numpy as np
import torch as th

from sb3_haepo.common.utils import reward_to_go_advantages

HORIZON, GOAL, SLIP = 1000, 110, 0.4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=200_000, help="a multiple of 20,000")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    excess, lengths = [], []
    batch = 20_000
    for _ in range(args.episodes // batch):
        actions = rng.integers(0, 2, size=(batch, HORIZON), dtype=np.int8) * 2 - 1  # +1 right, -1 left
        moves = actions * np.where(rng.random((batch, HORIZON)) < SLIP, -1, 1).astype(np.int8)
        position = np.zeros(batch, dtype=np.int32)
        ended_at = np.zeros(batch, dtype=np.int32)  # 0: not (yet) at the goal
        for t in range(HORIZON):
            alive = ended_at == 0
            position[alive] = np.maximum(position[alive] + moves[alive, t], 0)
            ended_at[alive & (position >= GOAL)] = t + 1
        for episode in np.flatnonzero(ended_at):
            length = int(ended_at[episode])
            excess.append(int(actions[episode, :length].sum()))
            lengths.append(length)
    excess_arr, lengths_arr = np.array(excess), np.array(lengths)
    print(
        f"successes: {len(excess_arr)} of {args.episodes} ({len(excess_arr) / args.episodes:.1e}); "
        f"mean length {lengths_arr.mean():.0f} steps; right-minus-left actions per success: mean {excess_arr.mean():.1f}, "
        f"sd {excess_arr.std():.1f}; share of 'right' among their actions {0.5 + np.mean(excess_arr / lengths_arr) / 2:.4f}"
    )
    success_length = int(round(lengths_arr.mean()))
    group_lengths = th.tensor([success_length] + [HORIZON] * 7)
    rewards = th.zeros(int(group_lengths.sum()))
    rewards[success_length - 1] = 1.0
    for gamma in (0.99, 0.999, 1.0):
        advantages = reward_to_go_advantages(rewards, group_lengths, gamma)[:success_length].numpy()
        share = np.abs(advantages[-100:]).sum() / np.abs(advantages).sum()
        print(
            f"gamma {gamma}: the success's advantage at its first step {advantages[0]:.3f}, at its last {advantages[-1]:.2f}; "
            f"share of its |advantage| on its last 100 steps {share:.2f}"
        )


if __name__ == "__main__":
    main()
