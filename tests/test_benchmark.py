import json
import os
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch as th
from stable_baselines3.common.logger import configure

from sb3_haepo.benchmark.configs import get_hyperparams
from sb3_haepo.benchmark.report import (
    Run,
    binned_training_metric,
    bootstrap_ci,
    first_crossing,
    load_runs,
    probability_of_improvement,
    summary_table,
    write_report,
)
from sb3_haepo.benchmark.runner import (
    PROGRESS_LOG,
    check_hyperparams,
    make_grid,
    parse_hyperparams,
    parse_value,
    parse_variant,
    run_grid,
)
from sb3_haepo.experiments import published
from sb3_haepo.haepo import HAEPO

ENV_ID = "sb3_haepo/Bandit10-v0"
# The repository root
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def grid_logs(tmp_path_factory):
    log_dir = str(tmp_path_factory.mktemp("logs"))
    specs = make_grid(
        ["haepo", "ppo"],
        [ENV_ID],
        seeds=[0, 1],
        n_timesteps=256,
        log_dir=log_dir,
        eval_freq=64,
        n_eval_episodes=5,
        hyperparams={"haepo": {"n_episodes": 16}, "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2}},
    )
    results = run_grid(specs, n_jobs=2, progress_bar=False)
    return log_dir, specs, results


def test_runner_layout(grid_logs):
    log_dir, specs, results = grid_logs
    assert sorted(result["status"] for result in results) == ["done"] * 4
    for spec in specs:
        run_dir = os.path.join(log_dir, spec.algo, f"sb3_haepo-Bandit10-v0_{spec.seed}")
        # RL Zoo layout: {log_dir}/{algo}/{env}_{run_id}/evaluations.npz and monitor files
        evaluations = np.load(os.path.join(run_dir, "evaluations.npz"))
        np.testing.assert_array_equal(evaluations["timesteps"], [64, 128, 192, 256])
        assert evaluations["results"].shape == (4, 5)
        monitor = pd.read_csv(os.path.join(run_dir, "0.monitor.csv"), skiprows=1)
        # One-step episodes: every step is an episode, with its regret logged
        assert len(monitor) >= 256 and set(monitor["l"]) == {1}
        assert {"regret", "is_success"} <= set(monitor.columns)
        assert (monitor["regret"] >= 0).all()
        info = json.load(open(os.path.join(run_dir, "run.json")))
        assert info["num_timesteps"] >= 256 and info["env_steps_per_s"] > 0
        assert len(info["eval_train_times_s"]) == 4 and np.all(np.diff(info["eval_train_times_s"]) > 0)
        # The kernels it ran on (this process's, which its workers forked from; the pinned ones where no torch
        # operation ran before the grid, as in `scripts/run_benchmark.py`)
        assert info["torch_threads"] == 1 and info["numerics"] == published.numeric_note()
        # SB3's logger as CSV: each update's train/ diagnostics once (16-episode groups of one step each: 16
        # updates in 256 steps; PPO's 64-step rollouts: 4), the last one too, and each evaluation's row
        progress = pd.read_csv(os.path.join(run_dir, PROGRESS_LOG))
        own = {"haepo": ["train/weight_entropy", "train/effective_n_episodes"], "ppo": ["train/value_loss"]}[spec.algo]
        assert [progress[key].notna().sum() for key in own] == [{"haepo": 16, "ppo": 4}[spec.algo]] * len(own)
        assert progress["time/total_timesteps"].iloc[-1] == info["num_timesteps"]
        assert list(progress["eval/mean_reward"].dropna()) == list(evaluations["results"].mean(axis=1))


def test_progress_log_does_not_change_the_run(tmp_path):
    """The runner's CSV logger draws no random numbers: the same seed trains to the same parameters without it."""

    def trained(log: bool) -> list[th.Tensor]:
        model = HAEPO("MlpPolicy", gym.make(ENV_ID), n_episodes=16, seed=3)
        if log:
            model.set_logger(configure(str(tmp_path), ["csv"]))
        model.learn(128)
        return [parameter.detach().clone() for parameter in model.policy.parameters()]

    logged, plain = trained(True), trained(False)
    assert (tmp_path / PROGRESS_LOG).stat().st_size > 0
    assert len(logged) == len(plain) and all(th.equal(a, b) for a, b in zip(logged, plain, strict=True))
    assert not all(
        th.equal(a, b) for a, b in zip(logged, HAEPO("MlpPolicy", gym.make(ENV_ID), seed=3).policy.parameters(), strict=True)
    )


def test_progress_log_keeps_tensorboard(tmp_path):
    """A run given ``tensorboard_log`` gets its TensorBoard events beside the progress log (two updates here)."""
    specs = make_grid(
        ["haepo"],
        [ENV_ID],
        [0],
        32,
        str(tmp_path / "logs"),
        eval_freq=16,
        n_eval_episodes=1,
        hyperparams={"haepo": {"n_episodes": 16, "tensorboard_log": str(tmp_path / "tb")}},
    )
    run_grid(specs, n_jobs=1, progress_bar=False)
    assert len(list((tmp_path / "tb" / "haepo_sb3_haepo-Bandit10-v0_0").glob("events.out.tfevents.*"))) == 1
    assert pd.read_csv(specs[0].run_dir / PROGRESS_LOG)["train/weight_entropy"].notna().sum() == 2


def test_runner_resumes(grid_logs):
    _, specs, _ = grid_logs
    # Finished runs are skipped; a run without its complete marker is redone from scratch
    os.remove(specs[0].run_dir / "complete")
    (specs[0].run_dir / "stale.txt").write_text("partial run")
    results = run_grid(specs, n_jobs=1, progress_bar=False)
    assert sorted(result["status"] for result in results) == ["done"] + ["skipped"] * 3
    assert not (specs[0].run_dir / "stale.txt").exists()


def test_report(grid_logs, tmp_path):
    log_dir, _, _ = grid_logs
    runs = load_runs(log_dir)
    assert len(runs) == 4 and {run.algo for run in runs} == {"haepo", "ppo"}
    table = summary_table(runs, thresholds={ENV_ID: 0.5})
    assert list(table["algo"]) == ["haepo", "ppo"] and list(table["seeds"]) == [2, 2]
    assert "mean regret per step (std over seeds)" in table.columns
    path = write_report(log_dir, tmp_path, thresholds={ENV_ID: 0.5})
    text = path.read_text()
    assert "P(haepo > baseline)" in text and "| haepo |" in text
    assert (tmp_path / "sb3_haepo-Bandit10-v0_curves.png").stat().st_size > 1000
    assert (tmp_path / "sb3_haepo-Bandit10-v0_curves_walltime.png").stat().st_size > 1000
    assert (tmp_path / "sb3_haepo-Bandit10-v0_train_regret.png").stat().st_size > 1000


def test_rliable_intervals_are_seeded():
    """
    The IQM and probability-of-improvement intervals are the same on every call, whatever the state of numpy's
    global generator (which rliable's bootstraps draw from), and that state is left as it was.
    """
    rng = np.random.default_rng(0)
    runs = [
        Run(algo, "Env-v0", seed, np.array([1]), np.array([rng.normal(shift)]), np.array([1.0]), 1.0, pd.DataFrame())
        for algo, shift in (("haepo", 0.5), ("ppo", 0.0))
        for seed in range(10)
    ]
    results = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        state = np.random.get_state()[1].copy()
        results.append((probability_of_improvement(runs).to_string(), summary_table(runs)["IQM [95% CI]"].tolist()))
        assert np.array_equal(np.random.get_state()[1], state)
    assert results[0] == results[1]


def test_report_derives_success_from_the_return(grid_logs, tmp_path):
    """For envs that report no is_success (MiniGrid), --success-return counts an episode above it as a success."""
    import shutil

    log_dir, _, _ = grid_logs
    copy = tmp_path / "logs"
    shutil.copytree(log_dir, copy)
    for path in copy.glob("*/*/*.monitor.csv"):
        header = path.read_text().splitlines()[0]
        monitor = pd.read_csv(path, skiprows=1).drop(columns=["is_success"])
        path.write_text(header + "\n" + monitor.to_csv(index=False))
    runs = load_runs(copy)
    assert all("is_success" not in run.monitor for run in runs)
    assert "train success (last 100 ep.)" not in summary_table(runs).columns
    runs = load_runs(copy, success_return=0.5)
    for run in runs:
        np.testing.assert_array_equal(run.monitor["is_success"].to_numpy(), run.monitor["r"].to_numpy() > 0.5)
    table = summary_table(runs)
    expected = np.mean([(run.monitor["r"].to_numpy()[-100:] > 0.5).mean() for run in runs if run.algo == "haepo"])
    assert table.loc[table["algo"] == "haepo", "train success (last 100 ep.)"].item() == f"{expected:.2f}"
    # A column the env reports is never replaced
    for plain, derived in zip(load_runs(log_dir), load_runs(log_dir, success_return=1e9), strict=True):
        assert plain.monitor["is_success"].any()
        pd.testing.assert_series_equal(plain.monitor["is_success"], derived.monitor["is_success"])
    text = write_report(copy, tmp_path / "report", success_return=0.5).read_text()
    assert "an episode whose return is above 0.5" in text
    assert (tmp_path / "report" / "sb3_haepo-Bandit10-v0_train_is_success.png").stat().st_size > 1000


def test_rl_zoo_all_plots_reads_the_logs(grid_logs, tmp_path):
    log_dir, _, _ = grid_logs
    output = tmp_path / "zoo_results"
    command = [
        sys.executable,
        "-m",
        "rl_zoo3.plots.all_plots",
        *("-a", "haepo", "ppo", "-e", "sb3_haepo-Bandit10-v0", "-f", log_dir, "-o", str(output), "--no-display"),
    ]
    subprocess.run(command, check=True, env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True, timeout=120)
    with open(f"{output}.pkl", "rb") as file_handler:
        results = pickle.load(file_handler)
    # The zoo found the 2 seeds of each algo and their 4 evaluations
    for algo in ("haepo", "ppo"):
        key = f"{algo.upper()}-{log_dir}"
        assert key in results["sb3_haepo-Bandit10-v0"], results.keys()
        np.testing.assert_array_equal(results["sb3_haepo-Bandit10-v0"][key]["timesteps"], [64, 128, 192, 256])


def test_binned_training_metric():
    # Episodes of lengths 1, 1, 2, 4 end at steps 1, 2, 4, 8; 4 bins of 2 steps: [0, 2), [2, 4), [4, 6), [6, 8]
    monitor = pd.DataFrame({"l": [1, 1, 2, 4], "regret": [1.0, 3.0, 5.0, 7.0]})
    np.testing.assert_array_equal(binned_training_metric(monitor, "regret", 8, 4), [1.0, 3.0, 5.0, 7.0])
    # 2 bins of 4 steps: episodes ending at 1, 2 -> bin 0; at 4, 8 -> bin 1
    np.testing.assert_array_equal(binned_training_metric(monitor, "regret", 8, 2), [2.0, 6.0])
    assert np.isnan(binned_training_metric(monitor.iloc[:1], "regret", 8, 2)[1])


def test_helpers():
    assert first_crossing(np.array([1.0, 3.0, 5.0]), 3.0) == 1
    assert first_crossing(np.array([1.0, 2.0]), 3.0) is None
    assert bootstrap_ci(np.array([2.0])) == (2.0, 2.0)
    low, high = bootstrap_ci(np.array([0.0, 1.0] * 50))
    # mean 0.5, standard error 0.05: CI about 0.5 +- 0.1
    assert 0.38 < low < 0.45 and 0.55 < high < 0.62
    assert get_hyperparams("ppo", "CartPole-v1")["n_envs"] == 8
    assert get_hyperparams("haepo", ENV_ID)["normalize_returns"] == "sum"
    with pytest.raises(ValueError, match="sac"):
        get_hyperparams("sac", ENV_ID)
    with pytest.raises(ValueError, match="sac"):
        make_grid(["sac"], [ENV_ID], [0], 10, "logs")


def test_parse_value():
    assert parse_value("0.01") == 0.01 and parse_value(" 16 ") == 16 and parse_value("0") == 0
    assert parse_value("None") is None and parse_value("True") is True
    assert parse_value("'sum'") == "sum" and parse_value("sum") == "sum" and parse_value("zscore") == "zscore"
    assert parse_value("[64, 64]") == [64, 64] and parse_value("{'net_arch': [32]}") == {"net_arch": [32]}
    assert parse_value("1e-3") == 1e-3 and parse_value("-0.5") == -0.5
    # Nothing is evaluated: calls and unbalanced brackets are refused
    for text in ("__import__('os').getcwd()", "dict(a=1)", "[1, 2", "1 +", "a b"):
        with pytest.raises(ValueError, match="Cannot parse"):
            parse_value(text)


def test_parse_hyperparams_and_variant():
    assert parse_hyperparams("") == {}
    assert parse_hyperparams("weight_ent_coef=0,ref_kl_coef=0.001") == {"weight_ent_coef": 0, "ref_kl_coef": 0.001}
    # Commas inside a value do not split it
    assert parse_hyperparams("policy_kwargs={'net_arch': [64,64]}, n_episodes=4, trajectory_score=sum") == {
        "policy_kwargs": {"net_arch": [64, 64]},
        "n_episodes": 4,
        "trajectory_score": "sum",
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_hyperparams("weight_ent_coef")
    with pytest.raises(ValueError, match="given twice"):
        parse_hyperparams("n_episodes=4,n_episodes=8")
    with pytest.raises(ValueError, match="'n_episodes'"):
        parse_hyperparams("n_episodes=[4")
    assert parse_variant("beta0:weight_ent_coef=0") == ("beta0", {"weight_ent_coef": 0})
    assert parse_variant("beta0.001:weight_ent_coef=1e-3") == ("beta0.001", {"weight_ent_coef": 1e-3})
    assert parse_variant("defaults:") == ("defaults", {})
    with pytest.raises(ValueError, match="NAME:key=value"):
        parse_variant("weight_ent_coef=0")
    with pytest.raises(ValueError, match="Invalid variant name"):
        parse_variant("../x:n_episodes=4")


def test_variant_grid_and_unknown_keys():
    specs = make_grid(
        ["haepo"],
        [ENV_ID],
        [0, 1],
        100,
        "logs",
        hyperparams={"haepo": {"n_epochs": 2}},
        variants={"beta0": {"weight_ent_coef": 0.0}, "m4": {"n_episodes": 4, "n_epochs": 3}},
    )
    assert [spec.label for spec in specs] == ["haepo", "haepo-beta0", "haepo-m4"] * 2
    assert str(specs[1].run_dir) == os.path.join("logs", "haepo-beta0", "sb3_haepo-Bandit10-v0_0")
    assert specs[1].hyperparams == {"n_epochs": 2, "weight_ent_coef": 0.0}
    assert specs[2].hyperparams == {"n_epochs": 3, "n_episodes": 4}  # the variant wins over the common overrides
    only_variants = make_grid(["haepo"], [ENV_ID], [0], 100, "logs", variants={"m4": {}}, include_defaults=False)
    assert [spec.label for spec in only_variants] == ["haepo-m4"]
    # Unknown keys name the key and the constructor, before anything runs
    with pytest.raises(ValueError, match=r"'weight_ent_coef' for PPO.__init__.*variant 'beta0'"):
        make_grid(["haepo", "ppo"], [ENV_ID], [0], 100, "logs", variants={"beta0": {"weight_ent_coef": 0.0}})
    with pytest.raises(ValueError, match=r"'n_episode' for HAEPO.__init__"):
        make_grid(["haepo"], [ENV_ID], [0], 100, "logs", hyperparams={"haepo": {"n_episode": 4}})
    with pytest.raises(ValueError, match="Invalid variant name"):
        make_grid(["haepo"], [ENV_ID], [0], 100, "logs", variants={"a/b": {}})
    check_hyperparams("ppo", {"n_envs": 8, "n_steps": 32})


def script_env() -> dict[str, str]:
    """
    The environment of a script run by a test: the repository root on the path (for a checkout where the package is
    not installed), headless plots, and not the user's NUMERIC_PINS (the script pins its own).
    """
    env = {key: value for key, value in os.environ.items() if key not in published.NUMERIC_PINS}
    return {**env, "MPLBACKEND": "Agg", "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}


def test_runner_pins_before_any_torch_operation(tmp_path):
    """
    ``scripts/run_benchmark.py`` pins the kernels after all its imports and set-up, before torch fixes them: asked for a
    width other than the CPU's own (scalar), its run records that width, on any machine.
    """
    code = (
        "import runpy, sys; from sb3_haepo.experiments import published; "
        "published.NUMERIC_PINS['ATEN_CPU_CAPABILITY'] = 'default'; published.cpu_supports = lambda extension: True; "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    command = [sys.executable, "-c", code, os.path.join(ROOT, "scripts", "run_benchmark.py"), "--algos", "haepo"]
    command += ["--envs", ENV_ID, "--seeds", "0", "--n-timesteps", "64", "--eval-freq", "64", "--n-eval-episodes", "1"]
    command += ["--log-dir", str(tmp_path), "--hyperparams", "n_epochs=1,n_episodes=4"]
    subprocess.run(command, check=True, env=script_env(), capture_output=True, timeout=300)
    info = json.load(open(tmp_path / "haepo" / "sb3_haepo-Bandit10-v0_0" / "run.json"))
    assert info["numerics"]["torch_cpu_capability"] == "DEFAULT"


def test_variant_grid_cli_and_report(tmp_path):
    # A tiny grid from the command line: HAEPO's defaults and 2 variants, 2 seeds, 256 pulls
    log_dir = tmp_path / "logs"
    script = os.path.join(ROOT, "scripts", "run_benchmark.py")
    command = [sys.executable, script, "--algos", "haepo", "--envs", ENV_ID, "--seeds", "0", "1", "--n-timesteps", "256"]
    command += ["--eval-freq", "128", "--n-eval-episodes", "5", "--log-dir", str(log_dir), "--hyperparams", "n_epochs=2"]
    command += ["--variant", "beta0:weight_ent_coef=0,ref_kl_coef=0.0", "--variant", "m4:n_episodes=4"]
    env = script_env()
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    assert sorted(path.name for path in log_dir.iterdir()) == ["haepo", "haepo-beta0", "haepo-m4"]
    info = json.load(open(log_dir / "haepo-m4" / "sb3_haepo-Bandit10-v0_1" / "run.json"))
    assert info["algo"] == "haepo" and info["label"] == "haepo-m4" and info["variant"] == "m4"
    assert info["hyperparams"]["n_episodes"] == "4" and info["hyperparams"]["n_epochs"] == "2"
    # A fresh process runs on the pinned kernels (test_runner_pins_before_any_torch_operation: in time)
    assert info["numerics"]["mkl_cbwr"] == ("COMPATIBLE" if th.backends.mkl.is_available() else "no MKL")
    assert info["torch_threads"] == 1
    runs = load_runs(log_dir)
    assert sorted({run.algo for run in runs}) == ["haepo", "haepo-beta0", "haepo-m4"] and len(runs) == 6
    improvement = probability_of_improvement(runs)
    assert list(improvement["baseline"]) == ["haepo-beta0", "haepo-m4"]
    assert improvement["P(haepo > baseline)"].between(0, 1).all()
    text = write_report(log_dir, tmp_path / "report", reference="haepo-m4").read_text()
    assert "| haepo-beta0 |" in text and "P(haepo-m4 > baseline)" in text
    assert "(mean of all evaluations, AUC, rliable)" in text and "mean of all evaluations (AUC) [95% CI]" in text
    auc = probability_of_improvement(runs, "haepo-m4", metric="auc")
    assert list(auc["baseline"]) == ["haepo", "haepo-beta0"] and auc["P(haepo-m4 > baseline)"].between(0, 1).all()
    with pytest.raises(ValueError, match="metric"):
        probability_of_improvement(runs, metric="median")
    # An unknown key fails before any run, naming the key and the constructor
    bad = subprocess.run([*command[:-4], "--variant", "x:n_episode=4"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'n_episode' for HAEPO.__init__" in bad.stderr


def test_zoo_runs_take_the_zoo_settings(tmp_path):
    pytest.importorskip("rl_zoo3")
    from sb3_contrib import ARS
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_haepo.benchmark.runner import RunSpec, parse_zoo_algo, zoo_conf_path, zoo_setup
    from sb3_haepo.haepo import HAEPO
    from sb3_haepo.zoo import DEFAULT_CONF_FILE

    assert parse_zoo_algo("ars") == ("ars", "zoo")
    assert parse_zoo_algo("ppo=hyperparams/ppo.yml") == ("ppo", "hyperparams/ppo.yml")
    for bad in ("", "ppo="):
        with pytest.raises(ValueError, match="ALGO=FILE"):
            parse_zoo_algo(bad)
    assert zoo_conf_path("haepo", "zoo") == DEFAULT_CONF_FILE
    assert zoo_conf_path("ars", "zoo").endswith(os.path.join("rl_zoo3", "hyperparams", "ars.yml"))
    with pytest.raises(ValueError, match=r"'missing\.yml' for 'ppo' is not a file"):
        zoo_conf_path("ppo", "missing.yml")

    ppo_yml = os.path.join(ROOT, "hyperparams", "ppo.yml")

    def setup(algo, env_id, conf, **overrides):
        spec = RunSpec(algo, env_id, 3, 1000, str(tmp_path), hyperparams=overrides, zoo_conf=zoo_conf_path(algo, conf))
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        assert spec.label == f"{algo}-zoo"
        return zoo_setup(spec)

    # PPO on Pendulum, the zoo's entry: 4 envs, gSDE, n_steps 1024, gamma 0.9
    model, eval_env, recorded = setup("ppo", "Pendulum-v1", ppo_yml)
    assert isinstance(model, PPO) and model.n_envs == 4 and model.use_sde and model.sde_sample_freq == 4
    assert model.n_steps == 1024 and model.gamma == 0.9 and recorded["n_envs"] == "4"
    # ARS on Pendulum (the zoo's ars.yml): observation normalisation, a [16] network; an override as -params does
    model, eval_env, recorded = setup("ars", "Pendulum-v1", "zoo", n_delta=2)
    assert isinstance(model, ARS) and model.n_delta == 2 and model.n_top == 1 and recorded["n_delta"] == "2"
    assert isinstance(model.get_env(), VecNormalize) and model.get_env().norm_obs and not model.get_env().norm_reward
    # The evaluation env normalises observations with frozen statistics and leaves rewards alone
    assert isinstance(eval_env, VecNormalize) and not eval_env.training and not eval_env.norm_reward
    # HAEPO with the bundled file: its MountainCarContinuous entry (gSDE, 16-episode groups, observations normalised)
    model, eval_env, recorded = setup("haepo", "MountainCarContinuous-v0", "zoo")
    assert isinstance(model, HAEPO) and model.use_sde and model.sde_sample_freq == 4 and model.n_episodes == 16
    assert isinstance(model.get_env(), VecNormalize) and recorded["use_sde"] == "True"
    with pytest.raises(ValueError, match=r"'n_episodes' for ARS.__init__"):
        make_grid([], ["Pendulum-v1"], [0], 100, "logs", hyperparams={"ars": {"n_episodes": 4}}, zoo_algos={"ars": "zoo"})
    with pytest.raises(ValueError, match="Unknown zoo algo 'arss'"):
        make_grid([], ["Pendulum-v1"], [0], 100, "logs", zoo_algos={"arss": ppo_yml})

    # A tiny grid: the runs are labelled ALGO-zoo, use the runner's budget and record the zoo's entry
    specs = make_grid(
        ["haepo"],
        ["CartPole-v1"],
        [0],
        600,
        str(tmp_path / "grid"),
        eval_freq=300,
        n_eval_episodes=2,
        zoo_algos={"ars": "zoo", "haepo": "zoo"},
    )
    assert [spec.label for spec in specs] == ["haepo", "ars-zoo", "haepo-zoo"]
    results = {result["label"]: result for result in run_grid(specs, progress_bar=False)}
    assert results["haepo-zoo"]["num_timesteps"] == 600 and results["haepo-zoo"]["hyperparams"]["n_envs"] == "8"
    assert results["ars-zoo"]["hyperparams"]["policy"] == "'LinearPolicy'" and results["ars-zoo"]["n_envs"] == 1
    assert results["haepo"]["zoo_conf"] is None and results["ars-zoo"]["zoo_conf"].endswith("ars.yml")
    assert sorted(run.algo for run in load_runs(tmp_path / "grid")) == ["ars-zoo", "haepo", "haepo-zoo"]
    # Through the zoo the progress log is kept too: ARS dumps after each round, so no row is added after learn()
    ars_progress = pd.read_csv(specs[1].run_dir / PROGRESS_LOG)
    assert ars_progress["train/step_size"].notna().sum() >= 1 and ars_progress["train/step_size"].notna().iloc[-1]
