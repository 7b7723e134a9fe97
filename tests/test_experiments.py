"""The main job and the throughput benchmark, on tiny budgets."""

import numpy as np

from sb3_haepo.experiments import cartpole, throughput


def test_main_job_prints_and_plots(tmp_path, capsys):
    output = tmp_path / "comparison.png"
    results = cartpole.main(
        ["--timesteps", "1600", "--seeds", "1", "--eval-freq", "800", "--n-eval-episodes", "1", "--output", str(output)]
    )
    assert output.stat().st_size > 10_000
    assert [r.algo for r in results] == ["HAEPO", "PPO"]
    for result in results:
        # Evaluations every 800 steps (100 vector steps of 8 envs)
        np.testing.assert_array_equal(result.timesteps[:2], [800, 1600])
        assert len(result.returns) == len(result.timesteps)
        assert result.total_steps >= 1600
    printed = capsys.readouterr().out
    assert "| HAEPO | " in printed and "| PPO | " in printed and "Plot saved to" in printed


def test_summary_by_hand():
    runs = [
        cartpole.RunResult("A", 0, np.array([5000, 10000]), np.array([300.0, 500.0]), 10.0, 10000, 10000, 8.0),
        cartpole.RunResult("A", 1, np.array([5000, 10000]), np.array([480.0, 490.0]), 20.0, 10000, 5000, 4.0),
        cartpole.RunResult("B", 0, np.array([5000, 10000]), np.array([100.0, 200.0]), 5.0, 10000, None, None),
    ]
    table = cartpole.summarize(runs)
    assert "| A | 2/2 | 7,500 (5,000-10,000) | 6.0 | 495.0 ± 5.0 | 15.0 |" in table
    assert "| B | 0/1 | never | - | 200.0 ± 0.0 | 5.0 |" in table


def test_throughput_report():
    report = throughput.run_throughput(n_envs=2, n_steps=400, repeats=1)
    assert "| HAEPO |" in report and "| PPO | " in report
    ratio = float(report.rsplit("HAEPO / PPO throughput ratio: ", 1)[1])
    assert ratio > 0
