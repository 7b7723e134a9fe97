"""
Training throughput of HAEPO against SB3's PPO, in the same process, on the same VecEnv settings.

Each algorithm's figure is ``env steps / wall-clock seconds`` of ``learn()`` (rollouts and updates together).
The ceiling of any on-policy method is a random-policy rollout through the same VecEnv, so both are also given
as a fraction of it. Figures are ratios measured in one run: absolute seconds depend on the (shared) machine.

With ``--publish`` (``make throughput``) the report goes to ``docs/results/throughput.md`` and replaces the README's
``throughput`` block.
"""

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_haepo import HAEPO
from sb3_haepo.benchmark.configs import PPO_ZOO_CARTPOLE
from sb3_haepo.experiments import published

# make throughput's settings, and what --publish writes (relative to the repository root)
DEFAULTS: dict[str, Any] = {"env": "CartPole-v1", "n_envs": 8, "n_steps": 100_000, "repeats": 3, "seed": 0, "threads": 1}
PUBLISHED_REPORT = published.RESULTS_DIR / "throughput.md"
PUBLISH_COMMAND = "python scripts/benchmark_throughput.py --publish"
README_BLOCK = "throughput"


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


def measure_throughput(
    env_id: str = "CartPole-v1", n_envs: int = 8, n_steps: int = 100_000, seed: int = 0, repeats: int = 3, threads: int = 1
) -> dict[str, list[ThroughputResult]]:
    """
    Measure random, HAEPO (defaults) and PPO (zoo CartPole settings) throughput ``repeats`` times, interleaved.

    :param threads: torch CPU threads for both algorithms (1 avoids oversubscribing a small, shared machine)
    :return: the results of each, by name ("random policy", "HAEPO", "PPO")
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
    return results


def render_throughput(
    results: dict[str, list[ThroughputResult]], env_id: str, n_envs: int, n_steps: int, command: str, machine: dict[str, str]
) -> str:
    """The markdown report (the README's ``throughput`` block): the median of each and their ratios."""
    repeats = len(results["PPO"])
    median = {name: float(np.median([r.steps_per_second for r in runs])) for name, runs in results.items()}
    lines = [
        published.generated_by(command),
        f"`{command}`" + (" (`make throughput`)" if command == PUBLISH_COMMAND else "") + f": {env_id}, {n_envs} envs "
        f"(DummyVecEnv), `learn({n_steps:_})`, median of {repeats} interleaved runs. "
        f"Run on {published.format_machine_note(machine)}.",
        "",
        "| | env-steps/s | fraction of random-policy rollout | ratio to PPO | env steps per run |",
        "|---|---|---|---|---|",
    ]
    for name in ("random policy", "HAEPO", "PPO"):
        of_random, of_ppo = median[name] / median["random policy"], median[name] / median["PPO"]
        steps = sorted({r.steps for r in results[name]})
        label = f"{name} (ceiling)" if name == "random policy" else name
        lines.append(
            f"| {label} | {median[name]:,.0f} | {of_random:.2f} | {of_ppo:.2f} | {', '.join(f'{s:,}' for s in steps)} |"
        )
    lines.append("")
    lines.append(f"HAEPO / PPO throughput ratio: {median['HAEPO'] / median['PPO']:.2f}")
    return "\n".join(lines) + "\n"


def run_throughput(
    env_id: str = "CartPole-v1",
    n_envs: int = 8,
    n_steps: int = 100_000,
    seed: int = 0,
    repeats: int = 3,
    threads: int = 1,
    command: str = "sb3_haepo.experiments.throughput.run_throughput()",
) -> str:
    """Measure (see :func:`measure_throughput`) and return the markdown report."""
    load = published.load_average()
    results = measure_throughput(env_id, n_envs, n_steps, seed, repeats, threads)
    return render_throughput(results, env_id, n_envs, n_steps, command, {**published.machine_note(), "load_average": load})


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=DEFAULTS["env"])
    parser.add_argument("--n-envs", type=int, default=DEFAULTS["n_envs"])
    parser.add_argument("--n-steps", type=int, default=DEFAULTS["n_steps"])
    parser.add_argument("--repeats", type=int, default=DEFAULTS["repeats"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--threads", type=int, default=DEFAULTS["threads"], help="torch CPU threads")
    published.add_report_arguments(parser, README_BLOCK, PUBLISHED_REPORT, "make throughput: ")
    args = parser.parse_args(argv)
    is_default = all(getattr(args, key) == value for key, value in DEFAULTS.items())
    published.resolve_report_arguments(parser, args, README_BLOCK, PUBLISHED_REPORT, DEFAULTS if is_default else None)
    command = " ".join(["python scripts/benchmark_throughput.py", *(sys.argv[1:] if argv is None else argv)])
    report = run_throughput(args.env, args.n_envs, args.n_steps, args.seed, args.repeats, args.threads, command)
    print(report, end="")
    published.save_report(args, README_BLOCK, report)
    return report


if __name__ == "__main__":
    main()
