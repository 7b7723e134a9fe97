"""
Regenerate the benchmark report (curves PNG, markdown table, probability of improvement) from the logs.

Example: python scripts/report.py --log-dir logs/benchmark --out-dir logs/benchmark/report
"""

import argparse

from sb3_haepo.benchmark.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-dir", default="logs/benchmark")
    parser.add_argument("--out-dir", default=None, help="default: {log-dir}/report")
    parser.add_argument(
        "--threshold", nargs=2, action="append", default=[], metavar=("ENV_ID", "VALUE"), help="override a threshold"
    )
    parser.add_argument(
        "--reference", default="haepo", help="label whose probability of improvement over every other label is reported"
    )
    parser.add_argument(
        "--success-return",
        type=float,
        default=None,
        metavar="VALUE",
        help="where the env reports no is_success (e.g. MiniGrid), count a training episode as a success when its "
        "return is above VALUE (MiniGrid: 0)",
    )
    args = parser.parse_args()
    thresholds: dict[str, float | None] = {env_id: float(value) for env_id, value in args.threshold}
    path = write_report(
        args.log_dir, args.out_dir or f"{args.log_dir}/report", thresholds, args.reference, args.success_return
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
