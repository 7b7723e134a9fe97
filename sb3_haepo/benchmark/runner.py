"""Run a grid of algorithms x envs x seeds, each run logged in the RL Zoo's layout, in parallel and resumable."""

import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from tqdm.auto import tqdm

import sb3_haepo.envs  # noqa: F401  (registers the benchmark envs)
from sb3_haepo.benchmark.configs import ALGOS, INFO_KEYWORDS, env_folder_name, get_hyperparams

COMPLETE_MARKER = "complete"
RUN_INFO = "run.json"


@dataclass(frozen=True)
class RunSpec:
    """
    One training run.

    :param algo: a key of :data:`~sb3_haepo.benchmark.configs.ALGOS`
    :param env_id: Gymnasium id
    :param seed: random seed of the run (also its run id in the folder name)
    :param n_timesteps: training budget in env steps
    :param log_dir: root of the logs; the run writes to ``{log_dir}/{algo}/{env}_{seed}``
    :param eval_freq: evaluate every ``eval_freq`` env steps
    :param n_eval_episodes: episodes per evaluation (deterministic actions)
    :param hyperparams: overrides of :func:`~sb3_haepo.benchmark.configs.get_hyperparams`
    """

    algo: str
    env_id: str
    seed: int
    n_timesteps: int
    log_dir: str
    eval_freq: int = 5_000
    n_eval_episodes: int = 10
    hyperparams: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.log_dir) / self.algo / f"{env_folder_name(self.env_id)}_{self.seed}"


class TimedEvalCallback(EvalCallback):
    """
    :class:`EvalCallback` that also records, at each evaluation, the wall-clock time spent training so far
    (evaluation time excluded), in ``eval_train_times``.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.eval_train_times: list[float] = []
        self._start = time.perf_counter()
        self._eval_time = 0.0

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            start = time.perf_counter()
            self.eval_train_times.append(start - self._start - self._eval_time)
            result = super()._on_step()
            self._eval_time += time.perf_counter() - start
            return result
        return super()._on_step()

    @property
    def train_time(self) -> float:
        return time.perf_counter() - self._start - self._eval_time


def is_complete(spec: RunSpec) -> bool:
    """:return: whether the run finished (its complete marker exists)"""
    return (spec.run_dir / COMPLETE_MARKER).exists()


def run_one(spec: RunSpec) -> dict[str, Any]:
    """
    Train one run and log it; a run already complete is skipped, a partial one is started over.

    Writes in ``spec.run_dir``: ``evaluations.npz`` (EvalCallback), ``0.monitor.csv`` ... (training episodes, with
    the env's info keys), ``run.json`` (hyperparameters, training wall-clock time, env steps per second,
    training time at each evaluation) and the marker ``complete``, last.

    :return: the contents of ``run.json`` plus ``"status"``: ``"done"`` or ``"skipped"``
    """
    if is_complete(spec):
        return {**json.loads((spec.run_dir / RUN_INFO).read_text()), "status": "skipped"}
    if spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    spec.run_dir.mkdir(parents=True)
    # One thread per run: the runs are the parallelism
    th.set_num_threads(1)

    hyperparams = {**get_hyperparams(spec.algo, spec.env_id), **spec.hyperparams}
    n_envs = int(hyperparams.pop("n_envs"))
    env = make_vec_env(
        spec.env_id,
        n_envs=n_envs,
        seed=spec.seed,
        monitor_dir=str(spec.run_dir),
        monitor_kwargs={"info_keywords": INFO_KEYWORDS.get(spec.env_id, ())},
        env_kwargs={"render_mode": None},  # make_vec_env's default is "rgb_array": nothing here renders
    )
    eval_env = make_vec_env(spec.env_id, n_envs=1, seed=spec.seed + 10_000, env_kwargs={"render_mode": None})
    callback = TimedEvalCallback(
        eval_env,
        n_eval_episodes=spec.n_eval_episodes,
        eval_freq=max(spec.eval_freq // n_envs, 1),
        log_path=str(spec.run_dir),
        deterministic=True,
        verbose=0,
    )
    model = ALGOS[spec.algo]("MlpPolicy", env, seed=spec.seed, verbose=0, **hyperparams)
    model.learn(spec.n_timesteps, callback=callback)
    train_time = callback.train_time
    env.close()
    eval_env.close()

    info = {
        "algo": spec.algo,
        "env_id": spec.env_id,
        "seed": spec.seed,
        "n_timesteps": spec.n_timesteps,
        "num_timesteps": int(model.num_timesteps),
        "n_envs": n_envs,
        "hyperparams": {key: repr(value) for key, value in hyperparams.items()},
        "train_time_s": train_time,
        "env_steps_per_s": model.num_timesteps / max(train_time, 1e-9),
        "eval_timesteps": [int(t) for t in callback.evaluations_timesteps],
        "eval_train_times_s": callback.eval_train_times,
        "torch_threads": th.get_num_threads(),
    }
    (spec.run_dir / RUN_INFO).write_text(json.dumps(info, indent=1))
    (spec.run_dir / COMPLETE_MARKER).write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return {**info, "status": "done"}


def make_grid(
    algos: list[str],
    env_ids: list[str],
    seeds: list[int],
    n_timesteps: int | dict[str, int],
    log_dir: str,
    eval_freq: int = 5_000,
    n_eval_episodes: int = 10,
    hyperparams: dict[str, dict[str, Any]] | None = None,
) -> list[RunSpec]:
    """
    :param n_timesteps: one budget for every env, or one per env id
    :param hyperparams: per-algo overrides of the default hyperparameters
    :return: the runs of the grid, env by env, seed by seed, algo by algo
    """
    unknown = [algo for algo in algos if algo not in ALGOS]
    if unknown:
        raise ValueError(f"Unknown algos {unknown}, allowed: {sorted(ALGOS)}")
    hyperparams = hyperparams or {}
    specs = []
    for env_id in env_ids:
        budget = n_timesteps if isinstance(n_timesteps, int) else n_timesteps[env_id]
        for seed in seeds:
            for algo in algos:
                specs.append(
                    RunSpec(algo, env_id, seed, budget, log_dir, eval_freq, n_eval_episodes, dict(hyperparams.get(algo, {})))
                )
    return specs


def run_grid(specs: list[RunSpec], n_jobs: int = 1, progress_bar: bool = True) -> list[dict[str, Any]]:
    """
    Run every spec not already complete, ``n_jobs`` at a time in separate processes (in this process if 1).

    :return: one result per spec (see :func:`run_one`), in completion order
    """
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs!r}")
    todo = [spec for spec in specs if not is_complete(spec)]
    results = [run_one(spec) for spec in specs if is_complete(spec)]
    with tqdm(total=len(specs), initial=len(results), desc="runs", disable=not progress_bar) as pbar:
        if n_jobs == 1:
            for spec in todo:
                results.append(run_one(spec))
                pbar.update()
        else:
            with ProcessPoolExecutor(max_workers=n_jobs) as executor:
                futures = {executor.submit(run_one, spec): spec for spec in todo}
                for future in as_completed(futures):
                    results.append(future.result())
                    pbar.set_postfix_str(f"{futures[future].algo} {futures[future].env_id} {futures[future].seed}")
                    pbar.update()
    return results


def specs_as_dicts(specs: list[RunSpec]) -> list[dict[str, Any]]:
    """:return: the specs as plain dicts (for logging)"""
    return [asdict(spec) for spec in specs]
