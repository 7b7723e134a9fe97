"""
The main job: a short, real HAEPO-vs-PPO training run on CartPole-v1 that prints and plots the comparison.

Both algorithms train on the same VecEnv settings (8 envs, the RL Zoo's ``n_envs`` for PPO on CartPole) for the same
number of steps and seeds; each is evaluated every ``--eval-freq`` steps with ``EvalCallback`` (deterministic policy,
``--n-eval-episodes`` episodes on a separate env). HAEPO uses its defaults, PPO the RL Zoo's tuned CartPole settings.

With ``--publish`` (``make main``) the report goes to ``docs/results/main_job.md`` (with the deterministic part,
machine-readable, in ``main_job.json`` beside it), the plot to ``docs/cartpole_haepo_vs_ppo.png``, and the README's
``main_job`` block is replaced by the report. On the CPU with one torch thread the evaluation returns, steps to the
threshold and env steps are bitwise reproducible; ``tests/test_experiments.py`` re-runs the job and compares them.
"""

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_haepo import HAEPO
from sb3_haepo.benchmark.configs import PPO_ZOO_CARTPOLE
from sb3_haepo.experiments import published

ENV_ID = "CartPole-v1"
THRESHOLD = 475.0
N_ENVS = 8
ALGOS = ("HAEPO", "PPO")

# What --publish writes, relative to the repository root
PUBLISHED_REPORT = published.RESULTS_DIR / "main_job.md"
PUBLISHED_PLOT = Path("docs/cartpole_haepo_vs_ppo.png")
README_BLOCK = "main_job"
PUBLISH_COMMAND = "python scripts/compare_cartpole.py --publish"


@dataclass(frozen=True)
class MainJobConfig:
    """The main job's budget; the defaults are what ``make main`` runs and publishes."""

    timesteps: int = 50_000
    seeds: int = 3
    eval_freq: int = 5000
    n_eval_episodes: int = 5


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

    def deterministic(self) -> dict[str, Any]:
        """What a re-run on the CPU (one torch thread) reproduces exactly: everything but the seconds."""
        return {
            "algo": self.algo,
            "seed": self.seed,
            "eval_timesteps": [int(step) for step in self.timesteps],
            "eval_returns": [float(value) for value in self.returns],
            "total_steps": int(self.total_steps),
            "steps_to_threshold": self.steps_to_threshold,
        }

    def wall_clock(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "seed": self.seed,
            "seconds": self.seconds,
            "seconds_to_threshold": self.seconds_to_threshold,
        }

    def line(self) -> str:
        """The per-seed line printed after each run."""
        reached = self.steps_to_threshold if self.steps_to_threshold is not None else "never"
        return (
            f"{self.algo:5s} seed {self.seed}: final eval {self.returns[-1]:6.1f}, reached {THRESHOLD:.0f} at {reached}, "
            f"{self.total_steps} env steps in {self.seconds:5.1f} s"
        )


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


def run_all(config: MainJobConfig, verbose: bool = True, seeds: Sequence[int] | None = None) -> list[RunResult]:
    """
    Train and evaluate both algorithms on every seed, seed by seed, on the CPU with one torch thread (small MLPs:
    one thread is fastest, fair to both algorithms on a shared machine, and makes the runs bitwise reproducible) and
    the CPU kernels of ``published.pin_numerics`` (which takes effect only before the process's first torch operation).

    :param verbose: print each run's line when it ends
    :param seeds: only these of the job's seeds (default: all, ``0 .. config.seeds - 1``)
    """
    published.pin_numerics()
    results = []
    for seed in range(config.seeds) if seeds is None else seeds:
        for algo in ALGOS:
            result = run_one(algo, seed, config.timesteps, config.eval_freq, config.n_eval_episodes)
            if verbose:
                print(result.line(), flush=True)
            results.append(result)
    return results


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


def to_record(
    results: list[RunResult], config: MainJobConfig, command: str, machine: dict[str, str], plot_path: str
) -> dict[str, Any]:
    """Everything the report shows, JSON-serialisable: the deterministic part apart from the wall-clock one."""
    return {
        "command": command,
        "config": dataclasses.asdict(config),
        "env_id": ENV_ID,
        "n_envs": N_ENVS,
        "threshold": THRESHOLD,
        "machine": machine,
        "plot": plot_path,
        "deterministic": [r.deterministic() for r in results],
        "wall_clock": [r.wall_clock() for r in results],
    }


def from_record(record: dict[str, Any]) -> list[RunResult]:
    """The runs of a record written by :func:`to_record`."""
    results = []
    for runs, clock in zip(record["deterministic"], record["wall_clock"], strict=True):
        assert (runs["algo"], runs["seed"]) == (clock["algo"], clock["seed"])
        results.append(
            RunResult(
                runs["algo"],
                runs["seed"],
                np.array(runs["eval_timesteps"], dtype=np.int64),
                np.array(runs["eval_returns"], dtype=np.float64),
                clock["seconds"],
                runs["total_steps"],
                runs["steps_to_threshold"],
                clock["seconds_to_threshold"],
            )
        )
    return results


def render_report(record: dict[str, Any]) -> str:
    """The markdown report (the README's ``main_job`` block), from a record alone."""
    results = from_record(record)
    config = record["config"]
    command = f"`{record['command']}`" + (" (`make main`)" if record["command"] == PUBLISH_COMMAND else "")
    lines = [
        published.generated_by(record["command"]),
        f"{command}: {config['seeds']} seeds, {config['timesteps']:,} steps per run, "
        f"evaluation of {config['n_eval_episodes']} episodes every {config['eval_freq']:,} steps. "
        f"Run on {published.format_machine_note(record['machine'])}.",
        "",
        "```",
        *(r.line() for r in results),
        "```",
        "",
        summarize(results),
        "",
        f"Plot: `{record['plot']}`. The evaluation returns, steps to {THRESHOLD:.0f} and env steps are deterministic "
        "(CPU, one torch thread, the kernels named above): they are kept in `docs/results/main_job.json`, and "
        "`tests/test_experiments.py` re-runs the job and checks that it gets them again on a machine with the same "
        "versions, CPU vendor and vector extensions. Seconds depend on the machine and its load.",
    ]
    return "\n".join(lines) + "\n"


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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def record_path(report: str | Path) -> Path:
    """The JSON record written beside a markdown report."""
    return Path(report).with_suffix(".json")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, MainJobConfig]:
    defaults = MainJobConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=defaults.timesteps, help="training steps per run")
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds per algorithm")
    parser.add_argument("--eval-freq", type=int, default=defaults.eval_freq, help="evaluate every this many steps")
    parser.add_argument("--n-eval-episodes", type=int, default=defaults.n_eval_episodes)
    parser.add_argument("--output", help="where to save the plot (default: results/cartpole_haepo_vs_ppo.png)")
    published.add_report_arguments(parser, README_BLOCK, PUBLISHED_REPORT, f"make main: --output {PUBLISHED_PLOT} ")
    args = parser.parse_args(argv)
    config = MainJobConfig(args.timesteps, args.seeds, args.eval_freq, args.n_eval_episodes)
    if args.publish and args.output:
        parser.error("--publish chooses --output, --report and --readme")
    published.resolve_report_arguments(parser, args, README_BLOCK, PUBLISHED_REPORT, config if config == defaults else None)
    if args.publish:
        args.output = str(PUBLISHED_PLOT)
    args.output = args.output or "results/cartpole_haepo_vs_ppo.png"
    return args, config


def main(argv: list[str] | None = None) -> list[RunResult]:
    args, config = parse_args(argv)
    command = " ".join(["python scripts/compare_cartpole.py", *(sys.argv[1:] if argv is None else argv)])
    load = published.load_average()
    results = run_all(config)
    print()
    print(summarize(results))
    plot(results, args.output)
    print(f"\nPlot saved to {args.output}")
    if args.report:
        record = to_record(results, config, command, {**published.machine_note(), "load_average": load}, args.output)
        published.save_report(args, README_BLOCK, render_report(record))
        record_path(args.report).write_text(published.dump_json(record) + "\n", encoding="utf-8")
        print(f"Record saved to {record_path(args.report)}")
    return results


if __name__ == "__main__":
    main()
