import os

from setuptools import find_packages, setup

with open(os.path.join("sb3_haepo", "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

with open("README.md", encoding="utf-8") as file_handler:
    long_description = file_handler.read()

setup(
    name="sb3_haepo",
    packages=[package for package in find_packages() if package.startswith("sb3_haepo")],
    package_data={"sb3_haepo": ["py.typed", "version.txt", "hyperparams/*.yml"]},
    install_requires=[
        "stable_baselines3>=2.9,<3.0",
        "gymnasium>=1.0,<1.5",
        "torch>=2.3",
        "numpy>=1.20",
        "scipy>=1.8",
    ],
    extras_require={
        "tests": [
            # Run tests and coverage
            "pytest",
            "pytest-cov",
            "pytest-xdist",
            # Type check
            "mypy>=1.9.0,<2",
            # Lint code and sort imports (flake8 and isort replacement)
            "ruff>=0.5.6,<0.18",
            # Reformat
            "black>=26.1.0,<27",
            # progress_bar=True and tensorboard_log
            "tqdm",
            "rich",
            "tensorboard",
            # tests/test_minigrid.py (the MiniGrid tasks of sb3_haepo.envs.minigrid)
            "minigrid>=3.0,<4",
        ],
        # MiniGrid's long-horizon sparse tasks (sb3_haepo.envs.minigrid: DoorKey-16x16, KeyCorridorS6R3)
        "minigrid": ["minigrid>=3.0,<4"],
        "zoo": [
            "rl_zoo3>=2.9,<3.0",
            "sb3_contrib>=2.9,<3.0",
            "optuna>=4.0",
            # rl_zoo3's console script, enjoy, --optimize report, plots and benchmark need these
            "requests",
            "pandas>=2.2,<3",
            "matplotlib",
            "seaborn",
            "scipy",
            "pytablewriter",
            # train -tb (tensorboard) and -P (progress bar)
            "tensorboard",
            "tqdm",
            "rich",
            # enjoy without --no-render opens a pygame window
            "gymnasium[classic-control]",
            # plot_from_file -r (rliable figures)
            "rliable>=1.2",
            # --storage postgresql+psycopg://... (distributed tuning): PostgreSQL driver, psycopg 3
            "psycopg[binary]>=3.1",
        ],
        # LunarLander in the RL Zoo hyperparameters
        "box2d": ["gymnasium[box2d]"],
        # Benchmark runner and report
        "plots": [
            "matplotlib",
            "pandas>=2.2,<3",
            "rliable>=1.2",
            "seaborn",
            "scipy",
            "tqdm",
        ],
    },
    entry_points={"console_scripts": ["haepo-zoo = sb3_haepo.zoo:main"]},
    description="HAEPO (History-Aggregated Exploratory Policy Optimization) for Stable-Baselines3",
    author="sb3_haepo developers",
    license="MIT",
    long_description=long_description,
    long_description_content_type="text/markdown",
    version=__version__,
    python_requires=">=3.10",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
)
