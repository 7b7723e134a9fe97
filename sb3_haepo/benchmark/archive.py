"""
Pack a benchmark grid's logs into one small archive that can be committed beside its report, and unpack it again.

The runner's logs (``logs/``) are not in git, so a fresh checkout cannot regenerate a published report or resume its
grid. An archive keeps, for each complete run, exactly what the report and the runner's resume need: ``run.json``,
``evaluations.npz``, the training monitors ``*.monitor.csv``, the logger's ``progress.csv`` where the run has one (runs
since commit 4fae324; about 60 bytes per logged update once compressed, so some 200 kB for a 1M-step PPO run with its
~4,000 updates) and the ``complete`` marker. Incomplete runs are left
out (the runner would start them over anyway). The archive is xz-compressed and byte-for-byte reproducible: members
are sorted, and their times and owners are zeroed.
"""

import io
import shutil
import tarfile
from pathlib import Path

from sb3_haepo.benchmark.runner import COMPLETE_MARKER, PROGRESS_LOG, RUN_INFO

# What one run contributes to an archive (its complete marker is added last)
RUN_FILE_PATTERNS = (RUN_INFO, "evaluations.npz", "*.monitor.csv", PROGRESS_LOG)
# Where unpack_logs writes a run before moving it into place, under the log folder
UNPACKING_DIR = ".unpacking"


def complete_run_dirs(log_dir: str | Path) -> list[Path]:
    """
    :param log_dir: root of a grid's logs, laid out by the runner as ``{log_dir}/{label}/{env}_{seed}``
    :return: the run folders under ``log_dir`` that hold a ``complete`` marker, sorted
    """
    return sorted(marker.parent for marker in Path(log_dir).glob(f"*/*/{COMPLETE_MARKER}"))


def _run_files(run_dir: Path) -> list[Path]:
    files = sorted({path for pattern in RUN_FILE_PATTERNS for path in run_dir.glob(pattern) if path.is_file()})
    missing = [name for name in (RUN_INFO, "evaluations.npz") if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"run folder {run_dir} is marked complete but lacks {missing}")
    return [*files, run_dir / COMPLETE_MARKER]


def pack_logs(log_dir: str | Path, archive: str | Path) -> int:
    """
    Write the complete runs under ``log_dir`` to the xz-compressed tar ``archive``.

    The archive is written beside its target and then moved over it, so a failure leaves an earlier archive intact.

    :param log_dir: root of a grid's logs
    :param archive: path of the archive to write, conventionally ``.tar.xz``
    :return: the number of runs packed
    :raises ValueError: when ``log_dir`` does not exist or holds no complete run
    """
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise ValueError(f"log_dir {str(log_dir)!r} does not exist; expected a folder of runs {{label}}/{{env}}_{{seed}}")
    run_dirs = complete_run_dirs(log_dir)
    if not run_dirs:
        raise ValueError(f"log_dir {str(log_dir)!r} holds no complete run ({{label}}/{{env}}_{{seed}}/complete)")
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.partial")
    try:
        with tarfile.open(partial, "w:xz") as tar:
            for run_dir in run_dirs:
                for path in _run_files(run_dir):
                    data = path.read_bytes()
                    # Zeroed time and owner (TarInfo's defaults: uid/gid 0, empty names), so the bytes depend on
                    # the files' contents only
                    info = tarfile.TarInfo(path.relative_to(log_dir).as_posix())
                    info.size = len(data)
                    info.mode = 0o644
                    info.mtime = 0
                    tar.addfile(info, io.BytesIO(data))
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)
    return len(run_dirs)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    parts = Path(member.name).parts
    if not member.isfile() or member.name.startswith("/") or ".." in parts or len(parts) != 3:
        raise ValueError(
            f"archive {str(archive)!r} has member {member.name!r}; only plain files at label/run/file are allowed"
        )


def unpack_logs(archive: str | Path, log_dir: str | Path) -> tuple[int, int]:
    """
    Restore the runs of ``archive`` under ``log_dir``, so that the report can be regenerated and the grid resumed.

    A run that is complete on disk already is left as it is. A run folder without its ``complete`` marker (which the
    runner would start over) is replaced by the archive's run. Each run is written under ``{log_dir}/.unpacking/``
    (deeper than the ``{label}/{run}/complete`` the report and the runner look for) and then moved into place, so an
    interrupted unpack leaves no half run where they look.

    :param archive: an archive written by :func:`pack_logs`
    :param log_dir: root to restore into (created if missing)
    :return: (runs restored, runs left as they were because they were complete on disk)
    :raises ValueError: when ``archive`` is not a tar file, or a member is anything but a plain file at
        ``label/run/file`` (no links, no folders, no absolute paths, no ``..``)
    """
    archive, log_dir = Path(archive), Path(log_dir)
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.ReadError as error:
        raise ValueError(f"archive {str(archive)!r} is not a tar file; expected a .tar.xz written by pack") from error
    with tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, archive)
        by_run: dict[Path, list[tarfile.TarInfo]] = {}
        for member in members:
            by_run.setdefault(Path(member.name).parent, []).append(member)
        staging = log_dir / UNPACKING_DIR
        restored = 0
        for run, run_members in sorted(by_run.items()):
            target = log_dir / run
            if (target / COMPLETE_MARKER).exists():
                continue
            partial = staging / run
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
            for member in run_members:
                extracted = tar.extractfile(member)
                assert extracted is not None  # a plain file, checked above
                (partial / Path(member.name).name).write_bytes(extracted.read())
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial.rename(target)
            restored += 1
        if staging.exists():
            shutil.rmtree(staging)
    return restored, len(by_run) - restored
