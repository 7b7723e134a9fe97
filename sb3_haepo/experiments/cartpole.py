"""
The main job: a short, real HAEPO-vs-PPO training run on CartPole-v1 that prints and plots the comparison.

Both algorithms train on the same VecEnv settings (8 envs, the RL Zoo's ``n_envs`` for PPO on CartPole) for the same
number of steps and seeds; each is evaluated every ``--eval-freq`` steps with ``EvalCallback`` (deterministic policy,
``--n-eval-episodes`` episodes on a separate env). HAEPO uses its defaults, PPO the RL Zoo's tuned CartPole settings.
"""

import argparse
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_haepo import HAEPO
from sb3_haepo.benchmark.configs import PPO_ZOO_CARTPOLE

ENV_ID = "CartPole-v1"
THRESHOLD = 475.0
N_ENVS = 8


@dataclass
class RunResult:
    algo: str
    seed: int
    timesteps: np.ndarray  # (n_evals,)
    returns: np.ndarray  # (n_evals,) mean evaluation return
    seconds: float
    total_steps: int
    steps_to_threshold: int | None = field(default=None)
    seconds_to_threshold: float | None = field(default=None)


def make_model(algo: str, seed: int) -> BaseAlgorithm:
    env = make_vec_env(ENV_ID, n_envs=N_ENVS, seed=seed)
    if algo == "HAEPO":
        return HAEPO("MlpPolicy", env, seed=seed, device="cpu")
    return PPO("MlpPolicy", env, seed=seed, device="cpu", **PPO_ZOO_CARTPOLE)


class RecordEvaluations(BaseCallback):
    """Child of an ``EvalCallback``: keeps ``(timesteps, mean return)`` of every evaluation, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.timesteps: list[int] = []
        self.returns: list[float] = []
        self.seconds: list[float] = []
        self.start_time = time.perf_counter()

    def _on_step(self) -> bool:
        assert isinstance(self.parent, EvalCallback)
        self.timesteps.append(self.num_timesteps)
        self.returns.append(float(self.parent.last_mean_reward))
        self.seconds.append(time.perf_counter() - self.start_time)
        return True


def run_one(algo: str, seed: int, timesteps: int, eval_freq: int, n_eval_episodes: int) -> RunResult:
    model = make_model(algo, seed)
    record = RecordEvaluations()
    eval_callback = EvalCallback(
        make_vec_env(ENV_ID, n_envs=1, seed=seed + 10_000),
        n_eval_episodes=n_eval_episodes,
        eval_freq=max(eval_freq // N_ENVS, 1),
        callback_after_eval=record,
        verbose=0,
    )
    record.start_time = start = time.perf_counter()
    model.learn(timesteps, callback=eval_callback)
    seconds = time.perf_counter() - start
    steps = np.array(record.timesteps)
    returns = np.array(record.returns)
    reached = np.flatnonzero(returns >= THRESHOLD)
    return RunResult(
        algo,
        seed,
        steps,
        returns,
        seconds,
        model.num_timesteps,
        int(steps[reached[0]]) if len(reached) else None,
        record.seconds[reached[0]] if len(reached) else None,
    )


def summarize(results: list[RunResult]) -> str:
    lines = [
        f"{ENV_ID}: {N_ENVS} envs, evaluation = mean return of deterministic episodes; threshold {THRESHOLD:.0f}; "
        "wall-clock includes the evaluations",
        "",
        "| algo | seeds reaching 475 | steps to 475, median (range) | wall-clock s to 475, median "
        "| final eval return, mean ± std | wall-clock s per run, median |",
        "|---|---|---|---|---|---|",
    ]
    for algo in dict.fromkeys(r.algo for r in results):
        runs = [r for r in results if r.algo == algo]
        steps_to = [r.steps_to_threshold for r in runs if r.steps_to_threshold is not None]
        seconds_to = [r.seconds_to_threshold for r in runs if r.seconds_to_threshold is not None]
        if steps_to:
            steps = f"{np.median(steps_to):,.0f} ({min(steps_to):,}-{max(steps_to):,})"
            seconds = f"{np.median(seconds_to):.1f}"
        else:
            steps, seconds = "never", "-"
        final = np.array([r.returns[-1] for r in runs])
        run_seconds = np.median([r.seconds for r in runs])
        lines.append(
            f"| {algo} | {len(steps_to)}/{len(runs)} | {steps} | {seconds} | {final.mean():.1f} ± {final.std():.1f} "
            f"| {run_seconds:.1f} |"
        )
    return "\n".join(lines)


def plot(results: list[RunResult], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for algo in dict.fromkeys(r.algo for r in results):
        runs = [r for r in results if r.algo == algo]
        n_evals = min(len(r.returns) for r in runs)
        steps = runs[0].timesteps[:n_evals]
        curves = np.stack([r.returns[:n_evals] for r in runs])
        line = ax.plot(steps, curves.mean(axis=0), label=f"{algo} (mean of {len(runs)} seeds)")[0]
        ax.fill_between(steps, curves.min(axis=0), curves.max(axis=0), alpha=0.2, color=line.get_color())
    ax.axhline(THRESHOLD, color="gray", linestyle="--", linewidth=1, label=f"threshold {THRESHOLD:.0f}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"{ENV_ID}: HAEPO (defaults) vs PPO (RL Zoo settings)\nband: min-max over seeds", fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[RunResult]:
    th.set_num_threads(1)  # small MLPs: one thread is fastest and fair to both algorithms on a shared machine
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=50_000, help="training steps per run")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds per algorithm")
    parser.add_argument("--eval-freq", type=int, default=5000, help="evaluate every this many steps")
    parser.add_argument("--n-eval-episodes", type=int, default=5)
    parser.add_argument("--output", default="results/cartpole_haepo_vs_ppo.png", help="where to save the plot")
    args = parser.parse_args(argv)

    results = []
    for seed in range(args.seeds):
        for algo in ("HAEPO", "PPO"):
            result = run_one(algo, seed, args.timesteps, args.eval_freq, args.n_eval_episodes)
            reached = result.steps_to_threshold if result.steps_to_threshold is not None else "never"
            print(
                f"{algo:5s} seed {seed}: final eval {result.returns[-1]:6.1f}, reached {THRESHOLD:.0f} at {reached}, "
                f"{result.seconds:5.1f} s",
                flush=True,
            )
            results.append(result)
    print()
    print(summarize(results))
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    plot(results, args.output)
    print(f"\nPlot saved to {args.output}")
    return results


if __name__ == "__main__":
    main()
