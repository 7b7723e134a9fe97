"""
SB3's identity envs (``stable_baselines3.common.envs``) at a small budget: HAEPO with its defaults and with the paper's
formulation (``PAPER_PRESET``) against PPO.

The agent must repeat its observation; each of the 100 steps of an episode pays 1 when the action matches, so the
best return is 100 and SB3's own identity tests ask for an evaluation mean of 90. Every run: 1 env, ``--timesteps``
steps, then ``--n-eval-episodes`` deterministic episodes. Both algorithms get the identity tests' per-step discount
``gamma=0.4`` (the task's setting, as SB3's tests give it to every algorithm) and otherwise their defaults; PPO also
gets ``n_steps=1000`` (so that its rollouts fit the budget exactly: PPO gets no more env steps than HAEPO).

This is the learning-strength target "identity envs reach 90 within 5k steps with the defaults"
(docs/LEARNING.md). ``--publish`` writes ``docs/results/identity.md`` and the README block that quotes it.
"""

import argparse
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_haepo import HAEPO, PAPER_PRESET
from sb3_haepo.benchmark.runner import parse_hyperparams
from sb3_haepo.experiments import published

DIM = 4
TARGET = 90.0
ENVS: dict[str, Callable[[], gym.Env]] = {
    f"IdentityEnv({DIM})": lambda: IdentityEnv(DIM),
    f"IdentityEnvMultiDiscrete({DIM})": lambda: IdentityEnvMultiDiscrete(DIM),
    f"IdentityEnvMultiBinary({DIM})": lambda: IdentityEnvMultiBinary(DIM),
    "IdentityEnvBox(eps=0.5)": lambda: IdentityEnvBox(eps=0.5),
}
ALGOS = ["HAEPO", "HAEPO-paper", "PPO"]
# The identity tests' discount, given to HAEPO and PPO
TASK_GAMMA = 0.4
PPO_KWARGS: dict[str, Any] = dict(gamma=TASK_GAMMA, n_steps=1000, batch_size=100)
PUBLISHED_REPORT = published.RESULTS_DIR / "identity.md"
PUBLISH_COMMAND = "python scripts/identity_envs.py --publish"
README_BLOCK = "identity"


def make_model(algo: str, env: gym.Env, seed: int, hyperparams: dict[str, Any]) -> BaseAlgorithm:
    if algo == "HAEPO":
        return HAEPO("MlpPolicy", env, seed=seed, device="cpu", **{"gamma": TASK_GAMMA, **hyperparams})
    if algo == "HAEPO-paper":
        # The paper's formulation, its undiscounted return included
        return HAEPO("MlpPolicy", env, seed=seed, device="cpu", **PAPER_PRESET)
    return PPO("MlpPolicy", env, seed=seed, device="cpu", **PPO_KWARGS)


def run_one(args: tuple[str, str, int, int, int, dict[str, Any]]) -> float:
    """:return: the mean evaluation return of one run (deterministic on the CPU with one torch thread)"""
    algo, env_name, seed, timesteps, n_eval_episodes, hyperparams = args
    th.set_num_threads(1)
    model = make_model(algo, ENVS[env_name](), seed, hyperparams)
    model.learn(timesteps)
    eval_env = ENVS[env_name]()
    # The identity envs draw their states from the action space's own generator: seed it too
    eval_env.action_space.seed(seed + 1000)
    eval_env.reset(seed=seed + 1000)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=n_eval_episodes, deterministic=True)
    assert isinstance(mean, float)
    return mean


def run_grid(
    algos: list[str],
    seeds: list[int],
    timesteps: int,
    n_eval_episodes: int,
    hyperparams: dict[str, Any],
    n_jobs: int = 1,
    env_names: list[str] | None = None,
) -> dict[tuple[str, str], list[float]]:
    """:return: the evaluation means per (algo, env), one per seed (all of ``ENVS`` unless ``env_names`` is given)"""
    keys = [(algo, env_name) for env_name in (env_names or list(ENVS)) for algo in algos]
    jobs = [(algo, env_name, seed, timesteps, n_eval_episodes, hyperparams) for algo, env_name in keys for seed in seeds]
    with ProcessPoolExecutor(n_jobs) as pool:
        means = iter(pool.map(run_one, jobs))
    return {key: [next(means) for _ in seeds] for key in keys}


def report(results: dict[tuple[str, str], list[float]], seeds: list[int], timesteps: int, command: str) -> str:
    lines = [
        published.generated_by(command),
        f"`{command}`: 1 env, {timesteps:,} steps, seeds {', '.join(map(str, seeds))}, then 20 deterministic episodes "
        f"(best return 100; target {TARGET:.0f}). HAEPO and PPO with the identity tests' `gamma=0.4`, HAEPO otherwise "
        f"with its defaults, PPO with SB3's defaults and `n_steps=1000, batch_size=100`; HAEPO-paper is "
        f"`HAEPO(**PAPER_PRESET)` (the paper's formulation, undiscounted). "
        f"Run on {published.format_machine_note(published.machine_note())}.",
        "",
        "| env | algo | evaluation mean per seed | mean | seeds >= 90 |",
        "|---|---|---|---|---|",
    ]
    for (algo, env_name), means in results.items():
        per_seed = ", ".join(f"{mean:.1f}" for mean in means)
        n_target = sum(mean >= TARGET for mean in means)
        lines.append(f"| {env_name} | {algo} | {per_seed} | {np.mean(means):.1f} | {n_target}/{len(means)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=ALGOS, choices=ALGOS)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS), metavar="ENV")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=5000)
    parser.add_argument("--n-eval-episodes", type=int, default=20)
    parser.add_argument(
        "--hyperparams", default="", metavar="KEY=VALUE,...", help="HAEPO overrides of its defaults (and of gamma=0.4)"
    )
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--publish", action="store_true", help=f"write {PUBLISHED_REPORT} and the README (defaults only)")
    args = parser.parse_args(argv)
    th.set_num_threads(1)  # as each run's process (and so the machine note says)
    hyperparams = parse_hyperparams(args.hyperparams)
    default_run = (
        not hyperparams
        and args.timesteps == 5000
        and args.seeds == [0, 1, 2]
        and args.algos == ALGOS
        and args.envs == list(ENVS)
    )
    if args.publish and not default_run:
        parser.error("--publish publishes the default configuration only")
    results = run_grid(args.algos, args.seeds, args.timesteps, args.n_eval_episodes, hyperparams, args.n_jobs, args.envs)
    given = sys.argv[1:] if argv is None else argv
    command = PUBLISH_COMMAND if args.publish else "python scripts/identity_envs.py " + " ".join(given)
    text = report(results, args.seeds, args.timesteps, command.strip())
    print(text)
    if args.publish:
        published.write_report(PUBLISHED_REPORT, text)
        published.update_readme(published.README, README_BLOCK, PUBLISHED_REPORT)
        print(f"Written to {PUBLISHED_REPORT} and the README")


if __name__ == "__main__":
    main()
