"""
RL Baselines3 Zoo integration for HAEPO.

The zoo (``rl_zoo3``) has no plug-in mechanism: its algorithm registry ``rl_zoo3.utils.ALGOS`` and its Optuna tables
``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER`` are plain dicts that ``train``,
``enjoy``, ``exp_manager`` and ``record_video`` import by reference. :func:`register` adds HAEPO to them in place, and
:func:`main` is the ``rl_zoo3`` command line with HAEPO registered:

.. code-block:: bash

    python -m sb3_haepo.zoo train --algo haepo --env CartPole-v1 --eval-freq 10000
    python -m sb3_haepo.zoo train --algo ppo --env CartPole-v1
    python -m sb3_haepo.zoo enjoy --algo haepo --env CartPole-v1 -f logs --exp-id 0 --no-render

All zoo sub-commands are available: ``train``, ``enjoy``, ``plot_train``, ``plot_from_file`` and ``all_plots``, plus
``benchmark`` (``python -m rl_zoo3.benchmark`` with HAEPO registered, see :func:`run_benchmark`).
For ``--algo haepo`` without ``-conf/--conf-file``, the hyperparameters bundled with the package
(``sb3_haepo/hyperparams/haepo.yml``) are used. Every other algorithm uses the zoo's own files, as with ``rl_zoo3``.

This module imports without the zoo extras; :func:`register` and :func:`main` raise an ``ImportError`` naming
``pip install "sb3_haepo[zoo]"`` when one is missing, or when an option needs a package that is not installed
(``train -tb`` needs tensorboard, ``train -P`` tqdm and rich, ``plot_from_file -r`` rliable).

On top of the zoo's command line, :func:`main`:

- exits with status 2 and a usage message for a missing or unknown sub-command;
- stops ``train --storage ... --study-name ... --trial-id N`` with a clear error (status 2) when the study or trial
  ``N`` does not exist (the zoo itself fails with an ``IndexError``);
- adds ``train -optimize --runs-per-trial K``: each Optuna trial trains ``K`` models and is scored by the mean of
  their last evaluations (see :func:`repeat_trial_runs`);
- shows the error that stopped a ``train -P`` run rather than the progress bar's ``AttributeError`` it triggers;
- makes ``plot_from_file -r -o FILE`` save the rliable figures too, next to ``FILE`` (see
  :func:`rliable_figure_paths`): the zoo's ``-o`` saves only its bar plot of the last evaluations, which it titles
  "PyBullet envs" (retitled here).
"""

import contextlib
import copy
import importlib
import os
import runpy
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from sb3_haepo.common.checks import check_int
from sb3_haepo.haepo import HAEPO

if TYPE_CHECKING:  # pragma: no cover
    import optuna

ALGO_NAME = "haepo"
# Folder holding the hyperparameter files shipped with the package (package data)
HYPERPARAMS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hyperparams")
DEFAULT_CONF_FILE = os.path.join(HYPERPARAMS_DIR, "haepo.yml")
# Modules that ``rl_zoo3`` sub-commands import (``rl_zoo3.cli`` imports enjoy and the plots at import time),
# mapped to the name of the package that provides them
ZOO_REQUIREMENTS = {
    "rl_zoo3": "rl_zoo3",
    "optuna": "optuna",
    "yaml": "pyyaml",
    "requests": "requests",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "seaborn": "seaborn",
    "scipy": "scipy",
    "pytablewriter": "pytablewriter",
}
INSTALL_HINT = 'pip install "sb3_haepo[zoo]" (from a clone of the repository: pip install -e ".[zoo]")'
SUB_COMMANDS = ("train", "enjoy", "plot_train", "plot_from_file", "all_plots", "benchmark")
PROG = "haepo-zoo"
USAGE = f"usage: {PROG} {{{','.join(SUB_COMMANDS)}}} [options]  (or: python -m sb3_haepo.zoo ...)"
# Options that need a package beyond the zoo's own imports: (sub-command, spellings, shortest accepted abbreviation
# of the long spelling, modules to import, package names for the error message)
OPTION_REQUIREMENTS: tuple[tuple[str, tuple[str, str], int, tuple[str, ...], str], ...] = (
    ("train", ("-tb", "--tensorboard-log"), len("--te"), ("tensorboard",), "tensorboard"),
    ("train", ("-P", "--progress"), len("--pro"), ("tqdm", "rich"), "tqdm and rich"),
    ("plot_from_file", ("-r", "--rliable"), len("--r"), ("rliable",), "rliable"),
)
# Window titles the zoo's plot_from_file gives to its rliable figures, mapped to the suffix of the file they are
# saved to with -o
RLIABLE_FIGURES = {
    "Rliable metrics": "rliable",
    "Performance profiles": "performance_profiles",
    "Probability of Improvement": "probability_of_improvement",
    "IQM Normalized Score - Sample Efficiency Curve": "iqm",
}
# The zoo's title of the bar plot that plot_from_file -o saves (a leftover of its PyBullet study), and ours
ZOO_BAR_PLOT_TITLE = "PyBullet envs"
BAR_PLOT_TITLE = "Score of the last evaluation"
# haepo-zoo's own train option: runs per Optuna trial (see repeat_trial_runs), and the zoo's spellings of -optimize
RUNS_PER_TRIAL_OPTION = "--runs-per-trial"
OPTIMIZE_SPELLINGS = ("-optimize", "--optimize-hyperparameters")
# Shortest abbreviation of --optimize-hyperparameters that argparse accepts (--optimiz is also --optimization-log-path)
OPTIMIZE_MIN_PREFIX = len("--optimize")
# Offset between the env seeds of a trial's runs (the zoo seeds env i of a run with its seed + i): keeps a worker's
# later runs apart from the first runs of workers whose --seed differs by a few, the usual way to start workers
RUN_SEED_STRIDE = 1000

NET_ARCH = {
    # The value network is left empty (HAEPO's time baseline reads no critic); with baseline="value" the converter
    # gives it the actor's MLP
    "tiny": dict(pi=[64], vf=[]),
    "small": dict(pi=[64, 64], vf=[]),
    "medium": dict(pi=[256, 256], vf=[]),
}
ACTIVATION_FN: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def check_zoo_extras() -> None:
    """
    Check that the packages needed by the RL Zoo integration are importable.

    :raises ImportError: naming the missing packages and the ``pip install`` command to run
    """
    missing = []
    for module, package in ZOO_REQUIREMENTS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ImportError(
            f"The RL Zoo integration of sb3_haepo needs the zoo extras, missing: {', '.join(missing)}. "
            f"Install them with: {INSTALL_HINT}"
        )


class ZooUsageError(Exception):
    """A command line error found before the zoo runs: :func:`main` prints it and exits with status 2."""


def _uses_option(args: Sequence[str], spellings: Sequence[str], min_prefix: int) -> bool:
    """
    Whether an option is on the command line, spelled in full, as ``--long=value``, or as an abbreviation of the long
    spelling of at least ``min_prefix`` characters (argparse accepts unambiguous prefixes).

    :param args: the command line arguments (after the sub-command)
    :param spellings: the short and long spellings of the option
    :param min_prefix: the length of the shortest unambiguous prefix of the long spelling
    :return: whether the option is used
    """
    long_name = spellings[-1]
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in spellings:
            return True
        if name.startswith("--") and len(name) >= min_prefix and long_name.startswith(name):
            return True
    return False


def check_option_requirements(command: str, args: Sequence[str]) -> None:
    """
    Check that the packages needed by the options of a sub-command are importable: ``train -tb`` needs tensorboard
    (without it, SB3 fails inside ``learn()``), ``train -P`` needs tqdm and rich, ``plot_from_file -r`` needs rliable.

    :param command: the sub-command
    :param args: its arguments
    :raises ImportError: naming the option, the missing package and the ``pip install`` command to run
    """
    for sub_command, spellings, min_prefix, modules, packages in OPTION_REQUIREMENTS:
        if sub_command != command or not _uses_option(args, spellings, min_prefix):
            continue
        missing = []
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
        if missing:
            raise ImportError(
                f"{PROG} {command} {'/'.join(spellings)} needs {packages}, missing: {', '.join(missing)}. "
                f"Install them with: {INSTALL_HINT}"
            )


def _format_ids(ids: Sequence[int]) -> str:
    """Format sorted integers as ranges: ``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    parts = []
    start = previous = None
    for value in [*ids, None]:
        if value is not None and previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = value
    return ", ".join(parts)


def check_trial_id(args: Sequence[str]) -> None:
    """
    For ``train --storage URL --study-name NAME --trial-id N``, check that the study and its trial ``N`` exist (the
    zoo fails with a bare ``IndexError``, or silently uses trial ``N - len(trials)`` for a negative ``N``). Warn that
    the zoo ignores ``--trial-id 0``.

    :param args: the arguments of the ``train`` sub-command
    :raises ZooUsageError: naming the study or the trial, and what the storage holds
    """
    trial_id_arg = _option_value(args, ["--trial-id"])
    storage = _option_value(args, ["--storage"])
    study_name = _option_value(args, ["--study-name"])
    if trial_id_arg is None or storage is None or study_name is None:
        return
    try:
        trial_id = int(trial_id_arg)
    except ValueError:
        return  # the zoo's parser reports it
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage=storage)
        raise ZooUsageError(
            f"--study-name {study_name}: no such study in {storage} (its studies: {', '.join(names) or 'none'})"
        ) from None
    numbers = sorted(trial.number for trial in study.trials)
    if trial_id not in numbers:
        raise ZooUsageError(
            f"--trial-id {trial_id}: study {study_name!r} in {storage} has no trial {trial_id} "
            f"(its trials: {_format_ids(numbers) or 'none'})"
        )
    if trial_id == 0:
        print(
            f"{PROG}: warning: rl_zoo3 ignores --trial-id 0 (it tests the id for truth) and trains with the yml entry "
            "alone; copy trial 0's parameters to -params or to your yml instead",
            file=sys.stderr,
        )


def pop_runs_per_trial(args: Sequence[str]) -> tuple[int, list[str]]:
    """
    Take ``--runs-per-trial K`` (or ``--runs-per-trial=K``) out of ``train`` arguments: the zoo's parser does not know
    it (see :func:`repeat_trial_runs`).

    :param args: the arguments of the ``train`` sub-command
    :return: ``K`` (1 when the option is absent) and the arguments without the option
    :raises ZooUsageError: when ``K`` is missing or not an integer of at least 1, or the option is given without
        ``-optimize`` (only a search runs trials; spelled ``-optimize``, ``--optimize-hyperparameters`` or an
        abbreviation of the long spelling down to ``--optimize``)
    """
    value, rest, dangling = _split_option(args, [RUNS_PER_TRIAL_OPTION])
    if dangling:
        raise ZooUsageError(f"{RUNS_PER_TRIAL_OPTION} needs a value: the number of runs per trial, 1 or more")
    if value is None:
        return 1, rest
    n_runs = int(value) if value.isascii() and value.isdigit() else 0
    if n_runs < 1:
        raise ZooUsageError(f"{RUNS_PER_TRIAL_OPTION} {value!r}: the number of runs per trial must be an integer, 1 or more")
    if not _uses_option(rest, OPTIMIZE_SPELLINGS, OPTIMIZE_MIN_PREFIX):
        raise ZooUsageError(
            f"{RUNS_PER_TRIAL_OPTION} {value!r}: needs -optimize (--optimize-hyperparameters), which runs the trials"
        )
    return n_runs, rest


class _RepeatedRunTrial:
    """
    An Optuna trial as the second and later runs of a trial see it (:func:`repeat_trial_runs`): its parameters and
    attributes are the trial's, so the sampler suggests the same values again; its evaluations are not reported and
    never prune (the trial's intermediate values and the pruner's decision are the first run's).
    """

    def __init__(self, trial: "optuna.Trial") -> None:
        """:param trial: the trial whose run this is"""
        self._trial = trial

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def report(self, value: float, step: int) -> None:
        """Do not report: the trial's intermediate values are its first run's."""

    def should_prune(self) -> bool:
        """Never prune a later run: the first run passed the pruner."""
        return False


def repeat_trial_runs(
    objective: Callable[[Any, "optuna.Trial"], float], n_runs: int
) -> Callable[[Any, "optuna.Trial"], float]:
    """
    Wrap the zoo's ``ExperimentManager.objective`` so that a trial trains ``n_runs`` models with its parameters, one
    after another, and is scored by the mean of their last evaluations. One run's score varies so much from seed to seed
    that the best single-run trials of a study often fail on new seeds (docs/LEARNING.md entries 33 and 34).

    Run ``k`` (from 0) is made by a shallow copy of the manager whose seed (``--seed``) is raised by
    ``k * RUN_SEED_STRIDE``, which seeds its training and evaluation envs; its model starts from the random state the
    earlier runs left (the zoo gives a trial's model ``seed=None``). The manager itself is not changed, so trials in
    threads (``--n-jobs`` above 1) do not see each other's seeds. With ``--optimization-log-path DIR``, run ``k >= 1``
    writes its evaluations and best model under ``DIR/run_k/trial_N`` (run 0 under ``DIR/trial_N``, as the zoo does).
    The first run reports its evaluations to the trial, so the pruner decides on them; later runs report nothing
    and are not pruned, but a trial whose later run fails (the zoo prunes on a ``ValueError``) ends as pruned. The
    trial's user attribute ``run_values`` lists the score of each finished run.

    :param objective: the zoo's objective (``ExperimentManager.objective``, unbound)
    :param n_runs: runs per trial, 1 or more
    :return: the wrapped objective
    :raises ValueError: unless ``n_runs`` is an integer >= 1
    """
    check_int("n_runs", n_runs, 1, why="runs per trial")

    def wrapped(manager: Any, trial: "optuna.Trial") -> float:
        values: list[float] = []
        for run in range(n_runs):
            run_manager = copy.copy(manager)
            run_manager.seed = manager.seed + run * RUN_SEED_STRIDE
            if run > 0 and manager.optimization_log_path is not None:
                run_manager.optimization_log_path = os.path.join(manager.optimization_log_path, f"run_{run}")
            run_trial: Any = trial if run == 0 else _RepeatedRunTrial(trial)
            values.append(float(objective(run_manager, run_trial)))
            trial.set_user_attr("run_values", list(values))
        return sum(values) / n_runs

    return wrapped


@contextlib.contextmanager
def _runs_per_trial(n_runs: int) -> Iterator[None]:
    """While the zoo's ``train`` runs: each Optuna trial makes ``n_runs`` runs (:func:`repeat_trial_runs`)."""
    if n_runs == 1:
        yield
        return
    import rl_zoo3.exp_manager as zoo_exp_manager

    manager = zoo_exp_manager.ExperimentManager
    original = manager.objective
    manager.objective = repeat_trial_runs(original, n_runs)  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        manager.objective = original  # type: ignore[method-assign]


def rliable_figure_paths(output: str) -> dict[str, str]:
    """
    The files where ``plot_from_file -r -o FILE`` saves the rliable figures, next to ``FILE`` (same extension):
    ``FILE_rliable`` (median, IQM, mean and optimality gap), ``FILE_performance_profiles``, ``FILE_iqm``
    (with ``-iqm``) and ``FILE_probability_of_improvement`` (with ``-vs``).

    :param output: the ``-o`` argument
    :return: the path of each figure, by the zoo's window title
    """
    root, ext = os.path.splitext(output)
    return {title: f"{root}_{suffix}{ext}" for title, suffix in RLIABLE_FIGURES.items()}


@contextlib.contextmanager
def _plot_from_file_outputs(args: Sequence[str]) -> Iterator[None]:
    """
    While the zoo's ``plot_from_file`` runs with ``-o FILE``: retitle its bar plot (the figure ``-o`` saves) and,
    with ``-r``, save the rliable figures to :func:`rliable_figure_paths` when the zoo shows them.

    :param args: the arguments of the ``plot_from_file`` sub-command
    """
    output = _option_value(args, ["-o", "--output"])
    if output is None:
        yield
        return
    import matplotlib.pyplot as plt
    from matplotlib._pylab_helpers import Gcf

    output_format = _option_value(args, ["--format"]) or "svg"
    paths = rliable_figure_paths(output)
    original_show, original_savefig = plt.show, plt.savefig
    saved: set[str] = set()

    def show(*show_args: Any, **kwargs: Any) -> Any:
        for manager in Gcf.get_all_fig_managers():
            title = manager.get_window_title()
            if title in paths and title not in saved:
                print(f"Saving the rliable figure {title!r} to {paths[title]}")
                manager.canvas.figure.savefig(paths[title], format=output_format)
                saved.add(title)
        return original_show(*show_args, **kwargs)

    def savefig(*savefig_args: Any, **kwargs: Any) -> Any:
        for axes in plt.gcf().axes:
            if axes.get_title() == ZOO_BAR_PLOT_TITLE:
                axes.set_title(BAR_PLOT_TITLE)
        return original_savefig(*savefig_args, **kwargs)

    plt.show, plt.savefig = show, savefig  # type: ignore[assignment]
    try:
        yield
    finally:
        plt.show, plt.savefig = original_show, original_savefig  # type: ignore[assignment]


def sample_haepo_params(trial: "optuna.Trial", n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """
    Sampler for HAEPO hyperparameters, with the signature of the zoo's samplers (``rl_zoo3.hyperparams_opt``).

    The raw parameters stored in the Optuna trial are turned into HAEPO keyword arguments by
    :func:`convert_haepo_params`, which the zoo also calls to re-train from a trial
    (``--storage/--study-name/--trial-id``). ``batch_size`` is not sampled: it only bounds the memory of the
    gradient computation and does not change the gradient. Only combinations HAEPO accepts are sampled
    (``normalize_returns`` with episode credit, ``credit_weighting`` with per-step credit and the mean score,
    ``baseline`` with per-step credit and the minibatch update, ``gae_lambda`` with the value baseline), and the
    converter overrides a yml entry's values of those where the trial's credit or score would make them invalid:
    the zoo builds the trial's model outside its error handling, so a ``ValueError`` there would stop the study. The
    trial records which worker ran it (user attribute ``worker``:
    ``host:pid``), which shows how the trials of a distributed study were shared. The learning rate is constant or
    decays linearly to 0 over the trial's budget (``lr_schedule``; the returned ``learning_rate`` is then the zoo's
    ``SimpleLinearSchedule``). A linear trial at a proxy budget (``-n`` below the yml's ``n_timesteps``) decays faster
    than the same entry will over the full budget, so tune schedules at the budget they will train with.

    :param trial: the Optuna trial
    :param n_actions: size of a Box action space (its initial log-std is sampled), 0 for discrete action spaces (their
        ``logit_noise_std`` is sampled)
    :param n_envs: number of environments (unused, HAEPO's group size is a number of episodes)
    :param additional_args: extra arguments of the zoo (HER settings, unused)
    :return: the keyword arguments for HAEPO
    """
    credit = trial.suggest_categorical("credit", ["reward_to_go", "episode"])
    sampled_params: dict[str, Any] = {
        "credit": credit,
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        # Constant, or decaying linearly to 0 over the budget (the zoo's lin_ schedules; the CartPole entry's lin_0.003)
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "linear"]),
        "n_episodes": trial.suggest_categorical("n_episodes", [4, 8, 16, 32, 64]),
        "n_epochs": trial.suggest_categorical("n_epochs", [1, 2, 4, 8, 10, 16]),
        "minibatch_size": trial.suggest_categorical("minibatch_size", [None, 32, 64, 128, 256]),
        "clip_range": trial.suggest_categorical("clip_range", [None, 0.1, 0.2, 0.3]),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0]),
        "trajectory_score": trial.suggest_categorical("trajectory_score", ["mean", "sum"]),
        "weight_ent_coef": trial.suggest_float("weight_ent_coef", 1e-4, 0.5, log=True),
        "ref_kl_coef": trial.suggest_float("ref_kl_coef", 1e-4, 0.5, log=True),
        "ref_update_interval": trial.suggest_categorical("ref_update_interval", [1, 2, 4]),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 5.0, log=True),
        "target_kl": trial.suggest_categorical("target_kl", [None, 0.01, 0.03, 0.1]),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCH)),
        "activation_fn": trial.suggest_categorical("activation_fn", list(ACTIVATION_FN)),
    }
    if credit == "episode":
        # credit="reward_to_go" z-scores its per-step advantages: normalize_returns applies to episode credit only
        sampled_params["normalize_returns"] = trial.suggest_categorical("normalize_returns", ["zscore", "sum"])
    else:
        if sampled_params["trajectory_score"] == "mean":
            # How much each step's advantage counts (docs/METHOD.md section 16): per-step credit with the mean score only
            sampled_params["credit_weighting"] = trial.suggest_categorical("credit_weighting", ["episode", "step"])
        if sampled_params["minibatch_size"] is not None or sampled_params["clip_range"] is not None:
            # The baseline of per-step credit (docs/METHOD.md section 17): a learned value needs the minibatch update
            sampled_params["baseline"] = trial.suggest_categorical("baseline", ["time", "value"])
            if sampled_params["baseline"] == "value":
                # PPO's GAE over the value head, a grid from 0.8 to 1 (1: the Monte Carlo reward-to-go)
                sampled_params["gae_lambda"] = trial.suggest_categorical("gae_lambda", [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0])
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    if n_actions > 0:
        # Gaussian policy: initial exploration noise
        sampled_params["log_std_init"] = trial.suggest_float("log_std_init", -2.0, 1.0)
    else:
        # Discrete, MultiDiscrete, MultiBinary actions: held logit noise (docs/METHOD.md section 14), off or on
        sampled_params["logit_noise_std"] = trial.suggest_categorical("logit_noise_std", [0.0, 0.3, 1.0, 3.0])
    hyperparams = convert_haepo_params(sampled_params)
    if sampled_params["lr_schedule"] == "linear":
        # The converter's lin_ string is for the zoo's yml preprocessing; the trial's model takes the schedule itself
        from rl_zoo3.utils import SimpleLinearSchedule

        hyperparams["learning_rate"] = SimpleLinearSchedule(sampled_params["learning_rate"])
    return hyperparams


def convert_haepo_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    Convert the raw parameters of an Optuna trial (from :func:`sample_haepo_params`) to HAEPO keyword arguments.

    :param params: the trial parameters (``trial.params``)
    :return: the keyword arguments for HAEPO, with ``net_arch``, ``activation_fn`` and ``log_std_init``
        moved into ``policy_kwargs``, ``normalize_returns="zscore"`` with ``credit="reward_to_go"`` (the only
        normalisation it takes, so that a yml entry's ``normalize_returns`` cannot make the trial invalid),
        ``credit_weighting="episode"`` where the trial has a credit but did not sample the weighting (episode credit,
        the sum score, or a study made before it was sampled), so that a yml entry's ``"step"`` cannot make the trial
        invalid or change an old trial, likewise ``baseline="time"`` (with ``vf_coef=None``, ``gae_lambda=1``) where it
        did not sample the baseline (episode credit, the exact update, or an older study), a critic MLP of the actor's
        size with ``baseline="value"`` (the ``net_arch`` presets have none), and
        ``learning_rate`` as the zoo's ``"lin_<rate>"`` string when ``lr_schedule`` is ``"linear"`` (the zoo turns it
        into a schedule when it re-trains from a trial; trials of studies made before ``lr_schedule`` was sampled
        have a constant rate)
    """
    hyperparams = dict(params)
    if hyperparams.pop("lr_schedule", "constant") == "linear":
        hyperparams["learning_rate"] = f"lin_{hyperparams['learning_rate']}"
    if hyperparams.get("credit") == "reward_to_go":
        # Per-step credit z-scores its advantages: override a yml's normalize_returns (e.g. "sum" with episode credit)
        hyperparams.setdefault("normalize_returns", "zscore")
    if "credit" in hyperparams:
        hyperparams.setdefault("credit_weighting", "episode")
        hyperparams.setdefault("baseline", "time")
        if hyperparams["baseline"] == "time":
            # vf_coef and gae_lambda belong to the value baseline: override a yml entry's, which a time baseline refuses
            hyperparams["vf_coef"] = None
            hyperparams["gae_lambda"] = 1.0
    policy_kwargs: dict[str, Any] = {}
    if "net_arch" in hyperparams:
        net_arch = NET_ARCH[hyperparams.pop("net_arch")]
        if hyperparams.get("baseline") == "value":
            # A learned baseline gets a critic MLP of the actor's size (the presets have none)
            net_arch = {**net_arch, "vf": list(net_arch["pi"])}
        policy_kwargs["net_arch"] = net_arch
    if "activation_fn" in hyperparams:
        policy_kwargs["activation_fn"] = ACTIVATION_FN[hyperparams.pop("activation_fn")]
    if "log_std_init" in hyperparams:
        policy_kwargs["log_std_init"] = hyperparams.pop("log_std_init")
    if policy_kwargs:
        hyperparams["policy_kwargs"] = policy_kwargs
    return hyperparams


def register() -> None:
    """
    Register HAEPO in the RL Zoo, in place: ``rl_zoo3.utils.ALGOS["haepo"]`` and the Optuna sampler and converter
    in ``rl_zoo3.hyperparams_opt``. Call it before ``rl_zoo3.train.train()``, ``rl_zoo3.enjoy.enjoy()`` or
    ``rl_zoo3.cli.main()``. Calling it twice is harmless.

    :raises ImportError: if the zoo extras are missing
    """
    check_zoo_extras()
    import rl_zoo3.exp_manager as zoo_exp_manager
    import rl_zoo3.hyperparams_opt as zoo_hyperparams_opt
    import rl_zoo3.utils as zoo_utils

    # The zoo modules import these dicts by reference: mutate them, never rebind them
    zoo_utils.ALGOS[ALGO_NAME] = HAEPO
    zoo_hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO_NAME] = sample_haepo_params
    zoo_hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_haepo_params  # type: ignore[assignment]
    manager = zoo_exp_manager.ExperimentManager
    if not getattr(manager._preprocess_schedules, "keeps_none", False):
        manager._preprocess_schedules = staticmethod(  # type: ignore[method-assign, assignment]
            keep_none_schedules(manager._preprocess_schedules)
        )


def keep_none_schedules(preprocess: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """
    Wrap the zoo's ``ExperimentManager._preprocess_schedules`` so that a yml value ``null`` for ``clip_range`` passes
    through as None (HAEPO: no clip, the exact update with ``minibatch_size: null``) instead of being rejected. Every
    other value is preprocessed by the zoo as before (``lin_0.2`` and numbers become schedules).

    :param preprocess: the zoo's function
    :return: the wrapped function (marked ``keeps_none``, so that :func:`register` wraps it once)
    """

    def wrapped(hyperparams: dict[str, Any]) -> dict[str, Any]:
        kept = {key: None for key in ("clip_range",) if key in hyperparams and hyperparams[key] is None}
        result = preprocess({key: value for key, value in hyperparams.items() if key not in kept})
        return {**result, **kept}

    wrapped.keeps_none = True  # type: ignore[attr-defined]
    return wrapped


def _split_option(args: Sequence[str], names: Sequence[str]) -> tuple[str | None, list[str], bool]:
    """
    Find an option (``--name value`` or ``--name=value``) in command line arguments.

    :param args: the command line arguments
    :param names: the spellings of the option
    :return: the value of its last occurrence that has one (None if none has), the arguments without any occurrence,
        and whether an occurrence ends the line without a value
    """
    value, rest, dangling = None, [], False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in names and i + 1 < len(args):
            value, i = args[i + 1], i + 1
        elif arg in names:
            dangling = True
        elif any(arg.startswith(name + "=") for name in names):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest, dangling


def _option_value(args: Sequence[str], names: Sequence[str]) -> str | None:
    """
    Return the value of the last occurrence of an option (``--name value`` or ``--name=value``), None if absent.

    :param args: the command line arguments
    :param names: the spellings of the option
    :return: the value, or None
    """
    return _split_option(args, names)[0]


def add_default_conf_file(args: list[str]) -> list[str]:
    """
    Add ``--conf-file`` pointing at the bundled ``haepo.yml`` to ``train`` arguments for ``--algo haepo``, unless the
    user gave one (the zoo only looks for ``rl_zoo3/hyperparams/{algo}.yml``, which does not exist for HAEPO).

    :param args: the arguments of the ``train`` sub-command (without the sub-command)
    :return: the arguments, with the default configuration file added if needed
    """
    if _option_value(args, ["--algo"]) != ALGO_NAME:
        return args
    # argparse accepts unambiguous prefixes of long options ("--conf", "--conf-f", ...)
    has_conf = any(arg == "-conf" or arg.startswith("-conf=") or arg.startswith("--conf") for arg in args)
    if has_conf:
        return args
    return [*args, "--conf-file", DEFAULT_CONF_FILE]


def run_benchmark(args: Sequence[str]) -> None:
    """
    Run the zoo's benchmark (``python -m rl_zoo3.benchmark``) with HAEPO registered.

    The zoo's benchmark evaluates every trained agent with ``subprocess.call(["python", "enjoy.py", ...])``, which
    needs an ``enjoy.py`` in the working folder and ``python`` on the PATH. Here those calls run
    ``python -m sb3_haepo.zoo enjoy ...`` with the current interpreter instead, from any working folder.

    :param args: the arguments of the benchmark (``--log-dir``, ``--benchmark-dir``, ``-n``, ``--no-hub``, ...)
    """
    original_call = subprocess.call

    def call(popenargs: Any, *call_args: Any, **kwargs: Any) -> int:
        if isinstance(popenargs, (list, tuple)) and list(popenargs[:2]) == ["python", "enjoy.py"]:
            popenargs = [sys.executable, "-m", "sb3_haepo.zoo", "enjoy", *popenargs[2:]]
        return original_call(popenargs, *call_args, **kwargs)

    sys.argv = ["rl_zoo3.benchmark", *args]
    subprocess.call = call  # type: ignore[assignment]
    try:
        runpy.run_module("rl_zoo3.benchmark", run_name="__main__", alter_sys=True)
    finally:
        subprocess.call = original_call  # type: ignore[assignment]


def _usage_error(message: str) -> None:
    """Print the usage and an error to stderr and exit with status 2, as argparse does."""
    print(f"{USAGE}\n{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def _run_zoo_cli(args: list[str]) -> None:
    """
    Run ``rl_zoo3.cli.main()`` on ``args`` (sub-command first).

    The zoo's ``train`` runs ``learn()`` in a ``try``/``finally`` that ends the first callback: with ``-P`` that is the
    progress bar, which fails with ``AttributeError: ... no attribute 'pbar'`` when ``learn()`` stopped before it
    started, hiding the real error. Here the real error is raised instead.
    """
    import rl_zoo3.cli

    # rl_zoo3.cli.main() reads the sub-command from sys.argv[1] and each sub-command parses sys.argv[1:]
    sys.argv = [sys.argv[0], *args]
    try:
        rl_zoo3.cli.main()
    except AttributeError as error:
        context = error.__context__
        if "'ProgressBarCallback' object has no attribute 'pbar'" in str(error) and context is not None:
            raise context from None
        raise


def main(argv: Sequence[str] | None = None) -> None:
    """
    The ``rl_zoo3`` command line with HAEPO registered: ``haepo-zoo <sub-command> [options]`` (or
    ``python -m sb3_haepo.zoo``).

    :param argv: the arguments, sub-command first (default: ``sys.argv[1:]``)
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(
            f"{USAGE}\n\n"
            "The rl_zoo3 command line with HAEPO registered as --algo haepo.\n"
            "Run a sub-command with --help for its options.\n"
            f"train -optimize also takes {RUNS_PER_TRIAL_OPTION} K: each trial trains K models, scored by their mean."
        )
        return
    if not args:
        _usage_error(f"a sub-command is required (one of {', '.join(SUB_COMMANDS)})")
    if args[0] not in SUB_COMMANDS:
        _usage_error(f"invalid sub-command {args[0]!r} (choose from {', '.join(SUB_COMMANDS)})")
    register()
    command, command_args = args[0], args[1:]
    check_option_requirements(command, command_args)
    if command == "benchmark":
        run_benchmark(command_args)
        return
    n_runs = 1
    if command == "train":
        try:
            check_trial_id(command_args)
            n_runs, command_args = pop_runs_per_trial(command_args)
        except ZooUsageError as error:
            print(f"{PROG} train: error: {error}", file=sys.stderr)
            sys.exit(2)
        command_args = add_default_conf_file(command_args)
    if command == "plot_from_file":
        with _plot_from_file_outputs(command_args):
            _run_zoo_cli([command, *command_args])
        return
    with _runs_per_trial(n_runs):
        _run_zoo_cli([command, *command_args])


if __name__ == "__main__":
    main()
