"""Run a grid of algorithms x envs x seeds, each run logged in the RL Zoo's layout, in parallel and resumable."""

import argparse
import ast
import contextlib
import inspect
import json
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, configure, make_output_format
from stable_baselines3.common.vec_env import VecEnv
from tqdm.auto import tqdm

import sb3_haepo.envs  # noqa: F401  (registers the benchmark envs)
from sb3_haepo.benchmark.configs import ALGOS, INFO_KEYWORDS, env_folder_name, get_hyperparams
from sb3_haepo.common.checks import check_int
from sb3_haepo.experiments import published

COMPLETE_MARKER = "complete"
RUN_INFO = "run.json"
#: SB3's logger output of a run (one row per dump of the logger: ``train/``, ``rollout/``, ``eval/``, ``time/`` keys)
PROGRESS_LOG = "progress.csv"


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
    :param variant: name of the hyperparameter variant (``None``: the defaults); the run is then labelled
        ``{algo}-{variant}`` and logged under that label instead of ``algo``
    :param zoo_conf: run through the RL Zoo with this hyperparameter file (see :func:`zoo_setup`): the run's settings
        are the file's entry for the env (``"zoo"``: the zoo's own file for the algorithm), ``hyperparams`` override
        them as the zoo's ``-params`` does, and the run is labelled ``{algo}-zoo`` (``{algo}-zoo-{variant}``).
        ``None``: the algorithm's class with :func:`~sb3_haepo.benchmark.configs.get_hyperparams`
    """

    algo: str
    env_id: str
    seed: int
    n_timesteps: int
    log_dir: str
    eval_freq: int = 5_000
    n_eval_episodes: int = 10
    hyperparams: dict[str, Any] = field(default_factory=dict, hash=False)
    variant: str | None = None
    zoo_conf: str | None = None

    @property
    def label(self) -> str:
        """The name of the run's algorithm in the logs and the report: ``algo``, plus ``-zoo``, plus ``-{variant}``."""
        label = self.algo if self.zoo_conf is None else f"{self.algo}-zoo"
        return label if self.variant is None else f"{label}-{self.variant}"

    @property
    def run_dir(self) -> Path:
        return Path(self.log_dir) / self.label / f"{env_folder_name(self.env_id)}_{self.seed}"


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
    the env's info keys), ``progress.csv`` (SB3's logger as CSV, one row per dump: the algorithm's ``train/``
    diagnostics of each update, e.g. HAEPO's weight entropy and policy entropy, in the first row after it, and the
    evaluations' ``eval/`` rows; logging draws no random numbers, so the run is the same without it), ``run.json``
    (hyperparameters, training wall-clock time, env steps per second, training time at each evaluation, the CPU
    kernels of ``published.numeric_note``) and the marker ``complete``, last.

    :return: the contents of ``run.json`` plus ``"status"``: ``"done"`` or ``"skipped"``
    """
    if is_complete(spec):
        return {**json.loads((spec.run_dir / RUN_INFO).read_text()), "status": "skipped"}
    if spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    spec.run_dir.mkdir(parents=True)
    # One thread per run (the runs are the parallelism), on the CPU kernels of the published reports
    published.pin_numerics()

    if spec.zoo_conf is None:
        model, eval_env, recorded = _package_setup(spec)
    else:
        model, eval_env, recorded = zoo_setup(spec)
    model.set_logger(progress_logger(spec, model.tensorboard_log))
    n_envs = model.n_envs
    callback = TimedEvalCallback(
        eval_env,
        n_eval_episodes=spec.n_eval_episodes,
        eval_freq=max(spec.eval_freq // n_envs, 1),
        log_path=str(spec.run_dir),
        deterministic=True,
        verbose=0,
    )
    model.learn(spec.n_timesteps, callback=callback)
    train_time = callback.train_time
    # On-policy algorithms dump before each update: the last update's train/ values are pending unless an evaluation
    # dumped them since
    if any(key.startswith("train/") for key in model.logger.name_to_value):
        model.logger.record("time/total_timesteps", model.num_timesteps)
        model.logger.dump(model.num_timesteps)
    model.logger.close()
    model.get_env().close()  # type: ignore[union-attr]
    eval_env.close()

    info = {
        "algo": spec.algo,
        "label": spec.label,
        "variant": spec.variant,
        "env_id": spec.env_id,
        "seed": spec.seed,
        "n_timesteps": spec.n_timesteps,
        "num_timesteps": int(model.num_timesteps),
        "n_envs": n_envs,
        "zoo_conf": spec.zoo_conf,
        "hyperparams": recorded,
        "train_time_s": train_time,
        "env_steps_per_s": model.num_timesteps / max(train_time, 1e-9),
        "eval_timesteps": [int(t) for t in callback.evaluations_timesteps],
        "eval_train_times_s": callback.eval_train_times,
        "torch_threads": th.get_num_threads(),
        "numerics": published.numeric_note(),
    }
    (spec.run_dir / RUN_INFO).write_text(json.dumps(info, indent=1))
    (spec.run_dir / COMPLETE_MARKER).write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    return {**info, "status": "done"}


def progress_logger(spec: RunSpec, tensorboard_log: str | None) -> Logger:
    """
    SB3's logger for a run: CSV in the run's folder (``progress.csv``), and TensorBoard where the model was given a
    ``tensorboard_log`` (a custom logger replaces the one ``learn()`` would configure for it), in
    ``{tensorboard_log}/{label}_{env}_{seed}``.
    """
    logger = configure(str(spec.run_dir), ["csv"])
    if tensorboard_log is not None:
        run_name = f"{spec.label}_{env_folder_name(spec.env_id)}_{spec.seed}"
        logger.output_formats.append(make_output_format("tensorboard", str(Path(tensorboard_log) / run_name)))
    return logger


def _package_setup(spec: RunSpec) -> tuple[BaseAlgorithm, VecEnv, dict[str, str]]:
    """
    The model and evaluation env of a run without the zoo: the algorithm's class with
    :func:`~sb3_haepo.benchmark.configs.get_hyperparams` and the spec's overrides.

    :return: the model (its env logs to the run's folder), the evaluation env, the hyperparameters as recorded
    """
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
    model = ALGOS[spec.algo]("MlpPolicy", env, seed=spec.seed, verbose=0, **hyperparams)
    return model, eval_env, {key: repr(value) for key, value in hyperparams.items()}


def zoo_conf_path(algo: str, zoo_conf: str) -> str:
    """
    :param algo: a zoo algorithm (``ppo``, ``ars``, ``haepo``, ...)
    :param zoo_conf: a yml path, or ``"zoo"`` for the zoo's own file of the algorithm (HAEPO: the bundled
        ``sb3_haepo/hyperparams/haepo.yml``, which ``haepo-zoo`` uses by default)
    :return: the path of the hyperparameter file
    """
    if zoo_conf != "zoo":
        if not Path(zoo_conf).is_file():
            raise ValueError(f"zoo_conf {zoo_conf!r} for {algo!r} is not a file; give a yml path or 'zoo'")
        return zoo_conf
    if algo == "haepo":
        from sb3_haepo.zoo import DEFAULT_CONF_FILE

        return DEFAULT_CONF_FILE
    import rl_zoo3

    return str(Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml")


def zoo_setup(spec: RunSpec) -> tuple[BaseAlgorithm, VecEnv, dict[str, str]]:
    """
    The model and evaluation env of a run through the RL Zoo: ``rl_zoo3``'s ``ExperimentManager`` reads the file's
    entry for the env and builds the envs (``n_envs``, ``normalize``, wrappers) and the model (policy,
    ``policy_kwargs``, ``lin_`` schedules) exactly as ``haepo-zoo train --algo ALGO -conf FILE -params ...`` does,
    with the spec's budget and seed. The zoo's own evaluation is off: the runner evaluates (deterministically, on
    the zoo's evaluation env: same seed, observation normalisation synchronised, rewards not normalised).
    Its set-up messages go to ``zoo_setup.txt`` in the run's folder.

    :return: the model (its env logs to the run's folder), the evaluation env, the zoo's hyperparameters of the
        run (the file's entry with the overrides) as recorded
    :raises ImportError: without the zoo extras
    """
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_haepo.zoo import register

    register()
    conf = zoo_conf_path(spec.algo, str(spec.zoo_conf))
    args = argparse.Namespace(algo=spec.algo, env=spec.env_id, conf_file=conf, seed=spec.seed, n_timesteps=spec.n_timesteps)
    manager = ExperimentManager(
        args,
        spec.algo,
        spec.env_id,
        str(spec.run_dir.parent),
        n_timesteps=spec.n_timesteps,
        eval_freq=0,
        seed=spec.seed,
        config=conf,
        hyperparams=dict(spec.hyperparams),
        verbose=0,
    )
    # Log in the runner's layout (the zoo would pick the next free run id)
    manager.save_path = str(spec.run_dir)
    manager.params_path = str(spec.run_dir / manager.env_name)
    with open(spec.run_dir / "zoo_setup.txt", "w") as log, contextlib.redirect_stdout(log):
        setup = manager.setup_experiment()
        assert setup is not None  # None only when optimising
        model, saved_hyperparams = setup
        if spec.algo == "ars" and manager.n_envs > 1:
            raise ValueError(f"ARS with n_envs={manager.n_envs} (asynchronous evaluation) is not supported by the runner")
        eval_env = manager.create_envs(1, eval_env=True)
    return model, eval_env, {key: repr(value) for key, value in saved_hyperparams.items()}


VARIANT_NAME = re.compile(r"^[A-Za-z0-9_.+]+$")
# A comma followed by ``key=`` separates two assignments; commas inside values (``net_arch=[64,64]``) do not
_ASSIGNMENT_SEPARATOR = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")
_BARE_WORD = re.compile(r"^[A-Za-z_][\w.\-]*$")


def parse_value(text: str) -> Any:
    """
    Parse one hyperparameter value safely: a Python literal (:func:`ast.literal_eval`: numbers, strings, booleans,
    ``None``, lists, tuples, dicts), else a bare word (``sum``, ``zscore``) as a string. Nothing is executed.

    :param text: e.g. ``0.01``, ``16``, ``'sum'``, ``sum``, ``[64, 64]``, ``{'net_arch': [32]}``
    :return: the value
    """
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if _BARE_WORD.match(text):
            return text
        raise ValueError(f"Cannot parse the value {text!r}: not a Python literal nor a bare word") from None


def parse_hyperparams(text: str) -> dict[str, Any]:
    """
    :param text: ``key=value,key=value`` (values as in :func:`parse_value`), may be empty
    :return: the hyperparameters, in order
    """
    hyperparams: dict[str, Any] = {}
    if not text.strip():
        return hyperparams
    for assignment in _ASSIGNMENT_SEPARATOR.split(text):
        key, sep, value = assignment.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"Expected key=value, got {assignment!r} in {text!r}")
        if key in hyperparams:
            raise ValueError(f"Hyperparameter {key!r} given twice in {text!r}")
        try:
            hyperparams[key] = parse_value(value)
        except ValueError as error:
            raise ValueError(f"Hyperparameter {key!r}: {error}") from None
    return hyperparams


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """
    Parse a command-line variant ``NAME:key=value,key=value``.

    :param text: e.g. ``beta0:weight_ent_coef=0`` or ``m32:n_episodes=32``
    :return: the name and the hyperparameters
    """
    name, sep, assignments = text.partition(":")
    name = name.strip()
    if not sep:
        raise ValueError(f"Expected NAME:key=value,..., got {text!r}")
    if not VARIANT_NAME.match(name):
        raise ValueError(f"Invalid variant name {name!r}: use letters, digits and _ . + only")
    return name, parse_hyperparams(assignments)


# Keys of a zoo yml entry that are not constructor arguments and that a run may override
ZOO_KEYS = frozenset({"n_envs", "normalize", "policy", "policy_kwargs", "env_wrapper", "frame_stack"})


def zoo_algo_class(algo: str) -> type[BaseAlgorithm]:
    """
    :param algo: a key of the zoo's ``ALGOS`` (HAEPO registered)
    :return: its class
    :raises ValueError: for an unknown algorithm; ImportError without the zoo extras
    """
    from rl_zoo3.utils import ALGOS as ZOO_ALGOS

    from sb3_haepo.zoo import register

    register()
    if algo not in ZOO_ALGOS:
        raise ValueError(f"Unknown zoo algo {algo!r}, allowed: {sorted(ZOO_ALGOS)}")
    return ZOO_ALGOS[algo]


def parse_zoo_algo(text: str) -> tuple[str, str]:
    """
    Parse a command-line zoo algorithm ``ALGO`` or ``ALGO=FILE``.

    :param text: e.g. ``ars`` or ``ppo=hyperparams/ppo.yml``
    :return: the algorithm and its hyperparameter file (``"zoo"``: the zoo's own)
    """
    algo, sep, conf = (part.strip() for part in text.partition("="))
    if not algo or (sep and not conf):
        raise ValueError(f"Expected ALGO or ALGO=FILE, got {text!r}")
    return algo, conf if sep else "zoo"


def check_hyperparams(algo: str, hyperparams: dict[str, Any], context: str = "", zoo: bool = False) -> None:
    """
    Raise a :class:`ValueError` naming the key and the constructor if a hyperparameter is not an argument of the
    algorithm's constructor (``n_envs``, the number of training envs, is also allowed; through the zoo, also the
    yml keys of :data:`ZOO_KEYS`).

    :param algo: a key of :data:`~sb3_haepo.benchmark.configs.ALGOS` (with ``zoo``: of the zoo's algorithms)
    :param context: appended to the error message (e.g. the variant's name)
    :param zoo: the run goes through the zoo
    """
    algo_class = zoo_algo_class(algo) if zoo else ALGOS[algo]
    allowed = set(inspect.signature(algo_class.__init__).parameters) - {"self", "policy", "env", "_init_setup_model"}
    allowed |= ZOO_KEYS if zoo else {"n_envs"}
    for key in hyperparams:
        if key not in allowed:
            raise ValueError(
                f"Unknown hyperparameter {key!r} for {algo_class.__name__}.__init__ "
                f"({algo_class.__module__}){context}; allowed: {sorted(allowed)}"
            )


def make_grid(
    algos: list[str],
    env_ids: list[str],
    seeds: list[int],
    n_timesteps: int | dict[str, int],
    log_dir: str,
    eval_freq: int = 5_000,
    n_eval_episodes: int = 10,
    hyperparams: dict[str, dict[str, Any]] | None = None,
    variants: dict[str, dict[str, Any]] | None = None,
    include_defaults: bool = True,
    zoo_algos: dict[str, str] | None = None,
) -> list[RunSpec]:
    """
    :param algos: keys of :data:`~sb3_haepo.benchmark.configs.ALGOS`, run with the package's settings
    :param n_timesteps: one budget for every env, or one per env id
    :param hyperparams: per-algo overrides of the default hyperparameters
    :param variants: named hyperparameter variants, applied to every algo on top of ``hyperparams``: variant
        ``NAME`` of algo ``ALGO`` is labelled ``ALGO-NAME`` and logged in ``{log_dir}/ALGO-NAME/``
    :param include_defaults: also run each algo without variant (label ``ALGO``)
    :param zoo_algos: algorithms run through the RL Zoo, each with its hyperparameter file (``"zoo"``: the zoo's
        own), labelled ``ALGO-zoo``; ``hyperparams`` and ``variants`` apply to them too (as the zoo's ``-params``)
    :return: the runs of the grid, env by env, seed by seed, algo by algo, variant by variant
    """
    unknown = [algo for algo in algos if algo not in ALGOS]
    if unknown:
        raise ValueError(f"Unknown algos {unknown}, allowed: {sorted(ALGOS)}")
    hyperparams = hyperparams or {}
    variants = variants or {}
    zoo_algos = zoo_algos or {}
    for name in variants:
        if not VARIANT_NAME.match(name):
            raise ValueError(f"Invalid variant name {name!r}: use letters, digits and _ . + only")
    if not include_defaults and not variants:
        raise ValueError("Nothing to run: include_defaults=False and no variant")
    if not algos and not zoo_algos:
        raise ValueError("Nothing to run: no algo")
    configurations: list[tuple[str, str | None, dict[str, Any], str | None]] = []
    runs = [(algo, None) for algo in algos] + [(algo, zoo_conf_path(algo, conf)) for algo, conf in zoo_algos.items()]
    for algo, conf in runs:
        zoo = conf is not None
        base = dict(hyperparams.get(algo, {}))
        check_hyperparams(algo, base, zoo=zoo)
        if include_defaults:
            configurations.append((algo, None, base, conf))
        for name, overrides in variants.items():
            check_hyperparams(algo, overrides, f" (variant {name!r})", zoo=zoo)
            configurations.append((algo, name, {**base, **overrides}, conf))
    specs = []
    for env_id in env_ids:
        budget = n_timesteps if isinstance(n_timesteps, int) else n_timesteps[env_id]
        for seed in seeds:
            for algo, variant, overrides, conf in configurations:
                specs.append(
                    RunSpec(algo, env_id, seed, budget, log_dir, eval_freq, n_eval_episodes, dict(overrides), variant, conf)
                )
    return specs


def run_grid(specs: list[RunSpec], n_jobs: int = 1, progress_bar: bool = True) -> list[dict[str, Any]]:
    """
    Run every spec not already complete, ``n_jobs`` at a time in separate processes (in this process if 1).

    :return: one result per spec (see :func:`run_one`), in completion order
    """
    check_int("n_jobs", n_jobs, 1)
    # Before any torch operation here, so that forked workers inherit the pinned kernels (workers started fresh, as
    # on Python 3.14, pin them in run_one)
    published.pin_numerics()
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
                    pbar.set_postfix_str(f"{futures[future].label} {futures[future].env_id} {futures[future].seed}")
                    pbar.update()
    return results


def specs_as_dicts(specs: list[RunSpec]) -> list[dict[str, Any]]:
    """:return: the specs as plain dicts (for logging)"""
    return [asdict(spec) for spec in specs]
