"""
The main job and the throughput benchmark: on tiny budgets, and the published reports that the README quotes
(the memory benchmark's among them; its own tests are in test_memory.py), including a fresh run of the full main job
against its published record (the deterministic parts).
"""

import json
from pathlib import Path

import numpy as np
import pytest

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
    assert cartpole.summarize(results) in content and results[1].line() in content and "1 torch thread; load" in content
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


@pytest.mark.parametrize("seed", range(cartpole.MainJobConfig().seeds))
def test_main_job_reproduces_its_published_record(seed):
    """
    A fresh run of the full main job (both algorithms, the whole budget; one test per seed so that ``pytest -n 2``
    shares them out: about 40 s each on 2 cores) gets exactly the evaluation returns, steps to 475 and env steps
    that the README quotes.
    """
    record = json.loads((ROOT / cartpole.record_path(cartpole.PUBLISHED_REPORT)).read_text(encoding="utf-8"))
    config = cartpole.MainJobConfig(**record["config"])
    assert config == cartpole.MainJobConfig()
    results = cartpole.run_all(config, verbose=False, seeds=[seed])
    recorded = [run for run in record["deterministic"] if run["seed"] == seed]
    assert [run["algo"] for run in recorded] == list(cartpole.ALGOS)
    then, now = (published.format_machine_note(note) for note in (record["machine"], published.machine_note()))
    for fresh, expected in zip([r.deterministic() for r in results], recorded, strict=True):
        assert fresh == expected, f"re-run `make main` if the change is intended (published on {then}; now on {now})"


def test_identity_envs_tiny_run():
    results = identity.run_grid(["HAEPO", "PPO"], [0], timesteps=200, n_eval_episodes=1, hyperparams={"n_episodes": 2})
    assert list(results) == [(algo, env) for env in identity.ENVS for algo in ("HAEPO", "PPO")]
    # One episode of 100 steps, 1 per correct action: a mean in [0, 100]
    assert all(len(means) == 1 and 0.0 <= means[0] <= 100.0 for means in results.values())
    text = identity.report({("HAEPO", "IdentityEnv(4)"): [100.0, 80.0, 95.0]}, [0, 1, 2], 5000, "cmd")
    assert "| IdentityEnv(4) | HAEPO | 100.0, 80.0, 95.0 | 91.7 | 2/3 |" in text
    published_text = (ROOT / identity.PUBLISHED_REPORT).read_text(encoding="utf-8")
    assert published_text.startswith(published.generated_by(identity.PUBLISH_COMMAND))
