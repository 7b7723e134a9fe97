"""
Run a benchmark grid (algos x envs x seeds), resumable, logged in the RL Zoo's layout.

Example: python scripts/run_benchmark.py --algos haepo ppo --envs CartPole-v1 --seeds 0 1 2 --n-jobs 2

Ablations: each --variant NAME:key=value,key=value also runs every algo of --algos with those constructor
arguments, labelled ALGO-NAME and logged in {log-dir}/ALGO-NAME/ (values are Python literals, or bare words
as strings), e.g.
  python scripts/run_benchmark.py --algos haepo --envs CartPole-v1 --seeds 0 1 2 \\
    --variant beta0:weight_ent_coef=0 --variant m32:n_episodes=32 --variant sum:trajectory_score=sum

Through the RL Zoo: each --zoo ALGO[=FILE] also runs a zoo algorithm (ppo, ars, haepo, a2c, ...) with the zoo's
hyperparameters for the env (FILE: a zoo yml; default: the zoo's own file, HAEPO's bundled one for haepo), labelled
ALGO-zoo; envs, normalisation, schedules and policy_kwargs are built by the zoo, the budget is the runner's, e.g.
  python scripts/run_benchmark.py --zoo ppo=hyperparams/ppo.yml --zoo ars --zoo haepo \
    --envs Pendulum-v1 --seeds 0 1 2 --n-jobs 2
"""

import argparse

from sb3_haepo.benchmark.configs import ALGOS, DEFAULT_N_TIMESTEPS, N_TIMESTEPS
from sb3_haepo.benchmark.runner import make_grid, parse_hyperparams, parse_variant, parse_zoo_algo, run_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--algos", nargs="+", default=None, choices=sorted(ALGOS), help="default: all, or none when --zoo is given"
    )
    parser.add_argument("--envs", nargs="+", required=True, help="Gymnasium ids, e.g. sb3_haepo/Bandit10-v0 CartPole-v1")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--n-timesteps", type=int, default=None, help="budget per run (default: per env, see configs)")
    parser.add_argument("--eval-freq", type=int, default=5_000, help="evaluate every this many env steps")
    parser.add_argument("--n-eval-episodes", type=int, default=10)
    parser.add_argument("--log-dir", default="logs/benchmark")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel processes")
    parser.add_argument(
        "--hyperparams",
        default="",
        metavar="KEY=VALUE,...",
        help="overrides of the defaults for every algo of --algos and their variants, e.g. n_epochs=10",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="run every algo of --algos also with these overrides, labelled ALGO-NAME (repeatable)",
    )
    parser.add_argument("--no-defaults", action="store_true", help="run only the variants, not the algos' defaults")
    parser.add_argument(
        "--zoo",
        action="append",
        default=[],
        metavar="ALGO[=FILE]",
        help="also run ALGO through the RL Zoo with FILE's settings (default: the zoo's own file), repeatable",
    )
    args = parser.parse_args()
    try:
        overrides = parse_hyperparams(args.hyperparams)
        variants = dict(parse_variant(text) for text in args.variant)
        if len(variants) != len(args.variant):
            raise ValueError(f"Two variants have the same name: {args.variant}")
        zoo_algos = dict(parse_zoo_algo(text) for text in args.zoo)
        if len(zoo_algos) != len(args.zoo):
            raise ValueError(f"An algo is given twice to --zoo: {args.zoo}")
    except ValueError as error:
        parser.error(str(error))
    if args.algos is None:
        args.algos = [] if zoo_algos else sorted(ALGOS)

    n_timesteps = args.n_timesteps or {env_id: N_TIMESTEPS.get(env_id, DEFAULT_N_TIMESTEPS) for env_id in args.envs}
    try:
        specs = make_grid(
            args.algos,
            args.envs,
            args.seeds,
            n_timesteps,
            args.log_dir,
            args.eval_freq,
            args.n_eval_episodes,
            hyperparams={algo: overrides for algo in [*args.algos, *zoo_algos]},
            variants=variants,
            include_defaults=not args.no_defaults,
            zoo_algos=zoo_algos,
        )
    except ValueError as error:
        parser.error(str(error))
    results = run_grid(specs, n_jobs=args.n_jobs)
    n_done = sum(result["status"] == "done" for result in results)
    print(f"{n_done} runs done, {len(results) - n_done} already complete, logs in {args.log_dir}")


if __name__ == "__main__":
    main()
