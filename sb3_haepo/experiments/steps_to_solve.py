"""
Steps HAEPO needs to solve CartPole-v1 (evaluation mean >= 475), per seed: how the defaults were chosen.

Each run trains for at most ``--timesteps`` steps, evaluates the deterministic policy on ``--n-eval-episodes`` episodes
every ``--eval-freq`` steps, and stops at the first evaluation whose mean reaches the threshold.

Example: ``python scripts/steps_to_solve.py --seeds 0 1 2 --hyperparams n_episodes=16 learning_rate=1e-3``

With ``--table`` it runs every setting of :data:`DEFAULTS_TABLE` (the README's "How the defaults were chosen") and
writes the table to ``docs/results/steps_to_solve.md``; with ``--publish`` (``make steps-to-solve``) also into the
README block that quotes it.
"""

import argparse
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env

from sb3_haepo import EPISODE_CREDIT_PRESET, HAEPO, PAPER_PRESET
from sb3_haepo.benchmark.runner import parse_hyperparams as parse_assignments
from sb3_haepo.experiments import published

THRESHOLD = 475.0
PUBLISHED_REPORT = published.RESULTS_DIR / "steps_to_solve.md"
PUBLISH_COMMAND = "python scripts/steps_to_solve.py --table --publish"
README_BLOCK = "steps_to_solve"


@dataclass(frozen=True)
class Setting:
    """One row of the defaults table: changes from HAEPO's defaults, the number of envs and the seeds."""

    label: str
    hyperparams: dict[str, Any] = field(default_factory=dict, hash=False)
    n_envs: int = 1
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)


# The settings before per-step credit became the default (2026-11-26): the earlier rows of the table, kept to show
# how those defaults were chosen, each a change from EPISODE_CREDIT_PRESET
PREVIOUS = "previous defaults (`**EPISODE_CREDIT_PRESET`)"

DEFAULTS_TABLE = [
    Setting(
        '**defaults** (`credit="reward_to_go"`, `gamma=0.99`, 10 epochs of 64-step minibatches, `clip_range=0.2`, '
        "lr 1e-3, `n_episodes=8`, beta = lam = 0.01)"
    ),
    Setting('`credit="episode"`', {"credit": "episode"}, seeds=(0, 1, 2)),
    Setting(
        '`credit="episode", gamma=1.0` (the episode-level update with these epochs)',
        {"credit": "episode", "gamma": 1.0},
        seeds=(0, 1, 2),
    ),
    Setting(
        "`minibatch_size=None, clip_range=None` (10 exact full-batch epochs)",
        {"minibatch_size": None, "clip_range": None},
        seeds=(0, 1, 2),
    ),
    Setting("`learning_rate=3e-4`", {"learning_rate": 3e-4}, seeds=(0, 1, 2)),
    Setting("8 envs", n_envs=8),
    Setting("the paper's formulation (`**PAPER_PRESET`)", dict(PAPER_PRESET), seeds=(0, 1, 2)),
    Setting(PREVIOUS, dict(EPISODE_CREDIT_PRESET)),
    Setting(f"{PREVIOUS}, `n_episodes=16`", {**EPISODE_CREDIT_PRESET, "n_episodes": 16}),
    Setting(
        f"{PREVIOUS}, `n_episodes=16, learning_rate=1e-3`",
        {**EPISODE_CREDIT_PRESET, "n_episodes": 16, "learning_rate": 1e-3},
        seeds=(0, 1, 2),
    ),
    Setting(
        f'{PREVIOUS}, `n_episodes=16, trajectory_score="sum"` (the paper\'s score)',
        {**EPISODE_CREDIT_PRESET, "n_episodes": 16, "trajectory_score": "sum"},
        seeds=(0, 1, 2),
    ),
    Setting(
        f'{PREVIOUS}, `n_episodes=16, normalize_returns="sum"`',
        {**EPISODE_CREDIT_PRESET, "n_episodes": 16, "normalize_returns": "sum"},
        seeds=(0, 1, 2),
    ),
    Setting(
        f"{PREVIOUS}, `n_episodes=16, weight_ent_coef=0, ref_kl_coef=0`",
        {**EPISODE_CREDIT_PRESET, "n_episodes": 16, "weight_ent_coef": 0.0, "ref_kl_coef": 0.0},
        seeds=(0, 1, 2),
    ),
    Setting(f"{PREVIOUS}, 8 envs", dict(EPISODE_CREDIT_PRESET), n_envs=8),
    Setting(f"{PREVIOUS}, `n_episodes=16`, 8 envs", {**EPISODE_CREDIT_PRESET, "n_episodes": 16}, n_envs=8, seeds=(0, 1, 2, 3)),
]


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
    :param items: ``key=value`` strings, values as Python literals or bare words (as the benchmark runner's)
    :return: the keyword arguments
    """
    return parse_assignments(",".join(items))


def format_cell(solved_at: int | None, best: float) -> str:
    """``10k`` for a run that reached 475 at 10,000 steps, ``never (best 367)`` for one that did not."""
    return f"{solved_at / 1000:g}k" if solved_at is not None else f"never (best {best:.0f})"


def _run(args: tuple[int, dict[str, Any], int, int]) -> tuple[int | None, float]:
    th.set_num_threads(1)
    seed, hyperparams, n_envs, timesteps = args
    return steps_to_solve(seed, hyperparams, n_envs, timesteps)


def run_table(settings: list[Setting], timesteps: int = 100_000, n_jobs: int = 1) -> list[list[str]]:
    """
    :return: the cells of each setting, one per seed (runs in ``n_jobs`` processes; each run is deterministic)
    """
    jobs = [(seed, setting.hyperparams, setting.n_envs, timesteps) for setting in settings for seed in setting.seeds]
    with ProcessPoolExecutor(n_jobs) as pool:
        results = iter(pool.map(_run, jobs))
    return [[format_cell(*next(results)) for _ in setting.seeds] for setting in settings]


def table_report(settings: list[Setting], cells: list[list[str]], timesteps: int, machine: dict[str, str]) -> str:
    """The published report: the command, the machine, and one row per setting with its cells per seed."""
    lines = [
        published.generated_by(PUBLISH_COMMAND),
        f"`{PUBLISH_COMMAND}` (`make steps-to-solve`): CartPole-v1, evaluation of 10 deterministic episodes every 5k "
        f'steps, training stopped at the first mean >= {THRESHOLD:.0f} ("never": not within {timesteps // 1000}k '
        f"steps, with the best evaluation mean). Run on {published.format_machine_note(machine)}. The cells are "
        "deterministic (CPU, one torch thread per run).",
        "",
        "| setting (changes from the defaults) | seeds | steps to 475, per seed |",
        "|---|---|---|",
    ]
    for setting, row in zip(settings, cells, strict=True):
        seeds = ", ".join(str(seed) for seed in setting.seeds)
        lines.append(f"| {setting.label} | {seeds} | {', '.join(row)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--eval-freq", type=int, default=5000)
    parser.add_argument("--n-eval-episodes", type=int, default=10)
    parser.add_argument("--hyperparams", nargs="*", default=[], help="HAEPO kwargs as key=value")
    parser.add_argument("--table", action="store_true", help="run every setting of the defaults table")
    parser.add_argument("--publish", action="store_true", help=f"with --table: write {PUBLISHED_REPORT} and the README")
    parser.add_argument("--n-jobs", type=int, default=1, help="with --table: parallel processes")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    if args.table:
        machine = {**published.machine_note(), "load_average": published.load_average()}
        cells = run_table(DEFAULTS_TABLE, args.timesteps, args.n_jobs)
        report = table_report(DEFAULTS_TABLE, cells, args.timesteps, machine)
        print(report)
        if args.publish:
            published.write_report(PUBLISHED_REPORT, report)
            published.update_readme(published.README, README_BLOCK, PUBLISHED_REPORT)
            print(f"Written to {PUBLISHED_REPORT} and the README")
        return
    hyperparams = parse_hyperparams(args.hyperparams)
    for seed in args.seeds:
        solved_at, best = steps_to_solve(seed, hyperparams, args.n_envs, args.timesteps, args.eval_freq, args.n_eval_episodes)
        print(f"seed {seed} {hyperparams} n_envs={args.n_envs}: reached 475 at {solved_at or 'never'} (best {best:.0f})")


if __name__ == "__main__":
    main()
