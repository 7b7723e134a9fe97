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
``pip install "sb3_haepo[zoo]"`` when one is missing.
"""

import importlib
import os
import runpy
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

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

NET_ARCH = {
    # HAEPO only evaluates the actor: the value network is left empty
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


def sample_haepo_params(trial: "optuna.Trial", n_actions: int, n_envs: int, additional_args: dict[str, Any]) -> dict[str, Any]:
    """
    Sampler for HAEPO hyperparameters, with the signature of the zoo's samplers (``rl_zoo3.hyperparams_opt``).

    The raw parameters stored in the Optuna trial are turned into HAEPO keyword arguments by
    :func:`convert_haepo_params`, which the zoo also calls to re-train from a trial
    (``--storage/--study-name/--trial-id``). ``batch_size`` is not sampled: it only bounds the memory of the
    gradient computation and does not change the gradient. Invalid combinations make HAEPO raise ``ValueError``,
    which the zoo turns into a pruned trial. The trial records which worker ran it (user attribute ``worker``:
    ``host:pid``), which shows how the trials of a distributed study were shared.

    :param trial: the Optuna trial
    :param n_actions: size of a Box action space, 0 for discrete action spaces
    :param n_envs: number of environments (unused, HAEPO's group size is a number of episodes)
    :param additional_args: extra arguments of the zoo (HER settings, unused)
    :return: the keyword arguments for HAEPO
    """
    sampled_params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "n_episodes": trial.suggest_categorical("n_episodes", [4, 8, 16, 32, 64]),
        "n_epochs": trial.suggest_categorical("n_epochs", [1, 2, 4, 8, 16]),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0]),
        "normalize_returns": trial.suggest_categorical("normalize_returns", ["zscore", "sum"]),
        "trajectory_score": trial.suggest_categorical("trajectory_score", ["mean", "sum"]),
        "weight_ent_coef": trial.suggest_float("weight_ent_coef", 1e-4, 0.5, log=True),
        "ref_kl_coef": trial.suggest_float("ref_kl_coef", 1e-4, 0.5, log=True),
        "ref_update_interval": trial.suggest_categorical("ref_update_interval", [1, 2, 4]),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 5.0, log=True),
        "target_kl": trial.suggest_categorical("target_kl", [None, 0.01, 0.03, 0.1]),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCH)),
        "activation_fn": trial.suggest_categorical("activation_fn", list(ACTIVATION_FN)),
    }
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    if n_actions > 0:
        # Gaussian policy: initial exploration noise
        sampled_params["log_std_init"] = trial.suggest_float("log_std_init", -2.0, 1.0)
    return convert_haepo_params(sampled_params)


def convert_haepo_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    Convert the raw parameters of an Optuna trial (from :func:`sample_haepo_params`) to HAEPO keyword arguments.

    :param params: the trial parameters (``trial.params``)
    :return: the keyword arguments for HAEPO, with ``net_arch``, ``activation_fn`` and ``log_std_init``
        moved into ``policy_kwargs``
    """
    hyperparams = dict(params)
    policy_kwargs: dict[str, Any] = {}
    if "net_arch" in hyperparams:
        policy_kwargs["net_arch"] = NET_ARCH[hyperparams.pop("net_arch")]
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
    import rl_zoo3.hyperparams_opt as zoo_hyperparams_opt
    import rl_zoo3.utils as zoo_utils

    # The zoo modules import these dicts by reference: mutate them, never rebind them
    zoo_utils.ALGOS[ALGO_NAME] = HAEPO
    zoo_hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO_NAME] = sample_haepo_params
    zoo_hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_haepo_params  # type: ignore[assignment]


def _option_value(args: Sequence[str], names: Sequence[str]) -> str | None:
    """
    Return the value of the last occurrence of an option (``--name value`` or ``--name=value``), None if absent.

    :param args: the command line arguments
    :param names: the spellings of the option
    :return: the value, or None
    """
    value = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(name + "="):
                value = arg[len(name) + 1 :]
    return value


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


def main(argv: Sequence[str] | None = None) -> None:
    """
    The ``rl_zoo3`` command line with HAEPO registered: ``python -m sb3_haepo.zoo <sub-command> [options]``.

    :param argv: the arguments, sub-command first (default: ``sys.argv[1:]``)
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(
            "usage: python -m sb3_haepo.zoo {" + ",".join(SUB_COMMANDS) + "} [options]\n\n"
            "The rl_zoo3 command line with HAEPO registered as --algo haepo.\n"
            "Run a sub-command with --help for its options."
        )
        if not args:
            sys.exit(2)
        return
    register()
    if args[0] == "benchmark":
        run_benchmark(args[1:])
        return
    if args[0] == "train":
        args = ["train", *add_default_conf_file(args[1:])]

    import rl_zoo3.cli

    # rl_zoo3.cli.main() reads the sub-command from sys.argv[1] and each sub-command parses sys.argv[1:]
    sys.argv = [sys.argv[0], *args]
    rl_zoo3.cli.main()


if __name__ == "__main__":
    main()
