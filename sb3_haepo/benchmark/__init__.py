"""Side-by-side benchmark of HAEPO against PPO, GRPO and DPO: a resumable runner and a report from its logs."""

from sb3_haepo.benchmark.configs import ALGOS, get_hyperparams
from sb3_haepo.benchmark.report import load_runs, summary_table, write_report
from sb3_haepo.benchmark.runner import RunSpec, make_grid, run_grid, run_one

__all__ = [
    "ALGOS",
    "RunSpec",
    "get_hyperparams",
    "load_runs",
    "make_grid",
    "run_grid",
    "run_one",
    "summary_table",
    "write_report",
]
