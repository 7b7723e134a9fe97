SHELL := /bin/bash
LINT_PATHS = sb3_haepo/ tests/ scripts/ setup.py
VENV = .venv
PYTHON = $(VENV)/bin/python
# The CPU build of torch (installed first, so that the project's torch>=2.3 requirement pulls nothing more)
TORCH_SPEC ?= torch==2.13.0
export MPLBACKEND = Agg

.PHONY: setup main compare throughput memory steps-to-solve test pytest pytest-slow lint format check-codestyle type commit-checks clean

# Create the virtual environment and install the project with every extra (re-run when setup.py changes)
$(VENV)/.installed: setup.py
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -q -e ".[tests,zoo,plots,box2d,minigrid]"
	touch $@

setup: $(VENV)/.installed

# The main job: a short, real HAEPO-vs-PPO run on CartPole-v1 that prints and plots the comparison; publishes
# docs/results/main_job.md (+ .json), docs/cartpole_haepo_vs_ppo.png and the README block that quotes the report
main: setup
	$(PYTHON) scripts/compare_cartpole.py --publish

compare: main

# HAEPO vs PPO training throughput on CartPole-v1, same process and VecEnv; publishes docs/results/throughput.md and
# the README block that quotes it
throughput: setup
	$(PYTHON) scripts/benchmark_throughput.py --publish

# Peak memory and time of one update for episodes of 10^2 to 10^5 steps, two-pass against one-pass (a few
# CPU-minutes, each case in a fresh process); publishes docs/results/memory.md and the README block that quotes it
memory: setup
	$(PYTHON) scripts/benchmark_memory.py --publish

# How HAEPO's defaults were chosen: steps to solve CartPole-v1 per setting and seed; publishes
# docs/results/steps_to_solve.md and the README block that quotes it (about 20 CPU-minutes)
steps-to-solve: setup
	$(PYTHON) scripts/steps_to_solve.py --table --publish --n-jobs 2

# The test command: lint, type check, then the tests (slow ones deselected)
test: setup lint type pytest

pytest: setup
	$(PYTHON) -m pytest -v -rs --color=yes -m "not slow" --durations=15 -n 2 tests/

pytest-slow: setup
	$(PYTHON) -m pytest -v -m "slow" --durations=15 tests/

lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)

format: setup
	$(VENV)/bin/ruff check --select I --fix $(LINT_PATHS)
	$(VENV)/bin/black $(LINT_PATHS)

check-codestyle: setup
	$(VENV)/bin/ruff check --select I $(LINT_PATHS)
	$(VENV)/bin/black --check $(LINT_PATHS)

type: setup
	$(VENV)/bin/mypy sb3_haepo

commit-checks: format type lint

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
