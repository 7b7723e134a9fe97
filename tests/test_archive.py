import dataclasses
import io
import os
import shutil
import tarfile

import numpy as np
import pytest

from sb3_haepo.benchmark.archive import UNPACKING_DIR, complete_run_dirs, pack_logs, unpack_logs
from sb3_haepo.benchmark.report import load_runs, summary_table
from sb3_haepo.benchmark.runner import PROGRESS_LOG, make_grid, run_grid

ENV_ID = "sb3_haepo/Bandit10-v0"
RUN0 = "haepo/sb3_haepo-Bandit10-v0_0"


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


@pytest.fixture
def logs(grid, tmp_path):
    """A copy of the grid's logs that a test may change."""
    log_dir, _ = grid
    copy = tmp_path / "logs"
    shutil.copytree(log_dir, copy)
    return copy


def _table(log_dir):
    return summary_table(load_runs(log_dir), thresholds={ENV_ID: 0.5}).drop(columns=["env-steps/s"], errors="ignore")


def test_pack_keeps_what_the_report_reads_and_unpack_restores_it(logs, tmp_path):
    # An incomplete run and a stray file are not packed
    partial = logs / "haepo" / "sb3_haepo-Bandit10-v0_7"
    partial.mkdir()
    (partial / "run.json").write_text("{}")
    (logs / RUN0 / "model.zip").write_bytes(b"not part of the report")
    # A run from before the runner wrote progress logs is packed without one
    old_run = "grpo/sb3_haepo-Bandit10-v0_1"
    os.remove(logs / old_run / PROGRESS_LOG)
    archive = tmp_path / "logs.tar.xz"
    assert pack_logs(logs, archive) == 4
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    names = [member.name for member in members]
    assert not any("model.zip" in name or "_7/" in name for name in names)
    # Each run: run.json, evaluations.npz, its monitor, its progress log and the marker, which comes last
    run0 = [name for name in names if name.startswith(f"{RUN0}/")]
    run0_files = ("0.monitor.csv", "evaluations.npz", PROGRESS_LOG, "run.json", "complete")
    assert run0 == [f"{RUN0}/{name}" for name in run0_files]
    assert [name for name in names if name.startswith(f"{old_run}/")] == [
        f"{old_run}/{name}" for name in run0_files if name != PROGRESS_LOG
    ]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in members)

    restored_dir = tmp_path / "restored"
    assert unpack_logs(archive, restored_dir) == (4, 0)
    assert not (restored_dir / UNPACKING_DIR).exists()
    assert [p.relative_to(restored_dir) for p in complete_run_dirs(restored_dir)] == [
        p.relative_to(logs) for p in complete_run_dirs(logs)
    ]
    for run in complete_run_dirs(logs):
        restored = restored_dir / run.relative_to(logs)
        assert sorted(p.name for p in restored.iterdir()) == sorted(p.name for p in run.iterdir() if p.name != "model.zip")
        for name in ("0.monitor.csv", PROGRESS_LOG, "run.json"):
            assert (restored / name).exists() == (run / name).exists()
            if (run / name).exists():
                assert (restored / name).read_bytes() == (run / name).read_bytes()
        np.testing.assert_array_equal(
            np.load(restored / "evaluations.npz")["results"], np.load(run / "evaluations.npz")["results"]
        )
    assert _table(restored_dir).equals(_table(logs))


def test_pack_is_reproducible_across_copies_and_times(logs, tmp_path):
    first = tmp_path / "first.tar.xz"
    pack_logs(logs, first)
    copy = tmp_path / "copy"
    shutil.copytree(logs, copy)
    for path in copy.rglob("*"):
        os.utime(path, (1e9, 1e9))
    second = tmp_path / "second.tar.xz"
    pack_logs(copy, second)
    assert second.read_bytes() == first.read_bytes()


def test_unpack_keeps_complete_runs_and_replaces_incomplete_ones(logs, tmp_path):
    archive = tmp_path / "logs.tar.xz"
    pack_logs(logs, archive)
    restored_dir = tmp_path / "restored"
    unpack_logs(archive, restored_dir)
    # A complete run on disk wins; a run folder without its marker (the runner would start it over) is restored
    (restored_dir / RUN0 / "run.json").write_text('{"edited": 1}')
    run1 = restored_dir / "haepo/sb3_haepo-Bandit10-v0_1"
    os.remove(run1 / "complete")
    (run1 / "stale.txt").write_text("partial run")
    # A staging folder left by an interrupted unpack is cleared
    (restored_dir / UNPACKING_DIR / RUN0).mkdir(parents=True)
    (restored_dir / UNPACKING_DIR / RUN0 / "junk").write_text("x")
    assert unpack_logs(archive, restored_dir) == (1, 3)
    assert (restored_dir / RUN0 / "run.json").read_text() == '{"edited": 1}'
    assert (run1 / "complete").exists() and not (run1 / "stale.txt").exists()
    assert not (restored_dir / UNPACKING_DIR).exists()


def test_unpacked_grid_resumes_without_training(grid, tmp_path):
    log_dir, specs = grid
    archive = tmp_path / "logs.tar.xz"
    pack_logs(log_dir, archive)
    unpack_logs(archive, tmp_path / "restored")
    moved = [dataclasses.replace(spec, log_dir=str(tmp_path / "restored")) for spec in specs]
    results = run_grid(moved, n_jobs=1, progress_bar=False)
    assert [result["status"] for result in results] == ["skipped"] * 4


def test_pack_bad_input(logs, tmp_path):
    with pytest.raises(ValueError, match=r"'.*missing' does not exist"):
        pack_logs(tmp_path / "missing", tmp_path / "a.tar.xz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no complete run"):
        pack_logs(tmp_path / "empty", tmp_path / "a.tar.xz")
    # A run marked complete without its evaluations is refused, and an earlier archive survives the failure
    archive = tmp_path / "a.tar.xz"
    pack_logs(logs, archive)
    before = archive.read_bytes()
    os.remove(logs / RUN0 / "evaluations.npz")
    with pytest.raises(FileNotFoundError, match=r"sb3_haepo-Bandit10-v0_0 is marked complete but lacks \['evaluations.npz'\]"):
        pack_logs(logs, archive)
    assert archive.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def _member(tar, name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(b"x") if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize(
    "name, kind, link",
    [
        ("../run/file", tarfile.REGTYPE, ""),  # three parts, one of them ..
        ("/abs/run/file", tarfile.REGTYPE, ""),
        ("label/run/link", tarfile.SYMTYPE, "/etc/passwd"),
        ("label/run/hard", tarfile.LNKTYPE, "label/run/other"),
        ("label/run/folder", tarfile.DIRTYPE, ""),
        ("label/file", tarfile.REGTYPE, ""),
    ],
)
def test_unpack_refuses_anything_but_plain_run_files(tmp_path, name, kind, link):
    evil = tmp_path / "evil.tar.xz"
    with tarfile.open(evil, "w:xz") as tar:
        _member(tar, "label/run/ok")
        _member(tar, name, kind, link)
    with pytest.raises(ValueError, match=f"has member {name!r}; only plain files at label/run/file are allowed"):
        unpack_logs(evil, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unpack_refuses_a_file_that_is_not_an_archive(tmp_path):
    bad = tmp_path / "notes.tar.xz"
    bad.write_text("not a tar file")
    with pytest.raises(ValueError, match=r"'.*notes\.tar\.xz' is not a tar file; expected a \.tar\.xz written by pack"):
        unpack_logs(bad, tmp_path / "out")
