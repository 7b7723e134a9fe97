"""
Lab probe (docs/LEARNING.md entry 21): does an untrained HAEPO policy ever reach MountainCar-v0's goal?

A critic-free group method gets a reward signal from a group only when its episodes' returns differ. On
MountainCar-v0 every episode that misses the goal returns exactly -200 with the same per-step rewards, so a group
of such episodes gives every advantage exactly 0. This probe counts how often the policies HAEPO starts from reach
the goal within the 200-step limit:

- a uniformly random policy (``env.action_space.sample()``);
- HAEPO's initial ``MlpPolicy`` (one per seed), sampled as in training and by arg-max as in evaluation, with SB3's
  orthogonal initialisation (near-uniform action probabilities) and without it (``ortho_init=False``: sharper);
- each on the raw observations and on observations mapped to about unit scale by a fixed affine map (position
  ``(x + 0.3) / 0.5``, velocity ``v / 0.035``), which is roughly what observation normalisation gives.

Usage: ``PYTHONPATH=. python docs/lab/mountaincar_exploration_probe.py [--seeds 8] [--episodes 30]``
"""

import argparse

import gymnasium as gym
import numpy as np
import torch as th

from sb3_haepo import HAEPO

OFFSET = np.array([-0.3, 0.0], dtype=np.float32)
SCALE = np.array([0.5, 0.035], dtype=np.float32)


def make_env(scaled: bool) -> gym.Env:
    """MountainCar-v0, with the fixed affine observation map when ``scaled``."""
    env = gym.make("MountainCar-v0")
    if not scaled:
        return env
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    return gym.wrappers.TransformObservation(env, lambda obs: ((obs - OFFSET) / SCALE).astype(np.float32), space)


def success_rate(env: gym.Env, act, n_episodes: int, seed: int) -> float:
    """Fraction of ``n_episodes`` episodes (reset seeds ``seed * 1000 + i``) that reach the goal."""
    successes = 0
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed * 1000 + episode)
        while True:
            obs, _, terminated, truncated, _ = env.step(act(obs))
            if terminated or truncated:
                successes += int(terminated)
                break
    return successes / n_episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="policy seeds 0..N-1")
    parser.add_argument("--episodes", type=int, default=30, help="episodes per policy (sampled actions)")
    args = parser.parse_args()
    th.set_num_threads(1)
    env = make_env(scaled=False)
    env.action_space.seed(0)
    n_random = args.episodes * args.seeds
    print(f"uniformly random policy: {success_rate(env, lambda _: env.action_space.sample(), n_random, 0):.3f} of {n_random}")
    for scaled in (False, True):
        for name, policy_kwargs in (("orthogonal init", None), ("ortho_init=False", {"ortho_init": False})):
            sampled, argmax = [], []
            for seed in range(args.seeds):
                env = make_env(scaled)
                model = HAEPO("MlpPolicy", env, seed=seed, policy_kwargs=policy_kwargs)
                sampled.append(success_rate(env, lambda obs: model.predict(obs)[0], args.episodes, seed))
                argmax.append(success_rate(env, lambda obs: model.predict(obs, deterministic=True)[0], 10, seed))
            obs_name = "scaled" if scaled else "raw"
            print(f"{obs_name:6s} obs, {name:16s}: sampled {sampled}, arg-max {argmax} (per policy seed)")


if __name__ == "__main__":
    main()
