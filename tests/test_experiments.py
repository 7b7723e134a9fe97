"""
The main job and the throughput benchmark: on tiny budgets, and the published reports that the README quotes
(the memory benchmark's among them; its own tests are in test_memory.py), including a fresh run of the full main job
against its published record (the deterministic parts).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th

from sb3_haepo.experiments import cartpole, identity, memory, published, steps_to_solve, throughput

ROOT = Path(__file__).resolve().parents[1]
README_TEMPLATE = "# Title\n\nBefore.\n\n<!-- {name}:begin -->\nstale\n<!-- {name}:end -->\n\nAfter.\n"


def test_main_job_prints_and_plots(tmp_path, capsys):
    output, report, readme = tmp_path / "comparison.png", tmp_path / "out" / "main_job.md", tmp_path / "README.md"
    readme.write_text(README_TEMPLATE.format(name="main_job"))
    argv = ["--timesteps", "1600", "--seeds", "1", "--eval-freq", "800", "--n-eval-episodes", "1", "--output", str(output)]
    results = cartpole.main([*argv, "--report", str(report), "--readme", str(readme)])
    assert output.stat().st_size > 10_000
    assert [r.algo for r in results] == ["HAEPO", "PPO"]
    for result in results:
        # Evaluations every 800 steps (100 vector steps of 8 envs)
        np.testing.assert_array_equal(result.timesteps[:2], [800, 1600])
        assert len(result.returns) == len(result.timesteps)
        assert result.total_steps >= 1600
    printed = capsys.readouterr().out
    assert "| HAEPO | " in printed and "| PPO | " in printed and "Plot saved to" in printed
    assert results[0].line() in printed and results[1].line() in printed

    # The JSON record holds the runs exactly, the report is rendered from it, and the README quotes the report
    record = json.loads(cartpole.record_path(report).read_text())
    assert record["command"] == " ".join(
        ["python scripts/compare_cartpole.py", *argv, "--report", str(report), "--readme", str(readme)]
    )
    assert record["config"] == {"timesteps": 1600, "seeds": 1, "eval_freq": 800, "n_eval_episodes": 1}
    assert record["deterministic"] == [r.deterministic() for r in results]
    assert record["deterministic"][1]["eval_timesteps"][:2] == [800, 1600]
    assert [clock["seconds"] for clock in record["wall_clock"]] == [r.seconds for r in results]
    assert record["machine"]["torch_threads"] == "1" and "load_average" in record["machine"]
    content = report.read_text()
    assert content == cartpole.render_report(record)
    assert (
        cartpole.summarize(results) in content
        and results[1].line() in content
        and "1 torch thread, " in content
        and "; load average" in content
    )
    assert readme.read_text() == README_TEMPLATE.format(name="main_job").replace("stale\n", content)


def test_main_job_publish_needs_the_default_budget(capsys):
    with pytest.raises(SystemExit):
        cartpole.parse_args(["--publish", "--timesteps", "1000"])
    assert "--publish writes the README's figures: use the default settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cartpole.parse_args(["--readme", "README.md"])
    assert "--readme quotes the report" in capsys.readouterr().err
    args, config = cartpole.parse_args([])
    assert config == cartpole.MainJobConfig(50_000, 3, 5000, 5)
    assert (args.output, args.report, args.readme) == ("results/cartpole_haepo_vs_ppo.png", None, None)


def test_summary_by_hand():
    runs = [
        cartpole.RunResult("A", 0, np.array([5000, 10000]), np.array([300.0, 500.0]), 10.0, 10000, 10000, 8.0),
        cartpole.RunResult("A", 1, np.array([5000, 10000]), np.array([480.0, 490.0]), 20.0, 10000, 5000, 4.0),
        cartpole.RunResult("B", 0, np.array([5000, 10000]), np.array([100.0, 200.0]), 5.0, 10000, None, None),
    ]
    table = cartpole.summarize(runs)
    assert "| A | 2/2 | 7,500 (5,000-10,000) | 6.0 | 495.0 ± 5.0 | 15.0 |" in table
    assert "| B | 0/1 | never | - | 200.0 ± 0.0 | 5.0 |" in table
    assert runs[2].line() == "B     seed 0: final eval  200.0, reached 475 at never, 10000 env steps in   5.0 s"


def test_throughput_report(tmp_path):
    report, readme = tmp_path / "throughput.md", tmp_path / "README.md"
    readme.write_text(README_TEMPLATE.format(name="throughput"))
    argv = ["--n-envs", "2", "--n-steps", "400", "--repeats", "1", "--report", str(report), "--readme", str(readme)]
    content = throughput.main(argv)
    assert "| HAEPO |" in content and "| PPO | " in content and "| random policy (ceiling) | " in content
    ratio = float(content.rsplit("HAEPO / PPO throughput ratio: ", 1)[1])
    assert ratio > 0
    assert content.startswith(published.generated_by("python scripts/benchmark_throughput.py " + " ".join(argv)))
    assert report.read_text() == content
    assert readme.read_text() == README_TEMPLATE.format(name="throughput").replace("stale\n", content)
    with pytest.raises(SystemExit):
        throughput.main(["--publish", "--repeats", "1"])


def test_readme_blocks():
    text = README_TEMPLATE.format(name="main_job")
    assert published.read_block(text, "main_job") == "stale\n"
    new_text = published.replace_block(text, "main_job", "line 1\n\nline 2")
    assert new_text == text.replace("stale\n", "line 1\n\nline 2\n")
    assert published.read_block(new_text, "main_job") == "line 1\n\nline 2\n"
    assert published.replace_block(new_text, "main_job", "stale\n") == text
    with pytest.raises(ValueError, match="exactly one"):
        published.read_block(text, "throughput")
    with pytest.raises(ValueError, match="exactly one"):
        published.read_block(text + text, "main_job")
    with pytest.raises(ValueError, match="must come after"):
        published.read_block("<!-- a:end -->\n<!-- a:begin -->\n", "a")
    with pytest.raises(ValueError, match="Invalid block name"):
        published.read_block(text, "main job")


def test_dump_json():
    record = {"name": "a [1,2]", "returns": [1.5, -2e-05, 500.0], "nested": [[1, 2], []], "empty": []}
    text = published.dump_json(record)
    assert json.loads(text) == record
    assert '"name": "a [1,2]",' in text and '"returns": [1.5, -2e-05, 500.0],' in text and "  [1, 2],\n" in text


def test_readme_quotes_the_published_reports():
    """Fast: the README's blocks are the reports, verbatim, and the main job's report is rendered from its record."""
    readme = (ROOT / published.README).read_text(encoding="utf-8")
    blocks = (
        ("main_job", cartpole.PUBLISHED_REPORT),
        ("throughput", throughput.PUBLISHED_REPORT),
        (memory.README_BLOCK, memory.PUBLISHED_REPORT),
        (steps_to_solve.README_BLOCK, steps_to_solve.PUBLISHED_REPORT),
        (identity.README_BLOCK, identity.PUBLISHED_REPORT),
    )
    for block, report in blocks:
        assert published.read_block(readme, block) == (ROOT / report).read_text(
            encoding="utf-8"
        ), f"README's {block} block differs from {report}: re-run the command that writes it"
    record = json.loads((ROOT / cartpole.record_path(cartpole.PUBLISHED_REPORT)).read_text(encoding="utf-8"))
    assert record["command"] == cartpole.PUBLISH_COMMAND
    assert record["config"] == vars(cartpole.MainJobConfig())
    runs = [(run["algo"], run["seed"]) for run in record["deterministic"]]
    assert runs == [(algo, seed) for seed in range(cartpole.MainJobConfig().seeds) for algo in cartpole.ALGOS]
    assert record["plot"] == str(cartpole.PUBLISHED_PLOT) and (ROOT / cartpole.PUBLISHED_PLOT).stat().st_size > 10_000
    assert (ROOT / cartpole.PUBLISHED_REPORT).read_text(encoding="utf-8") == cartpole.render_report(record)
    assert published.read_block(readme, "throughput").startswith(published.generated_by(throughput.PUBLISH_COMMAND))
    assert published.read_block(readme, memory.README_BLOCK).startswith(published.generated_by(memory.PUBLISH_COMMAND))
    table = published.read_block(readme, steps_to_solve.README_BLOCK)
    assert table.startswith(published.generated_by(steps_to_solve.PUBLISH_COMMAND))
    # One row per setting of the defaults table, in order
    assert [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ")][1:] == [
        setting.label for setting in steps_to_solve.DEFAULTS_TABLE
    ]


#: What must match the record's machine for a bitwise comparison: versions, threads and what picks the CPU kernels
#: (published.numeric_note). Elsewhere the last bits differ and RL training amplifies them into different runs.
BITWISE_KEYS = ("python", "torch", "stable_baselines3", "gymnasium", "numpy", "torch_threads", "cpu_vendor", "simd")
BITWISE_KEYS += ("torch_cpu_capability", "mkl_cbwr")


def fresh_python(code: str, *args: str, **environment: str) -> str:
    """Run Python code in a fresh process at the repository root, without the user's NUMERIC_PINS; return its stdout."""
    env = {key: value for key, value in os.environ.items() if key not in published.NUMERIC_PINS}
    command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, env={**env, **environment}, capture_output=True, text=True, check=True, cwd=ROOT).stdout


#: The main job's imports, then its pins, then the machine note (as JSON); argv[1] "train": also one seed of the job,
#: as ``make main`` runs it
MAIN_JOB_SEED = (
    "import json, sys; from sb3_haepo.experiments import cartpole, published; published.pin_numerics(); "
    "note = published.machine_note(); train = sys.argv[1] == 'train'; "
    "results = cartpole.run_all(cartpole.MainJobConfig(), verbose=False, seeds=[int(sys.argv[2])]) if train else []; "
    "print(json.dumps({'runs': [r.deterministic() for r in results], 'machine': note}))"
)


@pytest.mark.parametrize("seed", range(cartpole.MainJobConfig().seeds))
def test_main_job_reproduces_its_published_record(seed):
    """
    On a machine like the record's (``BITWISE_KEYS``, read in a fresh process with the job's pins), a fresh run of the
    full main job (both algorithms, the whole budget; one test per seed so that ``pytest -n 2`` shares them out: 1-2
    minutes each on 2 cores) gets exactly the evaluation returns, steps to 475 and env steps that the README quotes.
    Elsewhere the last bits differ, so it is skipped before training, naming what differs.
    """
    record = json.loads((ROOT / cartpole.record_path(cartpole.PUBLISHED_REPORT)).read_text(encoding="utf-8"))
    config = cartpole.MainJobConfig(**record["config"])
    assert config == cartpole.MainJobConfig()
    recorded = [run for run in record["deterministic"] if run["seed"] == seed]
    assert [run["algo"] for run in recorded] == list(cartpole.ALGOS)
    machine, now = record["machine"], json.loads(fresh_python(MAIN_JOB_SEED, "note", str(seed)))["machine"]
    differs = [f"{key} {machine.get(key)} then, {now[key]} now" for key in BITWISE_KEYS if machine.get(key) != now[key]]
    if differs:
        pytest.skip("bitwise comparison needs the record's machine: " + "; ".join(differs))
    output = json.loads(fresh_python(MAIN_JOB_SEED, "train", str(seed)))
    assert output["machine"] == now
    then_text, now_text = published.format_machine_note(machine), published.format_machine_note(now)
    for run, expected in zip(output["runs"], recorded, strict=True):
        assert run == expected, f"re-run `make main` if the change is intended (published on {then_text}; now on {now_text})"


#: After the imports of the main job and of the runner: pin (with NUMERIC_PINS replaced by argv[1]'s width when
#: given, and AVX2 taken as present), then print the kernels torch uses, MKL_CBWR and the torch threads
PIN_PROBE = (
    "import os, sys, torch; from sb3_haepo.experiments import cartpole, published; from sb3_haepo.benchmark import runner\n"
    "if len(sys.argv) > 1:\n"
    "    published.NUMERIC_PINS['ATEN_CPU_CAPABILITY'] = sys.argv[1]; published.cpu_supports = lambda extension: True\n"
    "published.pin_numerics()\n"
    "print(torch.backends.cpu.get_cpu_capability(), os.environ['MKL_CBWR'], torch.get_num_threads())"
)


def test_pin_numerics_in_a_fresh_process():
    """
    In a fresh process the pins take effect after every import (a kernel width other than the CPU's own shows it on
    any machine), and the user's own choice wins.
    """
    assert fresh_python(PIN_PROBE, "default").split() == ["DEFAULT", "COMPATIBLE", "1"]
    if published.cpu_supports("avx2"):
        assert fresh_python(PIN_PROBE).split() == ["AVX2", "COMPATIBLE", "1"]
    user = fresh_python(PIN_PROBE, ATEN_CPU_CAPABILITY="default", MKL_CBWR="AVX2")
    assert user.split() == ["DEFAULT", "AVX2", "1"]


def clear_pins(monkeypatch):
    """Remove the NUMERIC_PINS variables for one test (restored after it, also when the test sets them)."""
    for name in published.NUMERIC_PINS:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_pin_numerics_without_avx2_leaves_torch_its_choice(monkeypatch, one_torch_thread):
    clear_pins(monkeypatch)
    monkeypatch.setattr(published, "cpu_supports", lambda extension: False)
    th.set_num_threads(2)
    published.pin_numerics()
    assert "ATEN_CPU_CAPABILITY" not in os.environ and os.environ["MKL_CBWR"] == "COMPATIBLE"
    assert th.get_num_threads() == 1


def test_pin_numerics_warns_when_too_late(monkeypatch, one_torch_thread):
    # This process's kernels were fixed at the first torch operation; asking for others now cannot take effect
    fixed = th.backends.cpu.get_cpu_capability()
    other = "default" if fixed != "DEFAULT" else "avx2"
    monkeypatch.setattr(published, "NUMERIC_PINS", {"ATEN_CPU_CAPABILITY": other, "MKL_CBWR": "COMPATIBLE"})
    monkeypatch.setattr(published, "cpu_supports", lambda extension: True)
    clear_pins(monkeypatch)
    with pytest.warns(UserWarning, match=f"torch runs {fixed} kernels"):
        published.pin_numerics()


def test_cpu_supports_reads_the_flags(monkeypatch):
    flags = {"flags": "fpu sse2 avx avx2 fma", "vendor_id": "AuthenticAMD", "model name": "AMD EPYC"}
    monkeypatch.setattr(published, "cpuinfo_field", flags.get)
    assert published.cpu_supports("avx2") and not published.cpu_supports("avx512")
    note = published.numeric_note()
    assert (note["cpu_vendor"], note["simd"]) == ("AuthenticAMD", "avx2")
    flags["flags"] += " avx512f avx512bw"
    assert published.numeric_note()["simd"] == "avx2 avx512"
    flags["flags"] = "fp asimd"  # an aarch64 CPU
    assert published.numeric_note()["simd"] == "none"
    with pytest.raises(ValueError, match="Unknown vector extension 'sse9'"):
        published.cpu_supports("sse9")


def test_machine_note_names_the_kernels(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    note = published.machine_note()
    assert note["mkl_cbwr"] == ("AVX2" if th.backends.mkl.is_available() else "no MKL")
    monkeypatch.delenv("MKL_CBWR")
    assert published.numeric_note()["mkl_cbwr"] == ("auto" if th.backends.mkl.is_available() else "no MKL")
    note = {**note, "torch_cpu_capability": "AVX2", "cpu_vendor": "AuthenticAMD", "simd": "avx2", "load_average": "0.5"}
    line = published.format_machine_note(note)
    assert line.endswith(
        f", AVX2 torch kernels, MKL path {note['mkl_cbwr']} (AuthenticAMD, avx2); load average 0.5 when it started"
    )
    # Records made before the kernels were noted still format, without them
    old = {key: value for key, value in note.items() if key not in published.numeric_note()}
    assert "torch kernels" not in published.format_machine_note(old)


def test_identity_envs_tiny_run():
    results = identity.run_grid(["HAEPO", "PPO"], [0], timesteps=200, n_eval_episodes=1, hyperparams={"n_episodes": 2})
    assert list(results) == [(algo, env) for env in identity.ENVS for algo in ("HAEPO", "PPO")]
    # One episode of 100 steps, 1 per correct action: a mean in [0, 100]
    assert all(len(means) == 1 and 0.0 <= means[0] <= 100.0 for means in results.values())
    text = identity.report({("HAEPO", "IdentityEnv(4)"): [100.0, 80.0, 95.0]}, [0, 1, 2], 5000, "cmd")
    assert "| IdentityEnv(4) | HAEPO | 100.0, 80.0, 95.0 | 91.7 | 2/3 |" in text
    published_text = (ROOT / identity.PUBLISHED_REPORT).read_text(encoding="utf-8")
    assert published_text.startswith(published.generated_by(identity.PUBLISH_COMMAND))
