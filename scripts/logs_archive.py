"""
Pack a benchmark grid's logs into an archive to commit beside its report, or unpack one to regenerate the report or
resume the grid on a fresh checkout (``logs/`` is not in git).

Examples:
  python scripts/logs_archive.py pack --log-dir logs/long10k --archive docs/results/long10k/logs.tar.xz
  python scripts/logs_archive.py unpack --archive docs/results/long10k/logs.tar.xz --log-dir logs/long10k
"""

import argparse

from sb3_haepo.benchmark.archive import pack_logs, unpack_logs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("--log-dir", required=True, help="root of the grid's logs")
    parser.add_argument("--archive", required=True, help="the .tar.xz file")
    args = parser.parse_args()
    if args.action == "pack":
        n_runs = pack_logs(args.log_dir, args.archive)
        print(f"packed {n_runs} complete runs of {args.log_dir} into {args.archive}")
    else:
        restored, skipped = unpack_logs(args.archive, args.log_dir)
        print(f"restored {restored} runs into {args.log_dir}; {skipped} already there were left as they are")


if __name__ == "__main__":
    main()
