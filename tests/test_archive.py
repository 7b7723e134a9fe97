import dataclasses
import io
import tarfile

import numpy as np
import pytest

from sb3_haepo.benchmark.archive import complete_run_dirs, pack_logs, unpack_logs
from sb3_haepo.benchmark.report import load_runs, summary_table
from sb3_haepo.benchmark.runner import make_grid, run_grid

ENV_ID = "sb3_haepo/Bandit10-v0"


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("logs")
    specs = make_grid(
        ["haepo", "grpo"],
        [ENV_ID],
        seeds=[0, 1],
        n_timesteps=128,
        log_dir=str(log_dir),
        eval_freq=64,
        n_eval_episodes=3,
        hyperparams={"haepo": {"n_episodes": 16}, "grpo": {"n_episodes": 16}},
    )
    run_grid(specs, n_jobs=1, progress_bar=False)
    return log_dir, specs


def _table(log_dir):
    return summary_table(load_runs(log_dir), thresholds={ENV_ID: 0.5}).drop(columns=["env-steps/s"], errors="ignore")


def test_pack_keeps_what_the_report_reads_and_unpack_restores_it(grid, tmp_path):
    log_dir, specs = grid
    # An incomplete run and a stray file are not packed
    partial = log_dir / "haepo" / "sb3_haepo-Bandit10-v0_7"
    partial.mkdir()
    (partial / "run.json").write_text("{}")
    (specs[0].run_dir / "model.zip").write_bytes(b"not part of the report")
    archive = tmp_path / "logs.tar.xz"
    assert pack_logs(log_dir, archive) == 4
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "haepo/sb3_haepo-Bandit10-v0_0/complete" in names
    assert not any("model.zip" in name or "_7/" in name for name in names)
    # Each run: run.json, evaluations.npz, its monitor and the marker, which comes last
    run0 = [name for name in names if name.startswith("haepo/sb3_haepo-Bandit10-v0_0/")]
    assert sorted(run0) == sorted(
        f"haepo/sb3_haepo-Bandit10-v0_0/{name}" for name in ("0.monitor.csv", "complete", "evaluations.npz", "run.json")
    )
    assert run0[-1].endswith("complete")
    # Byte-for-byte reproducible
    again = tmp_path / "again.tar.xz"
    pack_logs(log_dir, again)
    assert again.read_bytes() == archive.read_bytes()

    restored_dir = tmp_path / "restored"
    assert unpack_logs(archive, restored_dir) == (4, 0)
    assert [p.relative_to(restored_dir) for p in complete_run_dirs(restored_dir)] == [
        p.relative_to(log_dir) for p in complete_run_dirs(log_dir)
    ]
    for spec in specs:
        restored = restored_dir / spec.run_dir.relative_to(log_dir)
        np.testing.assert_array_equal(
            np.load(restored / "evaluations.npz")["results"], np.load(spec.run_dir / "evaluations.npz")["results"]
        )
    assert _table(restored_dir).equals(_table(log_dir))
    # A second unpack leaves the runs on disk alone
    (restored_dir / specs[0].run_dir.relative_to(log_dir) / "run.json").write_text('{"edited": 1}')
    assert unpack_logs(archive, restored_dir) == (0, 4)
    assert (restored_dir / specs[0].run_dir.relative_to(log_dir) / "run.json").read_text() == '{"edited": 1}'


def test_unpacked_grid_resumes_without_training(grid, tmp_path):
    log_dir, specs = grid
    archive = tmp_path / "logs.tar.xz"
    pack_logs(log_dir, archive)
    unpack_logs(archive, tmp_path / "restored")
    moved = [dataclasses.replace(spec, log_dir=str(tmp_path / "restored")) for spec in specs]
    results = run_grid(moved, n_jobs=1, progress_bar=False)
    assert [result["status"] for result in results] == ["skipped"] * 4


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="holds no complete run"):
        pack_logs(tmp_path, tmp_path / "a.tar.xz")
    evil = tmp_path / "evil.tar.xz"
    with tarfile.open(evil, "w:xz") as tar:
        info = tarfile.TarInfo("../escape/run/file")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match=r"'\.\./escape/run/file'.*only plain files"):
        unpack_logs(evil, tmp_path / "out")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out").exists()
