"""Tests of the RL Zoo integration (``sb3_haepo.zoo``): short real runs through the entry point, in subprocesses."""

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from stable_baselines3.common.vec_env import VecNormalize

pytest.importorskip("rl_zoo3", reason="needs the zoo extras: pip install 'sb3_haepo[zoo]'")
optuna = pytest.importorskip("optuna", reason="needs the zoo extras: pip install 'sb3_haepo[zoo]'")

from postgres_server import postgres_server  # noqa: E402
from torch import nn  # noqa: E402

import sb3_haepo.zoo as haepo_zoo  # noqa: E402
from sb3_haepo import HAEPO  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_HYPERPARAMS = Path(haepo_zoo.HYPERPARAMS_DIR)
ENV_IDS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3", "Pendulum-v1", "MountainCarContinuous-v0"]
# The MiniGrid entries (docs/RESULTS.md section 7): HAEPO untuned with the zoo's MiniGrid set-up, PPO the zoo's settings
MINIGRID_ENV_IDS = ["MiniGrid-DoorKey-5x5-v0", "MiniGrid-DoorKey-16x16-v0", "MiniGrid-KeyCorridorS6R3-v0"]
# Keep the subprocess runs small and quick
FAST_PARAMS = ["-params", "n_episodes:4", "policy_kwargs:dict(net_arch=[16])"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env["MPLBACKEND"] = "Agg"
    # `python -m rl_zoo3.benchmark` calls `python` from the PATH
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run_zoo(args: list[str], cwd: Path, timeout: int = 120) -> str:
    """Run ``python -m sb3_haepo.zoo *args`` and return its output; fail with the output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "sb3_haepo.zoo", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


def run_zoo_hiding(module: str, args: list[str], tmp_path: Path, timeout: int) -> subprocess.CompletedProcess:
    """Run ``python -m sb3_haepo.zoo *args`` in ``tmp_path`` where ``import module`` fails, as if it were not installed."""
    (tmp_path / f"{module}.py").write_text(f"raise ImportError('{module} hidden for the test')\n")
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    return subprocess.run(
        [sys.executable, "-m", "sb3_haepo.zoo", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )


def _train_args(log_folder: Path, algo: str = "haepo", n_timesteps: int = 2000) -> list[str]:
    return [
        "train",
        "--algo",
        algo,
        "--env",
        "CartPole-v1",
        "-n",
        str(n_timesteps),
        "--eval-freq",
        "250",
        "--eval-episodes",
        "2",
        "--seed",
        "0",
        "--num-threads",
        "1",
        "-f",
        str(log_folder),
    ]


@pytest.fixture(scope="module")
def trained_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    Two HAEPO CartPole runs of 2000 steps with evaluations, through the entry point (default --conf-file), seeds 0
    and 1 (``plot_from_file`` needs at least two runs per algorithm and env).
    """
    tmp_path = tmp_path_factory.mktemp("zoo")
    log_folder = tmp_path / "logs"
    run_zoo([*_train_args(log_folder), *FAST_PARAMS], cwd=tmp_path)
    run_zoo([*_train_args(log_folder), "--seed", "1", *FAST_PARAMS], cwd=tmp_path)
    return log_folder


def test_train_writes_zoo_layout(trained_logs: Path) -> None:
    run_dir = trained_logs / "haepo" / "CartPole-v1_1"
    assert (run_dir / "CartPole-v1.zip").is_file()
    assert (run_dir / "best_model.zip").is_file()
    evaluations = np.load(run_dir / "evaluations.npz")
    assert len(evaluations["timesteps"]) >= 8
    assert evaluations["results"].shape[1] == 2
    # The default configuration file was the bundled one, and the command line overrides were applied
    config = yaml.load((run_dir / "CartPole-v1" / "config.yml").read_text(), Loader=yaml.UnsafeLoader)
    assert dict(config)["n_episodes"] == 4
    args = yaml.load((run_dir / "CartPole-v1" / "args.yml").read_text(), Loader=yaml.UnsafeLoader)
    assert dict(args)["conf_file"] == haepo_zoo.DEFAULT_CONF_FILE
    model = HAEPO.load(run_dir / "CartPole-v1.zip")
    assert model.n_episodes == 4


def test_enjoy_and_continue_training(trained_logs: Path) -> None:
    cwd = trained_logs.parent
    output = run_zoo(
        [
            "enjoy",
            "--algo",
            "haepo",
            "--env",
            "CartPole-v1",
            "-f",
            str(trained_logs),
            "--exp-id",
            "1",
            "--no-render",
            "-n",
            "300",
            "--deterministic",
            "--load-best",
        ],
        cwd=cwd,
    )
    assert "Loading" in output
    # -i: continue training the saved agent, in a new run folder
    run_zoo(
        [*_train_args(trained_logs, n_timesteps=500), "-i", str(trained_logs / "haepo" / "CartPole-v1_1" / "CartPole-v1.zip")],
        cwd=cwd,
    )
    assert (trained_logs / "haepo" / "CartPole-v1_3" / "CartPole-v1.zip").is_file()


def test_all_plots_and_plot_from_file(trained_logs: Path) -> None:
    cwd = trained_logs.parent
    out = cwd / "haepo_plots"
    # learn() stops at the budget (at most n_envs - 1 steps past it), so both runs have the same evaluations; -max
    # cuts the curves at 2000 steps
    output = run_zoo(
        [
            "all_plots",
            "-a",
            "haepo",
            "-e",
            "CartPole-v1",
            "-f",
            str(trained_logs),
            "-o",
            str(out),
            "--no-display",
            "-max",
            "2000",
        ],
        cwd=cwd,
    )
    assert "CartPole-v1" in output
    assert out.with_suffix(".pkl").is_file()
    # plot_from_file saves to the -o path as given (no suffix added)
    figure = cwd / "sensitivity.png"
    run_zoo(["plot_from_file", "-i", str(out.with_suffix(".pkl")), "-o", str(figure), "--format", "png"], cwd=cwd)
    assert figure.is_file() and figure.stat().st_size > 0
    assert not list(cwd.glob("sensitivity_*"))
    # With -r, the rliable figures are saved next to the -o file too (the zoo's -o saves only its bar plot); the bar
    # plot is no longer titled "PyBullet envs". Run in a Python process that reports the titles of the figures.
    figure = cwd / "rliable.png"
    args = ["plot_from_file", "-i", str(out.with_suffix(".pkl")), "-r", "-iqm", "-o", str(figure), "--format", "png"]
    code = (
        "import sys, matplotlib.pyplot as plt, sb3_haepo.zoo as z; z.main(sys.argv[1:]); "
        "print('TITLES', [ax.get_title() for num in plt.get_fignums() for ax in plt.figure(num).axes])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    paths = haepo_zoo.rliable_figure_paths(str(figure))
    assert paths["Rliable metrics"] == str(cwd / "rliable_rliable.png")
    expected = {cwd / "rliable.png", *(Path(paths[title]) for title in ["Rliable metrics", "Performance profiles"])}
    expected.add(Path(paths["IQM Normalized Score - Sample Efficiency Curve"]))
    assert set(cwd.glob("rliable*.png")) == expected
    assert len({path.read_bytes() for path in expected}) == len(expected)
    titles = result.stdout.split("TITLES")[-1]
    assert haepo_zoo.BAR_PLOT_TITLE in titles and haepo_zoo.ZOO_BAR_PLOT_TITLE not in titles


def test_benchmark(trained_logs: Path) -> None:
    cwd = trained_logs.parent
    benchmark_dir = cwd / "benchmark"
    run_zoo(
        [
            "benchmark",
            "--log-dir",
            str(trained_logs),
            "--benchmark-dir",
            str(benchmark_dir),
            "--no-hub",
            "-n",
            "500",
            "--test-mode",
        ],
        cwd=cwd,
        timeout=180,
    )
    table = (benchmark_dir / "benchmark.md").read_text()
    assert "haepo" in table and "CartPole-v1" in table


@pytest.mark.slow
def test_benchmark_with_enjoy_shim(trained_logs: Path, tmp_path: Path) -> None:
    """The zoo's own ``python -m rl_zoo3.benchmark`` with ``scripts/enjoy.py`` copied to the working folder."""
    shutil.copy(REPO_ROOT / "scripts" / "enjoy.py", tmp_path / "enjoy.py")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_zoo3.benchmark",
            "--log-dir",
            str(trained_logs),
            "--benchmark-dir",
            str(tmp_path / "b"),
            "--no-hub",
            "-n",
            "500",
            "--test-mode",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "haepo" in (tmp_path / "b" / "benchmark.md").read_text()


def test_train_ppo(tmp_path: Path) -> None:
    """Other zoo algorithms work through the same entry point, with the zoo's own hyperparameters."""
    log_folder = tmp_path / "logs"
    run_zoo(_train_args(log_folder, algo="ppo", n_timesteps=1000), cwd=tmp_path)
    assert (log_folder / "ppo" / "CartPole-v1_1" / "evaluations.npz").is_file()


def _optimize_args(log_folder: Path, storage: str, study_name: str, n_trials: int = 2, seed: int | None = None) -> list[str]:
    return [
        "train",
        "--algo",
        "haepo",
        "--env",
        "CartPole-v1",
        "-n",
        "600",
        "-optimize",
        "--n-trials",
        str(n_trials),
        "--n-jobs",
        "1",
        "--sampler",
        "random",
        "--pruner",
        "median",
        "--n-evaluations",
        "2",
        "--n-startup-trials",
        "1",
        "--eval-episodes",
        "2",
        "--no-optim-plots",
        "--num-threads",
        "1",
        "-f",
        str(log_folder),
        "--storage",
        storage,
        "--study-name",
        study_name,
        *(["--seed", str(seed)] if seed is not None else []),
    ]


def test_optimize_then_retrain_from_trial(tmp_path: Path) -> None:
    log_folder = tmp_path / "logs"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # Seed 6: the random sampler's trial 1 draws the value baseline (with gae_lambda 0.98), the branch of the
    # converter that changes the policy's net_arch
    run_zoo(_optimize_args(log_folder, storage, "haepo-test", seed=6), cwd=tmp_path)
    study = optuna.load_study(study_name="haepo-test", storage=storage)
    assert len(study.trials) == 2
    assert list(log_folder.glob("haepo/report_CartPole-v1_2-trials-600-random-median_*.csv"))
    # Re-train with the hyperparameters of trial 1 (the zoo ignores --trial-id 0, see the RL Zoo section of the README)
    params = study.trials[1].params
    assert (params["baseline"], params["gae_lambda"]) == ("value", 0.98)
    run_zoo(
        [
            "train",
            "--algo",
            "haepo",
            "--env",
            "CartPole-v1",
            "-n",
            "300",
            "--num-threads",
            "1",
            "-f",
            str(log_folder),
            "--storage",
            storage,
            "--study-name",
            "haepo-test",
            "--trial-id",
            "1",
        ],
        cwd=tmp_path,
    )
    (config_file,) = log_folder.glob("haepo/CartPole-v1_*/CartPole-v1/config.yml")
    config = dict(yaml.load(config_file.read_text(), Loader=yaml.UnsafeLoader))
    # The trial's HAEPO arguments (normalize_returns is sampled only with credit="episode"; the converter sets the
    # z-score that per-step credit takes)
    expected = haepo_zoo.convert_haepo_params(params)
    # and the baseline, whose "value" gives the critic MLP the actor's size: the policy's net_arch is the converter's,
    # not the bare preset
    keys = ["credit", "learning_rate", "n_episodes", "n_epochs", "minibatch_size", "clip_range", "gamma"]
    for key in [*keys, "normalize_returns", "weight_ent_coef", "baseline", "gae_lambda"]:
        assert config[key] == expected[key], key
    # vf_coef: None with a time baseline; with "value" it is not sampled and HAEPO's default applies
    assert config.get("vf_coef") == expected.get("vf_coef")
    assert config["policy_kwargs"]["net_arch"] == expected["policy_kwargs"]["net_arch"]
    preset = haepo_zoo.NET_ARCH[params["net_arch"]]
    assert config["policy_kwargs"]["net_arch"]["pi"] == preset["pi"]
    assert config["policy_kwargs"]["net_arch"]["vf"] == (preset["pi"] if expected["baseline"] == "value" else preset["vf"])


def run_workers_on_one_study(tmp_path: Path, storage: str, study_name: str, n_workers: int = 2, n_trials: int = 2) -> None:
    """
    Create a study in ``storage`` (as ``optuna create-study`` does, before the workers start), run ``n_workers``
    ``--optimize`` worker processes on it at the same time, and check that each worker ran its own trials in it
    (the ``worker`` user attribute records the pid of the process that ran a trial).
    """
    optuna.create_study(study_name=study_name, storage=storage, direction="maximize")
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "sb3_haepo.zoo", *_optimize_args(tmp_path / f"logs_{i}", storage, study_name, n_trials)],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n_workers)
    ]
    outputs = [worker.communicate(timeout=240)[0] for worker in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-4000:]
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert len(study.trials) == n_workers * n_trials
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(trial.state in finished for trial in study.trials), [trial.state for trial in study.trials]
    pids = [int(trial.user_attrs["worker"].rsplit(":", 1)[1]) for trial in study.trials]
    # Each worker process ran its own trials in the shared study
    assert sorted(pids) == sorted(worker.pid for worker in workers for _ in range(n_trials))


def test_distributed_optimization_two_workers(tmp_path: Path) -> None:
    """Two worker processes share one SQLite study: both must have run trials (recorded worker pid)."""
    run_workers_on_one_study(tmp_path, f"sqlite:///{tmp_path / 'shared.db'}", "shared")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A local PostgreSQL server for the module (skipped without server binaries, except in CI where it fails)."""
    with postgres_server() as url:
        yield url


def test_distributed_optimization_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """The README's distributed tuning on a real PostgreSQL server: two workers, one study, both contribute trials."""
    run_workers_on_one_study(tmp_path, postgres_url, "shared-postgresql")


def _load_yml(name: str) -> dict[str, Any]:
    with open(PACKAGE_HYPERPARAMS / name) as file_handler:
        return yaml.load(file_handler, Loader=yaml.UnsafeLoader)


def test_yml_files() -> None:
    haepo_params = _load_yml("haepo.yml")
    ppo_params = _load_yml("ppo.yml")
    assert set(haepo_params) == {*ENV_IDS, *MINIGRID_ENV_IDS, "default"}
    assert set(ppo_params) == {*ENV_IDS, *MINIGRID_ENV_IDS, "default"}
    # The repository's hyperparams/ folder holds the same files as the package
    for name in ["haepo.yml", "ppo.yml"]:
        assert (REPO_ROOT / "hyperparams" / name).read_text() == (PACKAGE_HYPERPARAMS / name).read_text()
    # ppo.yml holds the zoo's own PPO settings
    import rl_zoo3

    with open(Path(rl_zoo3.__file__).parent / "hyperparams" / "ppo.yml") as file_handler:
        zoo_ppo = yaml.load(file_handler, Loader=yaml.UnsafeLoader)
    for env_id, params in ppo_params.items():
        if env_id in ("MiniGrid-DoorKey-16x16-v0", "MiniGrid-KeyCorridorS6R3-v0"):
            # Not in the zoo's file: the zoo's MiniGrid settings with the budget of its harder MiniGrid tasks
            assert env_id not in zoo_ppo
            assert params == {**zoo_ppo["MiniGrid-DoorKey-5x5-v0"], "n_timesteps": 1e6}
        else:
            assert params == zoo_ppo[env_id], env_id
    # HAEPO's MiniGrid entries: its defaults on the same observations as the zoo's PPO (rewards kept raw)
    for env_id in MINIGRID_ENV_IDS:
        shared = {key: ppo_params[env_id][key] for key in ("env_wrapper", "n_envs", "n_timesteps", "policy")}
        assert haepo_params[env_id] == {**shared, "normalize": "dict(norm_obs=True, norm_reward=False)"}, env_id


def _needs_box2d(env_id: str) -> None:
    if env_id.startswith("LunarLander"):
        pytest.importorskip("Box2D", reason="LunarLander needs box2d: pip install 'gymnasium[box2d]' (needs swig)")
    if env_id.startswith("MiniGrid"):
        pytest.importorskip("minigrid", reason='the MiniGrid entries need minigrid: pip install "sb3_haepo[minigrid]"')


@pytest.mark.parametrize("algo", ["haepo", "ppo"])
@pytest.mark.parametrize("env_id", ENV_IDS + MINIGRID_ENV_IDS)
def test_yml_entry_builds_model(env_id: str, algo: str, tmp_path: Path) -> None:
    """Every yml entry is read and preprocessed by the zoo and builds a model for its env (no training)."""
    _needs_box2d(env_id)
    import rl_zoo3.utils

    model = zoo_model(algo, env_id, PACKAGE_HYPERPARAMS / f"{algo}.yml", tmp_path)
    assert isinstance(model, rl_zoo3.utils.ALGOS[algo])
    _assert_env_is_and_close(model, env_id)


def zoo_model(algo: str, env_id: str, config: Path, tmp_path: Path) -> Any:
    """:return: the model the zoo builds (no training) for ``env_id`` from the yml file ``config``"""
    from rl_zoo3.exp_manager import ExperimentManager

    haepo_zoo.register()
    manager = ExperimentManager(argparse.Namespace(), algo, env_id, str(tmp_path), config=str(config), verbose=0)
    result = manager.setup_experiment()
    assert result is not None
    return result[0]


def _assert_env_is_and_close(model: Any, env_id: str) -> None:
    """The model's env is ``env_id``'s; close it."""
    env = model.get_env()
    assert env is not None
    assert env.get_attr("spec")[0].id == env_id
    env.close()


# The yml files archived with documented results (inputs of the commands in docs/RESULTS.md and docs/LEARNING.md)
ARCHIVED_YMLS = sorted((REPO_ROOT / "docs" / "results").glob("*/*.yml"))


@pytest.mark.parametrize("path", ARCHIVED_YMLS, ids=[str(path.relative_to(REPO_ROOT)) for path in ARCHIVED_YMLS])
def test_archived_yml_builds_model(path: Path, tmp_path: Path) -> None:
    """Every yml archived under docs/results is read and preprocessed by the zoo and builds a HAEPO model for each of
    its envs (no training), so that the documented commands that pass it with ``--zoo haepo=<file>`` still run."""
    with open(path) as file_handler:
        env_ids = list(yaml.load(file_handler, Loader=yaml.UnsafeLoader))
    assert env_ids, path
    for env_id in env_ids:
        _needs_box2d(env_id)
        model = zoo_model("haepo", env_id, path, tmp_path)
        assert isinstance(model, HAEPO)
        _assert_env_is_and_close(model, env_id)


def bundled_entry_model(env_id: str, tmp_path: Path) -> tuple[HAEPO, HAEPO]:
    """:return: the model the zoo builds from the bundled haepo.yml's entry for ``env_id``, and HAEPO's defaults"""
    return zoo_model("haepo", env_id, PACKAGE_HYPERPARAMS / "haepo.yml", tmp_path), HAEPO("MlpPolicy", env_id, device="cpu")


DEFAULT_NAMES = (
    "credit",
    "n_epochs",
    "minibatch_size",
    "max_minibatches",
    "gamma",
    "trajectory_score",
    "weight_ent_coef",
    "ref_kl_coef",
)
# What the 16-env entries leave at HAEPO's defaults, step limits included, and group size (Acrobot's; LunarLander's
# entry sets its own)
ENTRY_DEFAULT_NAMES = (*DEFAULT_NAMES, "n_episodes", "batch_size", "max_grad_norm", "target_kl", "ent_coef")


def test_yml_cartpole_entry_is_the_defaults_with_a_decaying_rate(tmp_path: Path) -> None:
    """
    haepo.yml's CartPole entry (docs/LEARNING.md entry 16) reaches the model as documented: 8 envs, 4 episodes per
    group, a learning rate decaying linearly from 3e-3 to 0, and HAEPO's defaults for everything else.
    """
    model, defaults = bundled_entry_model("CartPole-v1", tmp_path)
    assert (model.n_envs, model.n_episodes) == (8, 4)
    assert model.lr_schedule(1.0) == pytest.approx(0.003)
    assert model.lr_schedule(0.25) == pytest.approx(0.00075)
    for name in DEFAULT_NAMES:
        assert getattr(model, name) == getattr(defaults, name), name
    model.get_env().close()


def test_yml_lunarlander_entry_has_a_learned_baseline_with_gae_and_weights_every_step_alike_in_16_episode_groups(
    tmp_path: Path,
) -> None:
    """
    haepo.yml's LunarLander entry (docs/LEARNING.md entries 46, 58, 59 and 61) reaches the model as documented: the
    zoo PPO's 16 envs, no observation normalisation, groups of 16 episodes, every step's advantage counting the same
    (credit_weighting 'step'), the default rate 1e-3 decaying linearly to 0, a learned state-value baseline with
    SB3's 64x64 critic and PPO's vf_coef, the zoo PPO's gamma 0.999 and GAE lambda 0.98, and HAEPO's defaults for
    everything else.
    """
    env_id = "LunarLander-v3"
    _needs_box2d(env_id)
    assert _load_yml("haepo.yml")[env_id] == {
        "n_envs": 16,
        "n_timesteps": 1e6,
        "policy": "MlpPolicy",
        "n_episodes": 16,
        "credit_weighting": "step",
        "learning_rate": "lin_0.001",
        "baseline": "value",
        "gamma": 0.999,
        "gae_lambda": 0.98,
    }
    model, defaults = bundled_entry_model(env_id, tmp_path)
    assert model.n_envs == 16 and not isinstance(model.get_env(), VecNormalize)
    assert model.n_episodes == 16 and defaults.n_episodes == 8
    assert model.credit_weighting == "step" and defaults.credit_weighting == "episode"
    assert (model.baseline, model.vf_coef) == ("value", 0.5) and defaults.baseline == "time"
    assert (model.gamma, model.gae_lambda) == (0.999, 0.98) and (defaults.gamma, defaults.gae_lambda) == (0.99, 1.0)
    assert model.policy.net_arch == dict(pi=[64, 64], vf=[64, 64])
    assert model.lr_schedule(1.0) == pytest.approx(1e-3) == defaults.lr_schedule(1.0)
    assert model.lr_schedule(0.25) == pytest.approx(2.5e-4)
    assert model.clip_range(0.5) == defaults.clip_range(0.5)
    for name in set(ENTRY_DEFAULT_NAMES) - {"n_episodes", "gamma"}:
        assert getattr(model, name) == getattr(defaults, name), name
    model.get_env().close()


def test_yml_acrobot_entry_normalises_observations_with_a_decaying_rate(tmp_path: Path) -> None:
    """
    haepo.yml's Acrobot entry (docs/LEARNING.md entry 35) reaches the model as documented: the zoo PPO's 16 envs,
    observations normalised and rewards raw, the default rate 1e-3 decaying linearly to 0, and HAEPO's defaults for
    everything else.
    """
    assert _load_yml("haepo.yml")["Acrobot-v1"] == {
        "normalize": "dict(norm_obs=True, norm_reward=False)",
        "n_envs": 16,
        "n_timesteps": 1e6,
        "policy": "MlpPolicy",
        "learning_rate": "lin_0.001",
    }
    model, defaults = bundled_entry_model("Acrobot-v1", tmp_path)
    env = model.get_env()
    assert model.n_envs == 16 and isinstance(env, VecNormalize)
    assert env.norm_obs and not env.norm_reward
    assert model.lr_schedule(1.0) == pytest.approx(1e-3) == defaults.lr_schedule(1.0)
    assert model.lr_schedule(0.25) == pytest.approx(2.5e-4)
    assert model.clip_range(0.5) == defaults.clip_range(0.5)
    for name in ENTRY_DEFAULT_NAMES:
        assert getattr(model, name) == getattr(defaults, name), name
    env.close()


def test_yml_pendulum_entry_is_the_studys_trial_33(tmp_path: Path) -> None:
    """
    haepo.yml's Pendulum entry (docs/LEARNING.md entry 41) is trial 33 of the committed Optuna study on top of the
    previous entry's gSDE: the zoo builds from it the model that ``--trial-id 33`` re-trains.
    """
    storage = f"sqlite:///{REPO_ROOT / 'docs' / 'tuning' / 'haepo_Pendulum-v1_100k_2runs.db'}"
    study = optuna.load_study(study_name="haepo-pendulum-100k-r2", storage=storage)
    trial = haepo_zoo.convert_haepo_params(study.trials[33].params)
    entry = _load_yml("haepo.yml")["Pendulum-v1"]
    assert {key: entry[key] for key in ("n_envs", "use_sde", "sde_sample_freq")} == {
        "n_envs": 1,
        "use_sde": True,
        "sde_sample_freq": 4,
    }
    model, _ = bundled_entry_model("Pendulum-v1", tmp_path)
    # The schedules and the policy's kwargs are checked below
    for name in trial.keys() - {"clip_range", "learning_rate", "policy_kwargs", "vf_coef"}:
        assert getattr(model, name) == trial[name], name
    # The trial predates the baseline: the converter gives it the time baseline, which has no value loss
    assert (model.baseline, trial["vf_coef"], model.vf_coef) == ("time", None, 0.0)
    assert model.clip_range(0.5) == trial["clip_range"]
    # The trial's values, as the entry's comment gives them
    assert (model.n_episodes, model.gamma, model.target_kl) == (32, 0.98, 0.1)
    assert model.lr_schedule(0.5) == trial["learning_rate"] == pytest.approx(6.3e-4, rel=1e-3)
    assert (
        eval(entry["policy_kwargs"], {"nn": nn})
        == trial["policy_kwargs"]
        == {
            "net_arch": dict(pi=[64, 64], vf=[]),
            "activation_fn": nn.Tanh,
            "log_std_init": pytest.approx(0.54, abs=1e-3),
        }
    )
    assert model.use_sde and model.sde_sample_freq == 4 and model.n_envs == 1
    model.get_env().close()


def test_yml_adaptive_coefficients_and_frozen_reference(tmp_path: Path) -> None:
    """A yml entry can ask for adaptive beta and lam and a frozen reference (``null``): the zoo passes them through."""
    from rl_zoo3.exp_manager import ExperimentManager

    config = tmp_path / "haepo.yml"
    config.write_text(
        "CartPole-v1:\n"
        "  n_timesteps: 1000\n"
        "  policy: 'MlpPolicy'\n"
        "  weight_ent_coef: auto\n"
        "  ref_kl_coef: auto_0.05\n"
        "  target_ref_kl: 0.02\n"
        "  ref_update_interval: null\n"
    )
    haepo_zoo.register()
    exp_manager = ExperimentManager(argparse.Namespace(), "haepo", "CartPole-v1", str(tmp_path), config=str(config), verbose=0)
    result = exp_manager.setup_experiment()
    assert result is not None
    model, _ = result
    assert isinstance(model, HAEPO)
    assert model.ref_update_interval is None
    assert (model.weight_ent_coef, model.weight_ent_coef_auto) == (0.01, True)
    assert (model.ref_kl_coef, model.ref_kl_coef_auto, model.target_ref_kl) == (0.05, True, 0.02)
    env = model.get_env()
    assert env is not None
    env.close()


def test_sampler_and_converter() -> None:
    """Sampled parameters are valid HAEPO kwargs, and the converter maps the raw trial params to the same kwargs."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    schedules = set()
    baselines = set()
    for env_id, n_actions in [("CartPole-v1", 0), ("Pendulum-v1", 1)]:
        for _ in range(6):
            trial = study.ask()
            kwargs = haepo_zoo.sample_haepo_params(trial, n_actions, 1, {})
            HAEPO("MlpPolicy", env_id, **kwargs)
            expected = haepo_zoo.convert_haepo_params(trial.params)
            rate, schedule = trial.params["learning_rate"], trial.params["lr_schedule"]
            schedules.add(schedule)
            if schedule == "linear":
                # The converter writes the zoo's yml string, the sampler gives the model the schedule it stands for
                assert expected.pop("learning_rate") == f"lin_{rate}"
                learning_rate = kwargs.pop("learning_rate")
                assert learning_rate(1.0) == rate and learning_rate(0.25) == pytest.approx(rate / 4)
            else:
                assert kwargs["learning_rate"] == rate
            assert kwargs == expected
            assert ("log_std_init" in kwargs["policy_kwargs"]) == (n_actions > 0)
            assert ("logit_noise_std" in kwargs) == (n_actions == 0)
            per_step_mean = (trial.params["credit"], trial.params["trajectory_score"]) == ("reward_to_go", "mean")
            assert ("credit_weighting" in trial.params) == per_step_mean
            minibatch_update = (trial.params["minibatch_size"], trial.params["clip_range"]) != (None, None)
            assert ("baseline" in trial.params) == (trial.params["credit"] == "reward_to_go" and minibatch_update)
            assert kwargs["baseline"] == trial.params.get("baseline", "time")
            # gae_lambda is sampled with the value baseline only, and is 1 (Monte Carlo) otherwise
            assert ("gae_lambda" in trial.params) == (kwargs["baseline"] == "value")
            assert kwargs.get("gae_lambda", 1.0) == trial.params.get("gae_lambda", 1.0)
            critic = kwargs["policy_kwargs"]["net_arch"]["vf"]
            assert critic == (kwargs["policy_kwargs"]["net_arch"]["pi"] if kwargs["baseline"] == "value" else [])
            baselines.add(kwargs["baseline"])
            assert trial.user_attrs["worker"].endswith(f":{os.getpid()}")
            study.tell(trial, 0.0)
    assert schedules == {"constant", "linear"}
    assert baselines == {"time", "value"}
    # A trial of a study made before lr_schedule was sampled keeps its constant rate
    assert haepo_zoo.convert_haepo_params({"learning_rate": 0.002, "n_epochs": 4}) == {"learning_rate": 0.002, "n_epochs": 4}


@pytest.mark.parametrize("credit", ["episode", "reward_to_go"])
@pytest.mark.parametrize("score", ["mean", "sum"])
def test_trials_stay_valid_over_an_entry_with_step_weighting(credit: str, score: str) -> None:
    """
    The zoo merges a trial's parameters over the yml entry (the LunarLander entry has credit_weighting 'step'): every
    credit and score the sampler can propose still builds a model; a trial that did not sample the weighting gets the
    default, not the entry's value, and one that sampled it keeps its own.
    """
    entry = {"credit_weighting": "step", "normalize_returns": "sum"}

    def model_from(params: dict[str, Any]) -> HAEPO:
        return HAEPO("MlpPolicy", "CartPole-v1", **{**entry, **haepo_zoo.convert_haepo_params(params)})

    params = {"credit": credit, "trajectory_score": score, "learning_rate": 0.001}
    assert model_from(params).credit_weighting == "episode"
    if (credit, score) == ("reward_to_go", "mean"):
        assert model_from({**params, "credit_weighting": "step"}).credit_weighting == "step"


@pytest.mark.parametrize("credit", ["episode", "reward_to_go"])
@pytest.mark.parametrize("minibatch_size", [None, 64])
def test_trials_stay_valid_over_an_entry_with_a_value_baseline(credit: str, minibatch_size: int | None) -> None:
    """
    A yml entry with a learned baseline and its vf_coef: every credit and update the sampler can propose still builds
    a model; a trial that did not sample the baseline gets the time baseline (and no vf_coef), not the entry's
    values, and one that sampled the value baseline keeps the entry's vf_coef and gae_lambda (a trial of a study made
    before gae_lambda was sampled) or its own gae_lambda, and gets a critic MLP.
    """
    entry = {"baseline": "value", "vf_coef": 0.25, "gae_lambda": 0.9}

    def model_from(params: dict[str, Any]) -> HAEPO:
        return HAEPO("MlpPolicy", "CartPole-v1", **{**entry, **haepo_zoo.convert_haepo_params(params)})

    params = {"credit": credit, "minibatch_size": minibatch_size, "clip_range": None, "net_arch": "small"}
    model = model_from(params)
    assert (model.baseline, model.vf_coef, model.gae_lambda) == ("time", 0.0, 1.0)
    assert model.policy.net_arch == dict(pi=[64, 64], vf=[])
    if credit == "reward_to_go" and minibatch_size is not None:
        model = model_from({**params, "baseline": "value"})
        assert (model.baseline, model.vf_coef, model.gae_lambda) == ("value", 0.25, 0.9)
        assert model.policy.net_arch == dict(pi=[64, 64], vf=[64, 64])
        assert model_from({**params, "baseline": "value", "gae_lambda": 0.95}).gae_lambda == 0.95


def test_register() -> None:
    import rl_zoo3.hyperparams_opt
    import rl_zoo3.train
    import rl_zoo3.utils

    haepo_zoo.register()
    haepo_zoo.register()
    assert rl_zoo3.utils.ALGOS["haepo"] is HAEPO
    # The zoo modules hold references to the same dicts
    assert rl_zoo3.train.ALGOS["haepo"] is HAEPO
    assert rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER["haepo"] is haepo_zoo.sample_haepo_params
    assert rl_zoo3.hyperparams_opt.HYPERPARAMS_CONVERTER["haepo"] is haepo_zoo.convert_haepo_params


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--algo", "haepo", "--env", "CartPole-v1"], ["--conf-file", haepo_zoo.DEFAULT_CONF_FILE]),
        (["--algo=haepo"], ["--conf-file", haepo_zoo.DEFAULT_CONF_FILE]),
        (["--algo", "haepo", "-conf", "my.yml"], []),
        (["--algo", "haepo", "--conf-file=my.yml"], []),
        (["--algo", "haepo", "--conf", "my.yml"], []),
        (["--algo", "ppo"], []),
        ([], []),
    ],
)
def test_default_conf_file(args: list[str], expected: list[str]) -> None:
    assert haepo_zoo.add_default_conf_file(args) == [*args, *expected]


@pytest.mark.parametrize("missing", ["optuna", "rl_zoo3", "pandas", "requests"])
def test_missing_extras_error(missing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes any import of that module raise ImportError
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(ImportError, match=r'pip install "sb3_haepo\[zoo\]"') as excinfo:
        haepo_zoo.main(["train", "--algo", "haepo", "--env", "CartPole-v1"])
    assert missing in str(excinfo.value)


def test_missing_extras_error_in_subprocess(tmp_path: Path) -> None:
    """A fresh interpreter where ``optuna`` cannot be imported: the entry point names the pip install to run."""
    result = run_zoo_hiding("optuna", ["train", "--algo", "haepo", "--env", "CartPole-v1"], tmp_path, timeout=60)
    assert result.returncode != 0
    assert 'pip install "sb3_haepo[zoo]"' in result.stderr
    assert "optuna" in result.stderr


def test_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sb3_haepo.zoo", "--help"], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in haepo_zoo.SUB_COMMANDS:
        assert command in result.stdout
    assert "train -optimize also takes --runs-per-trial K" in result.stdout


@pytest.mark.parametrize("args", [[], ["foo"], ["--algo", "haepo"]])
def test_no_or_unknown_sub_command(args: list[str]) -> None:
    """As argparse does for a missing sub-command: usage and error on stderr, exit status 2."""
    result = subprocess.run(
        [sys.executable, "-m", "sb3_haepo.zoo", *args], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: haepo-zoo {train,enjoy,")
    assert "haepo-zoo: error: " + ("a sub-command is required" if not args else "invalid sub-command") in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "hidden, args",
    [
        ("tensorboard", ["train", "--algo", "haepo", "--env", "CartPole-v1", "-tb", "runs/"]),
        ("tensorboard", ["train", "--algo", "haepo", "--env", "CartPole-v1", "--tensorboard-log=runs/"]),
        ("tqdm", ["train", "--algo", "haepo", "--env", "CartPole-v1", "-P"]),
        ("rich", ["train", "--algo", "haepo", "--env", "CartPole-v1", "--prog"]),
        ("rliable", ["plot_from_file", "-i", "results.pkl", "-r", "-o", "results.png"]),
    ],
)
def test_option_needs_missing_package(hidden: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An option whose package is missing stops the command before it runs, naming the package and the extra."""
    monkeypatch.setitem(sys.modules, hidden, None)
    with pytest.raises(ImportError, match=r'pip install "sb3_haepo\[zoo\]"') as excinfo:
        haepo_zoo.main(args)
    assert f"missing: {hidden}" in str(excinfo.value)


def test_tensorboard_and_progress_bar_without_tensorboard(tmp_path: Path) -> None:
    """
    The issue's ``train ... -tb runs/ -P`` without tensorboard: a clear error naming tensorboard and the zoo extra,
    not the progress bar's ``AttributeError`` (tensorboard is hidden by a module that fails to import).
    """
    args = [*_train_args(tmp_path / "logs", n_timesteps=500), "-tb", "runs/", "-P"]
    result = run_zoo_hiding("tensorboard", args, tmp_path, timeout=120)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: haepo-zoo train -tb/--tensorboard-log needs tensorboard"), result.stderr
    assert 'pip install "sb3_haepo[zoo]"' in last_line
    assert "pbar" not in result.stderr
    assert not (tmp_path / "logs").exists()


def test_progress_bar_does_not_hide_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Any error that stops learn() before the progress bar starts is the one raised, not the zoo's follow-up
    ``AttributeError: 'ProgressBarCallback' object has no attribute 'pbar'`` (here SB3's own tensorboard check,
    reached by skipping ours).
    """
    import stable_baselines3.common.utils

    monkeypatch.setattr(haepo_zoo, "check_option_requirements", lambda command, args: None)
    monkeypatch.setattr(stable_baselines3.common.utils, "SummaryWriter", None)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImportError, match="tensorboard is not installed") as excinfo:
        haepo_zoo.main([*_train_args(tmp_path / "logs", n_timesteps=500), "-tb", "runs/", "-P"])
    assert excinfo.value.__suppress_context__


@pytest.fixture(scope="module")
def two_trial_study(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite storage holding the study "s" with trials 0 and 1."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('study') / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)
    return storage


@pytest.mark.parametrize(
    "study_name, trial_id, message",
    [
        ("s", "5", "--trial-id 5: study 's' in {storage} has no trial 5 (its trials: 0-1)"),
        ("s", "-1", "--trial-id -1: study 's' in {storage} has no trial -1 (its trials: 0-1)"),
        ("other", "1", "--study-name other: no such study in {storage} (its studies: s)"),
    ],
)
def test_trial_id_does_not_exist(two_trial_study: str, study_name: str, trial_id: str, message: str) -> None:
    """A trial or study that is not in the storage: an error naming it and what the storage holds."""
    with pytest.raises(haepo_zoo.ZooUsageError) as excinfo:
        haepo_zoo.check_trial_id(["--storage", two_trial_study, "--study-name", study_name, "--trial-id", trial_id])
    assert str(excinfo.value) == message.format(storage=two_trial_study)


def test_trial_id_does_not_exist_command_line(two_trial_study: str, tmp_path: Path) -> None:
    """Re-training from a trial that is not in the study: exit status 2 and the error, no IndexError, no training."""
    args = ["train", "--algo", "haepo", "--env", "CartPole-v1", "-f", str(tmp_path / "logs")]
    args += ["--storage", two_trial_study, "--study-name", "s", "--trial-id", "7"]
    result = subprocess.run(
        [sys.executable, "-m", "sb3_haepo.zoo", *args], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    expected = f"haepo-zoo train: error: --trial-id 7: study 's' in {two_trial_study} has no trial 7 (its trials: 0-1)"
    assert result.stderr.strip() == expected
    assert not (tmp_path / "logs").exists()


def test_trial_id_zero_warns(two_trial_study: str, capsys: pytest.CaptureFixture[str]) -> None:
    haepo_zoo.check_trial_id(["--storage", two_trial_study, "--study-name", "s", "--trial-id", "1"])
    assert capsys.readouterr().err == ""
    haepo_zoo.check_trial_id(["--storage", two_trial_study, "--study-name", "s", "--trial-id", "0"])
    assert "rl_zoo3 ignores --trial-id 0" in capsys.readouterr().err


@pytest.mark.parametrize("ids, expected", [([], ""), ([3], "3"), ([0, 1, 2, 5, 7, 8], "0-2, 5, 7-8")])
def test_format_ids(ids: list[int], expected: str) -> None:
    assert haepo_zoo._format_ids(ids) == expected


def test_yml_null_clip_range_passes_the_zoo_preprocessing() -> None:
    """A yml entry can pin clip_range: null (the exact update; the Optuna entries did); the zoo's preprocessing keeps it
    None, and still turns numbers and lin_ strings into schedules."""
    import rl_zoo3.exp_manager

    haepo_zoo.register()
    haepo_zoo.register()  # wrapped once
    preprocess = rl_zoo3.exp_manager.ExperimentManager._preprocess_schedules
    result = preprocess({"clip_range": None, "learning_rate": 0.001, "n_epochs": 4})
    assert result["clip_range"] is None and result["n_epochs"] == 4
    assert result["learning_rate"](1.0) == 0.001
    assert preprocess({"clip_range": "lin_0.2"})["clip_range"](0.5) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="Invalid value for clip_range"):
        preprocess({"clip_range": [0.2]})


@pytest.mark.parametrize(
    "args, expected_runs, expected_rest",
    [
        (["--env", "CartPole-v1"], 1, ["--env", "CartPole-v1"]),
        (["-optimize", "--runs-per-trial", "3", "-n", "5"], 3, ["-optimize", "-n", "5"]),
        (["--runs-per-trial=2", "--optimize-hyperparameters"], 2, ["--optimize-hyperparameters"]),
        (["--optimize", "--runs-per-trial", "1"], 1, ["--optimize"]),  # argparse's abbreviation of the long spelling
    ],
)
def test_pop_runs_per_trial(args: list[str], expected_runs: int, expected_rest: list[str]) -> None:
    assert haepo_zoo.pop_runs_per_trial(args) == (expected_runs, expected_rest)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-optimize", "--runs-per-trial"], "--runs-per-trial needs a value: the number of runs per trial, 1 or more"),
        (
            ["-optimize", "--runs-per-trial", "0"],
            "--runs-per-trial '0': the number of runs per trial must be an integer, 1 or more",
        ),
        (
            ["-optimize", "--runs-per-trial=-2"],
            "--runs-per-trial '-2': the number of runs per trial must be an integer, 1 or more",
        ),
        (
            ["-optimize", "--runs-per-trial", "2.5"],
            "--runs-per-trial '2.5': the number of runs per trial must be an integer, 1 or more",
        ),
        (
            ["--runs-per-trial", "3"],
            "--runs-per-trial '3': needs -optimize (--optimize-hyperparameters), which runs the trials",
        ),
        (["--optimization-log-path", "x", "--runs-per-trial", "3"], "--runs-per-trial '3': needs -optimize"),
        (["--optimiz", "--runs-per-trial", "3"], "--runs-per-trial '3': needs -optimize"),  # ambiguous for argparse
        (["-optimize", "--runs-per-trial", "\u00b2"], "--runs-per-trial '\u00b2': the number of runs per trial must"),
    ],
)
def test_pop_runs_per_trial_rejects(args: list[str], message: str) -> None:
    with pytest.raises(haepo_zoo.ZooUsageError) as excinfo:
        haepo_zoo.pop_runs_per_trial(args)
    assert str(excinfo.value).startswith(message)


def test_runs_per_trial_command_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --runs-per-trial stops train with status 2 and the error, before the zoo parses or trains anything."""
    with pytest.raises(SystemExit) as excinfo:
        haepo_zoo.main(["train", "--algo", "haepo", "--env", "CartPole-v1", "-optimize", "--runs-per-trial", "0"])
    assert excinfo.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "haepo-zoo train: error: --runs-per-trial '0': the number of runs per trial must be an integer, 1 or more"
    )


class _FakeManager:
    """The part of the zoo's ExperimentManager that the wrapped objective touches: its seed and optimization log path."""

    def __init__(self, seed: int, optimization_log_path: str | None = None) -> None:
        self.seed = seed
        self.optimization_log_path = optimization_log_path


class _AlwaysPrune(optuna.pruners.BasePruner):
    """A pruner that answers yes whenever it is asked."""

    def prune(self, study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> bool:
        return True


def test_repeat_trial_runs() -> None:
    """Three runs per trial: the same sampled parameter in every run, env seeds --seed + k * 1000 and log paths
    DIR/run_k on copies of the manager, the first run's evaluations alone reported and asked to prune, the mean of the
    runs' scores as the trial's value."""
    calls: list[tuple[int, str | None, float, bool]] = []
    scores = iter([1.0, 2.0, 6.0, 10.0, 20.0, 30.0])

    def objective(run_manager: _FakeManager, trial: Any) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        score = next(scores)
        run = (run_manager.seed - 7) // 1000
        trial.report(score, step=1 + run)
        calls.append((run_manager.seed, run_manager.optimization_log_path, x, trial.should_prune()))
        return score

    manager = _FakeManager(seed=7, optimization_log_path="opt")
    wrapped = haepo_zoo.repeat_trial_runs(objective, 3)
    study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())
    study.optimize(lambda trial: wrapped(manager, trial), n_trials=2)
    first, second = study.trials
    assert first.value == 3.0 and second.value == 20.0
    assert first.user_attrs["run_values"] == [1.0, 2.0, 6.0]
    assert first.intermediate_values == {1: 1.0} and second.intermediate_values == {1: 10.0}
    assert [seed for seed, _, _, _ in calls] == [7, 1007, 2007] * 2
    expected_paths = ["opt", os.path.join("opt", "run_1"), os.path.join("opt", "run_2")]
    assert [path for _, path, _, _ in calls] == expected_paths * 2
    assert [x for _, _, x, _ in calls[:3]] == [first.params["x"]] * 3
    assert [prune for _, _, _, prune in calls] == [True, False, False] * 2
    assert manager.seed == 7 and manager.optimization_log_path == "opt"


def test_repeat_trial_runs_pruned() -> None:
    """A trial pruned in its first run makes no further run; one pruned in a later run ends pruned; the manager is
    never changed."""
    seeds: list[int] = []

    def objective(run_manager: _FakeManager, trial: Any) -> float:
        seeds.append(run_manager.seed)
        if run_manager.seed in (3, 2003 + 1):  # the first run of trial 0, the third of trial 1
            raise optuna.TrialPruned()
        return 5.0

    managers = [_FakeManager(seed=3), _FakeManager(seed=4)]
    study = optuna.create_study()
    wrapped = haepo_zoo.repeat_trial_runs(objective, 4)
    for manager in managers:
        study.optimize(lambda trial, manager=manager: wrapped(manager, trial), n_trials=1)
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert seeds == [3, 4, 1004, 2004]
    assert study.trials[1].user_attrs["run_values"] == [5.0, 5.0]
    assert [manager.seed for manager in managers] == [3, 4]
    with pytest.raises(ValueError, match=r"^n_runs must be an integer >= 1 \(runs per trial\), got 0$"):
        haepo_zoo.repeat_trial_runs(objective, 0)


def test_repeat_trial_runs_in_threads() -> None:
    """Trials in threads (the zoo's --n-jobs) each see their own runs' seeds."""
    import threading
    import time

    seen: dict[int, list[int]] = {}
    lock = threading.Lock()

    def objective(run_manager: _FakeManager, trial: Any) -> float:
        time.sleep(0.01)
        with lock:
            seen.setdefault(trial.number, []).append(run_manager.seed)
        time.sleep(0.01)
        return float(run_manager.seed)

    manager = _FakeManager(seed=0)
    study = optuna.create_study()
    study.optimize(lambda trial: haepo_zoo.repeat_trial_runs(objective, 3)(manager, trial), n_trials=8, n_jobs=4)
    assert seen == {number: [0, 1000, 2000] for number in range(8)}
    assert all(trial.value == 1000.0 for trial in study.trials)


def test_optimize_with_runs_per_trial(tmp_path: Path) -> None:
    """Through the command line: each complete trial made two runs and its value is their mean score."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    run_zoo([*_optimize_args(tmp_path / "logs", storage, "runs"), "--runs-per-trial", "2"], cwd=tmp_path)
    study = optuna.load_study(study_name="runs", storage=storage)
    complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for trial in complete:
        runs = trial.user_attrs["run_values"]
        assert len(runs) == 2 and trial.value == pytest.approx(sum(runs) / 2)


def test_runs_per_trial_patch_is_scoped() -> None:
    """The zoo's objective is wrapped only while train runs with --runs-per-trial above 1, and restored after."""
    import rl_zoo3.exp_manager

    original = rl_zoo3.exp_manager.ExperimentManager.objective
    with haepo_zoo._runs_per_trial(1):
        assert rl_zoo3.exp_manager.ExperimentManager.objective is original
    with haepo_zoo._runs_per_trial(2):
        assert rl_zoo3.exp_manager.ExperimentManager.objective is not original
    assert rl_zoo3.exp_manager.ExperimentManager.objective is original
