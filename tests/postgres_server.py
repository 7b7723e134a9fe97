"""
A throwaway local PostgreSQL server for the tests of distributed tuning (``--storage postgresql+psycopg://...``).

:func:`postgres_server` starts a server from the PostgreSQL binaries found on the PATH or in Debian's
``/usr/lib/postgresql/<version>/bin`` (``apt-get install postgresql``), on a free localhost port and a temporary data
folder, with a user, password and database named as in the README (``optuna``, ``secret``, ``optuna``), and stops it
afterwards. PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user (created by Debian's
package), or ``nobody``.

Without server binaries the tests are skipped, except where the ``CI`` environment variable is set (``.ci/run``
installs the server): there they fail, so that CI never skips them silently.
"""

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

USER, PASSWORD, DATABASE = "optuna", "secret", "optuna"
BINARIES = ("initdb", "pg_ctl", "createdb")
# Users to run the server as when the tests run as root
UNPRIVILEGED_USERS = ("postgres", "nobody")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip the test, or fail it in CI (where the server must be available)."""
    if in_ci():
        pytest.fail(f"{reason}. CI is set: the PostgreSQL tests must run in CI (.ci/run installs the postgresql package)")
    pytest.skip(reason)


def find_bin_dir() -> Path | None:
    """The folder holding the PostgreSQL server binaries: the one of ``pg_ctl`` on the PATH, else the newest Debian one."""
    candidates = []
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.name))

    candidates += [Path(path) for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for candidate in candidates:
        if all((candidate / binary).is_file() for binary in BINARIES):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """
    Start a PostgreSQL server, yield its SQLAlchemy URL (``postgresql+psycopg://optuna:secret@127.0.0.1:<port>/optuna``),
    stop it.

    Skips (fails in CI) only when no server binaries or no driver (psycopg) are installed; a server that does not
    start fails the test with its log.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        unavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl, createdb) on the PATH or in /usr/lib/postgresql/*/bin: "
            "apt-get install postgresql"
        )
    assert bin_dir is not None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg (the PostgreSQL driver) is not installed: pip install -e '.[zoo]'")

    run_kwargs: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="haepo-postgres-"))
    if os.geteuid() == 0:
        for name in UNPRIVILEGED_USERS:
            try:
                user = pwd.getpwnam(name)
                break
            except KeyError:
                continue
        else:
            unavailable(f"running as root and none of the users {UNPRIVILEGED_USERS} exists to run PostgreSQL")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_kwargs = dict(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    env = {**os.environ, "PGPASSWORD": PASSWORD, "LC_ALL": "C"}

    def run(*args: str) -> None:
        result = subprocess.run(
            [str(bin_dir / args[0]), *args[1:]],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **run_kwargs,
        )
        if result.returncode != 0:
            log = (root / "server.log").read_text() if (root / "server.log").is_file() else ""
            pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{log}")

    data = root / "data"
    started = False
    try:
        (root / "password").write_text(PASSWORD + "\n")
        if run_kwargs:
            os.chown(root / "password", run_kwargs["user"], run_kwargs["group"])
        run(
            "initdb",
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={root / 'password'}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        port = _free_port()
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
        run("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "-t", "60", "start")
        started = True
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE)
        yield f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                cwd=root,
                env=env,
                capture_output=True,
                timeout=60,
                **run_kwargs,
            )
        shutil.rmtree(root, ignore_errors=True)
