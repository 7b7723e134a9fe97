"""
Training throughput of HAEPO against SB3's PPO, in the same process, on the same VecEnv settings.

Each algorithm's figure is ``env steps / wall-clock seconds`` of ``learn()`` (rollouts and updates together).
The ceiling of any on-policy method is a random-policy rollout through the same VecEnv, so both are also given
as a fraction of it. Figures are ratios measured in one run: absolute seconds depend on the (shared) machine.
"""

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_haepo import HAEPO
from sb3_haepo.benchmark.configs import PPO_ZOO_CARTPOLE


@dataclass
class ThroughputResult:
    name: str
    steps: int
    seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def random_rollout(env_id: str, n_envs: int, n_steps: int, seed: int) -> ThroughputResult:
    """Step the VecEnv with random actions: the ceiling of any on-policy method."""
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    env.reset()
    # Sampled before timing: (n_steps // n_envs, n_envs, *action_shape)
    actions = [np.array([env.action_space.sample() for _ in range(n_envs)]) for _ in range(n_steps // n_envs)]
    start = time.perf_counter()
    for step_actions in actions:
        env.step(step_actions)
    seconds = time.perf_counter() - start
    env.close()
    return ThroughputResult("random policy", (n_steps // n_envs) * n_envs, seconds)


def train_throughput(
    name: str, algo: Any, env_id: str, n_envs: int, total_timesteps: int, seed: int, **kwargs: Any
) -> ThroughputResult:
    """Time ``learn(total_timesteps)`` (model construction excluded)."""
    model = algo("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=seed), seed=seed, device="cpu", **kwargs)
    start = time.perf_counter()
    model.learn(total_timesteps)
    seconds = time.perf_counter() - start
    model.get_env().close()
    return ThroughputResult(name, model.num_timesteps, seconds)


def run_throughput(
    env_id: str = "CartPole-v1", n_envs: int = 8, n_steps: int = 100_000, seed: int = 0, repeats: int = 3, threads: int = 1
) -> str:
    """
    Measure random, HAEPO (defaults) and PPO (zoo CartPole settings) throughput ``repeats`` times, interleaved,
    and return a markdown report with the median of each and their ratios.

    :param threads: torch CPU threads for both algorithms (1 avoids oversubscribing a small, shared machine)
    """
    th.set_num_threads(threads)
    results: dict[str, list[ThroughputResult]] = {}
    for repeat in range(repeats):
        for result in (
            random_rollout(env_id, n_envs, n_steps, seed + repeat),
            train_throughput("HAEPO", HAEPO, env_id, n_envs, n_steps, seed + repeat),
            train_throughput("PPO", PPO, env_id, n_envs, n_steps, seed + repeat, **PPO_ZOO_CARTPOLE),
        ):
            results.setdefault(result.name, []).append(result)
    median = {name: float(np.median([r.steps_per_second for r in runs])) for name, runs in results.items()}
    lines = [
        f"Training throughput on {env_id}, {n_envs} envs (DummyVecEnv), {n_steps} steps, median of {repeats} runs, "
        f"torch {th.__version__} on CPU with {th.get_num_threads()} threads",
        "",
        "| | env-steps/s | fraction of random-policy rollout | ratio to PPO |",
        "|---|---|---|---|",
    ]
    for name in ("random policy", "HAEPO", "PPO"):
        of_random, of_ppo = median[name] / median["random policy"], median[name] / median["PPO"]
        lines.append(f"| {name} | {median[name]:,.0f} | {of_random:.2f} | {of_ppo:.2f} |")
    lines.append("")
    lines.append(f"HAEPO / PPO throughput ratio: {median['HAEPO'] / median['PPO']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    print(run_throughput(args.env, args.n_envs, args.n_steps, args.seed, args.repeats, args.threads))


if __name__ == "__main__":
    main()
