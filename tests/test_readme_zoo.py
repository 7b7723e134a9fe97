"""
Every ``bash`` command of the README's "RL Zoo" section, run at tiny budgets in a virtual environment built the way the
README says: a fresh ``python -m venv``, ``pip install torch`` (the README's Install section; pinned to the CPU build
the project tests with) and then the section's own ``pip install -e ".[zoo]"``, and nothing else. A package that a
documented command needs but the ``zoo`` extra lacks (tensorboard for ``-tb``, pygame for ``enjoy``'s window, rliable
for ``plot_from_file -r``, a PostgreSQL driver) fails the test.

The commands run in a copy of the repository (the README's commands run in a clone: ``hyperparams/ppo.yml``,
``scripts/enjoy.py``), in order, one statement at a time (a ``for`` loop with its ``wait`` is one statement), rewritten
only for tiny budgets (:func:`rewrite`): ``-n``, ``--n-trials``, ``--n-evaluations``, ``--eval-freq``,
``--eval-episodes``, ``-max``, two tuning workers instead of four, ``--trial-id 1`` (the studies hold two trials per
worker), the local PostgreSQL server's URL instead of ``db.example.org``, and a ``--benchmark-dir`` of its own for the
zoo's benchmark script (which skips the agents that the ``haepo-zoo benchmark`` before it evaluated). Windows are headless
(``MPLBACKEND=Agg``, ``SDL_VIDEODRIVER=dummy``). Skipped, by nature: ``optuna-dashboard``, a web server that runs until
stopped (and is not part of the extras). ``python`` blocks are not run.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="needs the zoo extras: pip install 'sb3_haepo[zoo]'")

from postgres_server import postgres_server  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
# The torch the project is tested with (as the Makefile's TORCH_SPEC): the CPU build where the package index has it
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")
README_POSTGRES_URL = "postgresql+psycopg://optuna:secret@db.example.org:5432/optuna"
# Tiny budgets
TRAIN_STEPS = 1000
OPTIMIZE_STEPS = 500
N_TRIALS = 2
ENJOY_STEPS = 100
# The zoo's benchmark drops an agent's row, silently, when no episode of its `enjoy` ended within these steps
# (rl_zoo3.benchmark keeps a row only if the monitor file has an episode). At 200 a full run once lost the CartPole
# row (not reproduced; the agent it evaluates, the latest CartPole run, is the re-train of an Optuna trial whose
# hyperparameters and seed are not fixed, so one that balances for 200 steps is a suspect, not a diagnosis).
# CartPole's episodes end by step 500, so 1000 steps always see one; the assertion prints the benchmarks' output
BENCHMARK_STEPS = 1000
ZOO_SCRIPT_BENCHMARK_DIR = "logs/benchmark_zoo_script"
# Output of a command that exits with status 0 nonetheless after a failure
HIDDEN_FAILURES = ["Error during evaluation"]  # the zoo's benchmark, when `enjoy` fails for an agent
# Commands that cannot run headless, by nature: first word -> reason
SKIPPED = {"optuna-dashboard": "a web server that runs until stopped (and a separate install)"}


def rl_zoo_section(readme: str) -> str:
    start = readme.index("\n## RL Zoo\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def bash_blocks(section: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def statements(block: str) -> list[str]:
    """
    Split a bash block into statements: continuation lines joined, comments dropped, a ``for ... done`` loop one
    statement, with the ``wait`` that follows it.
    """
    lines: list[str] = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if line.strip():
            lines.append(re.sub(r" {2,}", " ", line))
    result: list[str] = []
    loop: list[str] = []
    for line in lines:
        if loop or line.startswith("for "):
            loop.append(line)
            if line.strip() == "done":
                result.append("\n".join(loop))
                loop = []
        elif line.strip() == "wait" and result:
            result[-1] += "\n" + line
        else:
            result.append(line)
    assert not loop, f"unterminated loop in:\n{block}"
    return result


def _set(line: str, names: list[str], value: object, add: bool = True) -> str:
    """Set the value of an option (any of its spellings) on a command line, adding it after the sub-command if absent."""
    for name in names:
        pattern = rf"(?<=\s){re.escape(name)}(\s+|=)\S+"
        if re.search(pattern, line):
            return re.sub(pattern, f"{name} {value}", line, count=1)
    if not add:
        return line
    return re.sub(r"(haepo-zoo \w+|-m rl_zoo3\.benchmark)", rf"\1 {names[0]} {value}", line, count=1)


def rewrite(statement: str, postgres_url: str) -> str:
    """Rewrite a README statement for tiny budgets and the local PostgreSQL server (see the module docstring)."""
    statement = statement.replace(README_POSTGRES_URL, postgres_url)
    # Two tuning workers instead of four
    statement = statement.replace("for i in 1 2 3 4; do", "for i in 1 2; do")
    # `wait` alone returns 0 even when a background worker failed
    statement = re.sub(r"(?m)^wait$", 'for pid in $(jobs -p); do wait "$pid"; done', statement)
    lines = []
    for line in statement.splitlines():
        if "haepo-zoo train" in line and "-optimize" in line:
            line = _set(line, ["-n", "--n-timesteps"], OPTIMIZE_STEPS)
            line = _set(line, ["--n-trials"], N_TRIALS)
            line = _set(line, ["--n-evaluations"], 2)
            line = _set(line, ["--eval-episodes"], 2)
        elif "haepo-zoo train" in line:
            line = _set(line, ["-n", "--n-timesteps"], TRAIN_STEPS)
            line = _set(line, ["--eval-freq"], TRAIN_STEPS // 4, add=False)
            line = _set(line, ["--eval-episodes"], 2, add=False)
            line = _set(line, ["--trial-id"], 1, add=False)
        elif "haepo-zoo enjoy" in line:
            line = _set(line, ["-n", "--n-timesteps"], ENJOY_STEPS)
        elif "haepo-zoo benchmark" in line or "-m rl_zoo3.benchmark" in line:
            line = _set(line, ["-n", "--n-timesteps"], BENCHMARK_STEPS)
            if "-m rl_zoo3.benchmark" in line:
                # The zoo's benchmark skips the agents already evaluated in its --benchmark-dir (here by the
                # `haepo-zoo benchmark` before it): a folder of its own, so that it runs `python enjoy.py`
                line = _set(line, ["--benchmark-dir"], ZOO_SCRIPT_BENCHMARK_DIR)
        elif "haepo-zoo all_plots" in line:
            line = _set(line, ["-max", "--max-timesteps"], TRAIN_STEPS, add=False)
        lines.append(line)
    return "\n".join(lines)


def _tail(text: str, n: int = 6000) -> str:
    return text if len(text) <= n else "...\n" + text[-n:]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_statements_parser() -> None:
    """The parser and the rewriting on a block like the README's."""
    block = (
        "# a comment\n"
        'pip install -e ".[zoo]"   # from a clone\n'
        "haepo-zoo train --algo haepo --env CartPole-v1 --eval-freq 10000 --eval-episodes 10 \\\n"
        "    --seed 0 --trial-id 7\n"
        "for i in 1 2 3 4; do\n"
        "  haepo-zoo train --algo haepo --env Acrobot-v1 -n 200000 -optimize --n-trials 10 --seed $i &\n"
        "done\n"
        "wait\n"
        f"optuna-dashboard {README_POSTGRES_URL}\n"
    )
    parsed = statements(block)
    assert parsed[:2] == [
        'pip install -e ".[zoo]"',
        "haepo-zoo train --algo haepo --env CartPole-v1 --eval-freq 10000 --eval-episodes 10 --seed 0 --trial-id 7",
    ]
    assert parsed[2].splitlines()[0] == "for i in 1 2 3 4; do" and parsed[2].endswith("done\nwait")
    assert parsed[3] == f"optuna-dashboard {README_POSTGRES_URL}"
    assert rewrite(parsed[1], "URL") == (
        f"haepo-zoo train -n {TRAIN_STEPS} --algo haepo --env CartPole-v1 --eval-freq {TRAIN_STEPS // 4} "
        "--eval-episodes 2 --seed 0 --trial-id 1"
    )
    loop = rewrite(parsed[2], "URL").splitlines()
    assert loop[0] == "for i in 1 2; do"
    assert f"-n {OPTIMIZE_STEPS} -optimize --n-trials {N_TRIALS} --seed $i &" in loop[1]
    assert loop[-1] == 'for pid in $(jobs -p); do wait "$pid"; done'
    assert rewrite(parsed[3], "URL") == "optuna-dashboard URL"


def _copy_repository(destination: Path) -> None:
    """Copy the repository's files (tracked, and new ones that git does not ignore) as a clone would have them."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    if result.returncode == 0:
        for name in result.stdout.decode().split("\0"):
            source = REPO_ROOT / name
            if name and source.is_file():
                (destination / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination / name)
    else:  # not a git checkout
        ignore = shutil.ignore_patterns(".git", ".venv", "*.egg-info", "__pycache__", "logs", "runs", "build", "results")
        shutil.copytree(REPO_ROOT, destination, ignore=ignore, dirs_exist_ok=True)


def test_readme_rl_zoo_commands(tmp_path: Path, postgres_url: str) -> None:
    section = rl_zoo_section((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    blocks = bash_blocks(section)
    assert len(blocks) >= 8, "the RL Zoo section lost its bash blocks?"
    assert blocks[0].strip().startswith('pip install -e ".[zoo]"'), "the section no longer starts with its install"
    assert README_POSTGRES_URL in section

    clone = tmp_path / "sb3_haepo"
    clone.mkdir()
    _copy_repository(clone)
    venv = tmp_path / "venv"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        PATH=os.pathsep.join([str(venv / "bin"), env.get("PATH", "")]),
        VIRTUAL_ENV=str(venv),
        MPLBACKEND="Agg",
        SDL_VIDEODRIVER="dummy",
        SDL_AUDIODRIVER="dummy",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    timings: list[tuple[float, str]] = []
    outputs: dict[str, str] = {}

    def run(command: str, shown: str, timeout: int = 600) -> str:
        start = time.monotonic()
        try:
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=clone,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            output = error.stdout if isinstance(error.stdout, str) else (error.stdout or b"").decode(errors="replace")
            pytest.fail(f"README command timed out after {timeout} s:\n{shown}\nrun as:\n{command}\n{_tail(output)}")
        timings.append((time.monotonic() - start, shown))
        outputs[shown] = result.stdout
        hidden = [message for message in HIDDEN_FAILURES if message in result.stdout]
        if result.returncode != 0 or hidden:
            pytest.fail(
                f"README command failed (exit status {result.returncode}{', output: ' if hidden else ''}"
                f"{', '.join(hidden)}):\n{shown}\nrun as:\n{command}\n--- output ---\n{_tail(result.stdout)}"
            )
        return result.stdout

    # The README's Install section: a virtual environment and torch (pinned: the CPU build the project tests with)
    run(f"{sys.executable} -m venv {venv}", "python -m venv venv")
    run(f"pip install -q '{TORCH_SPEC}'", f"pip install {TORCH_SPEC}")
    skipped = []
    try:
        for block in blocks:
            for statement in statements(block):
                first_word = statement.split()[0]
                if first_word in SKIPPED:
                    skipped.append(f"{statement}: {SKIPPED[first_word]}")
                    continue
                run(rewrite(statement, postgres_url), statement)
        print(f"skipped: {skipped}")
        print("\n".join(f"{seconds:6.1f} s  {shown.splitlines()[0]}" for seconds, shown in timings))

        # What the commands made
        def present(pattern: str) -> list[Path]:
            found = sorted(clone.glob(pattern))
            assert found, f"{pattern} not found after the README's commands"
            return found

        present("logs/haepo/CartPole-v1_1/evaluations.npz")
        present("logs/haepo/CartPole-v1_1/best_model.zip")
        present("runs/CartPole-v1/*/events.out.tfevents.*")  # -tb
        present("logs/haepo/Acrobot-v1_1/Acrobot-v1/config.yml")  # -conf my_haepo.yml
        present("logs/haepo/report_CartPole-v1_*.csv")
        for storage, study_name, n_trials in [
            ("sqlite:///haepo_cartpole.db", "haepo-cartpole", N_TRIALS),
            ("sqlite:///haepo.db", "haepo-acrobot", 2 * N_TRIALS),
            (postgres_url, "haepo-lunarlander", N_TRIALS),
        ]:
            study = optuna.load_study(study_name=study_name, storage=storage.replace("sqlite:///", f"sqlite:///{clone}/"))
            assert len(study.trials) == n_trials, (study_name, study.trials)
        workers = {
            trial.user_attrs["worker"]
            for trial in optuna.load_study(study_name="haepo-acrobot", storage=f"sqlite:///{clone}/haepo.db").trials
        }
        assert len(workers) == 2, workers
        # Re-trained from a trial of the PostgreSQL study (LunarLander-v3_1 holds the tuning run's logs)
        present("logs/haepo/LunarLander-v3_*/LunarLander-v3.zip")
        assert len(present("cartpole/haepo/CartPole-v1_*/evaluations.npz")) == 3
        assert len(present("cartpole/ppo/CartPole-v1_*/evaluations.npz")) == 3
        present("cartpole.pkl")
        for name in ["cartpole.png", "cartpole_rliable.png", "cartpole_performance_profiles.png", "cartpole_iqm.png"]:
            assert present(name)[0].stat().st_size > 0, name
        benchmarks = present("logs/benchmark*/benchmark.md")
        assert [path.parent.name for path in benchmarks] == ["benchmark", Path(ZOO_SCRIPT_BENCHMARK_DIR).name]
        benchmark_outputs = "\n".join(
            f"--- {shown} ---\n{_tail(output, 3000)}" for shown, output in outputs.items() if "benchmark" in shown
        )
        for benchmark in benchmarks:
            table = benchmark.read_text()
            assert re.search(
                r"^\|haepo\|CartPole-v1 *\|", table, flags=re.MULTILINE
            ), f"{benchmark} has no CartPole-v1 row:\n{table}\n{benchmark_outputs}"
    finally:
        # Deleting the venv's 45k files takes minutes on a slow disk: do it in the background, without waiting
        subprocess.Popen(
            ["rm", "-rf", str(venv)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
