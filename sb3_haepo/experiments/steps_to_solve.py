"""
Steps HAEPO needs to solve CartPole-v1 (evaluation mean >= 475), per seed: how the defaults were chosen.

Each run trains for at most ``--timesteps`` steps, evaluates the deterministic policy on ``--n-eval-episodes`` episodes
every ``--eval-freq`` steps, and stops at the first evaluation whose mean reaches the threshold.

Example: ``python scripts/steps_to_solve.py --seeds 0 1 2 --hyperparams n_episodes=16 learning_rate=1e-3``
"""

import argparse
import ast
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env

from sb3_haepo import HAEPO

THRESHOLD = 475.0


def steps_to_solve(
    seed: int,
    hyperparams: dict[str, Any] | None = None,
    n_envs: int = 1,
    timesteps: int = 100_000,
    eval_freq: int = 5000,
    n_eval_episodes: int = 10,
    env_id: str = "CartPole-v1",
) -> tuple[int | None, float]:
    """
    :return: the step of the first evaluation with a mean return >= 475 (None if none within ``timesteps``),
        and the best evaluation mean
    """
    eval_callback = EvalCallback(
        make_vec_env(env_id, n_envs=1, seed=seed + 1000),
        n_eval_episodes=n_eval_episodes,
        eval_freq=max(eval_freq // n_envs, 1),
        callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=THRESHOLD),
        verbose=0,
    )
    model = HAEPO("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=seed), seed=seed, **(hyperparams or {}))
    model.learn(timesteps, callback=eval_callback)
    solved = eval_callback.best_mean_reward >= THRESHOLD
    return (model.num_timesteps if solved else None), float(eval_callback.best_mean_reward)


def parse_hyperparams(items: list[str]) -> dict[str, Any]:
    """
    :param items: ``key=value`` strings, values as Python literals
    :return: the keyword arguments
    """
    hyperparams = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Expected key=value, got {item!r}")
        try:
            hyperparams[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            hyperparams[key] = value  # a plain string such as zscore
    return hyperparams


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--eval-freq", type=int, default=5000)
    parser.add_argument("--n-eval-episodes", type=int, default=10)
    parser.add_argument("--hyperparams", nargs="*", default=[], help="HAEPO kwargs as key=value")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    hyperparams = parse_hyperparams(args.hyperparams)
    for seed in args.seeds:
        solved_at, best = steps_to_solve(seed, hyperparams, args.n_envs, args.timesteps, args.eval_freq, args.n_eval_episodes)
        print(f"seed {seed} {hyperparams} n_envs={args.n_envs}: reached 475 at {solved_at or 'never'} (best {best:.0f})")


if __name__ == "__main__":
    main()
