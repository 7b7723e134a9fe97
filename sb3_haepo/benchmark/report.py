"""Report of a benchmark, regenerated from its logs: learning curves, a markdown table, probability of improvement."""

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics

from sb3_haepo.benchmark.configs import THRESHOLDS, env_folder_name
from sb3_haepo.benchmark.runner import COMPLETE_MARKER, RUN_INFO


class Run(NamedTuple):
    """The logs of one complete run (``algo`` is the run's label: ``ppo``, ``haepo``, or a variant ``haepo-beta0``)."""

    algo: str
    env_id: str
    seed: int
    timesteps: np.ndarray  # (n_evals,)
    eval_returns: np.ndarray  # (n_evals,) mean return of each evaluation
    eval_train_times: np.ndarray  # (n_evals,) training wall-clock seconds at each evaluation
    env_steps_per_s: float
    monitor: pd.DataFrame  # training episodes: r, l, t and the env's info keys


def load_runs(log_dir: str | Path, success_return: float | None = None) -> list[Run]:
    """
    :param log_dir: root of the logs written by :func:`~sb3_haepo.benchmark.runner.run_grid`
    :param success_return: for runs whose training monitor has no ``is_success`` column (envs that do not report
        one, e.g. MiniGrid), derive it: an episode succeeded when its return is above this value (MiniGrid: 0,
        since it rewards only success). None: no column is derived
    :return: every complete run under it (incomplete ones are ignored)
    """
    runs = []
    for marker in sorted(Path(log_dir).glob(f"*/*/{COMPLETE_MARKER}")):
        run_dir = marker.parent
        info = json.loads((run_dir / RUN_INFO).read_text())
        evaluations = np.load(run_dir / "evaluations.npz")
        monitors = [pd.read_csv(path, skiprows=1) for path in sorted(run_dir.glob("*.monitor.csv"))]
        monitor = pd.concat(monitors).sort_values("t") if monitors else pd.DataFrame()
        if success_return is not None and "r" in monitor and "is_success" not in monitor:
            monitor["is_success"] = monitor["r"] > success_return
        n_evals = len(evaluations["timesteps"])
        runs.append(
            Run(
                algo=info.get("label", info["algo"]),
                env_id=info["env_id"],
                seed=int(info["seed"]),
                timesteps=evaluations["timesteps"],
                eval_returns=evaluations["results"].mean(axis=1) if n_evals else np.zeros(0),
                eval_train_times=np.asarray(info["eval_train_times_s"][:n_evals], dtype=float),
                env_steps_per_s=float(info["env_steps_per_s"]),
                monitor=monitor,
            )
        )
    return runs


# Seed of rliable's bootstraps (IQM and probability-of-improvement CIs), so that a report regenerated from the same
# logs is the same to the digit, as the percentile bootstrap of bootstrap_ci is
RLIABLE_SEED = 0


def _interval_estimates(scores: dict[str, Any], func: Any, reps: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    rliable's ``get_interval_estimates``, seeded with :data:`RLIABLE_SEED`: rliable's stratified bootstraps draw their
    indices from numpy's global generator (``np.random.choice``) whatever ``random_state`` says, so that generator is
    seeded for the call and its state restored after.
    """
    state = np.random.get_state()
    np.random.seed(RLIABLE_SEED)
    try:
        return rly.get_interval_estimates(scores, func, reps=reps)
    finally:
        np.random.set_state(state)


def bootstrap_ci(values: np.ndarray, n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """
    95% percentile-bootstrap confidence interval of the mean over the first axis.

    :param values: shape (n_runs,)
    :return: lower and upper bounds
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def first_crossing(values: np.ndarray, threshold: float) -> int | None:
    """:return: the index of the first value >= threshold, or None"""
    hits = np.flatnonzero(np.asarray(values) >= threshold)
    return int(hits[0]) if len(hits) else None


def _curves(runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    """:return: the common timesteps and the stacked evaluation curves (n_runs, n_evals), cut to the shortest run"""
    n_evals = min(len(run.timesteps) for run in runs)
    return runs[0].timesteps[:n_evals], np.stack([run.eval_returns[:n_evals] for run in runs])


def save_png(fig: Any, path: Path, colors: int = 128) -> None:
    """
    Save a matplotlib figure as a small PNG: 100 dpi, colours reduced to an adaptive palette (about 3x smaller,
    so that published reports stay light).

    :param fig: a matplotlib figure
    :param colors: size of the palette
    """
    from PIL import Image

    fig.savefig(path, dpi=100)
    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(colors=colors)
    palette.save(path, optimize=True)


def plot_learning_curves(runs: list[Run], env_id: str, path: Path, x_axis: str = "timesteps") -> None:
    """
    Mean evaluation return of each algo, with 95% bootstrap bands over seeds (PNG).

    :param x_axis: ``"timesteps"`` (env steps) or ``"walltime"``: training wall-clock seconds (evaluation time
        excluded), the median over the seeds of the time at which each evaluation happened
    """
    if x_axis not in ("timesteps", "walltime"):
        raise ValueError(f"Unknown x_axis {x_axis!r}, allowed: 'timesteps', 'walltime'")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in sorted({run.algo for run in runs}):
        group = [run for run in runs if run.algo == algo]
        timesteps, curves = _curves(group)
        if x_axis == "walltime":
            xs = np.median(np.stack([run.eval_train_times[: len(timesteps)] for run in group]), axis=0)
        else:
            xs = timesteps
        bands = np.array([bootstrap_ci(curves[:, i]) for i in range(curves.shape[1])])
        ax.plot(xs, curves.mean(axis=0), label=f"{algo} ({len(curves)} seeds)")
        ax.fill_between(xs, bands[:, 0], bands[:, 1], alpha=0.2)
    ax.set_xlabel("env steps" if x_axis == "timesteps" else "training wall-clock (s, median over seeds)")
    ax.set_ylabel("mean evaluation return")
    ax.set_title(env_id)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def binned_training_metric(monitor: pd.DataFrame, column: str, n_timesteps: int, n_bins: int = 20) -> np.ndarray:
    """
    Mean of a per-episode column of the training monitor in ``n_bins`` equal bins of env steps.

    An episode falls in the bin of the env step at which it ended (cumulative sum of the episode lengths ``l``).
    Bins without an episode are NaN.

    :return: shape (n_bins,)
    """
    ends = monitor["l"].cumsum().to_numpy()
    bins = np.minimum((ends * n_bins) // max(n_timesteps, 1), n_bins - 1)
    values = monitor[column].astype(float).to_numpy()
    sums = np.bincount(bins, weights=values, minlength=n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def plot_training_metric(runs: list[Run], env_id: str, column: str, path: Path, n_bins: int = 20) -> None:
    """
    A per-episode metric of the training episodes (e.g. ``regret``, ``is_success``) against env steps: mean per bin
    of env steps, averaged over seeds, with 95% bootstrap bands (PNG).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in sorted({run.algo for run in runs}):
        group = [run for run in runs if run.algo == algo]
        n_timesteps = min(int(run.monitor["l"].sum()) for run in group)
        curves = np.stack([binned_training_metric(run.monitor, column, n_timesteps, n_bins) for run in group])
        xs = (np.arange(n_bins) + 1) * n_timesteps / n_bins
        keep = ~np.isnan(curves).any(axis=0)
        bands = np.array([bootstrap_ci(curves[:, i]) for i in np.flatnonzero(keep)])
        ax.plot(xs[keep], curves[:, keep].mean(axis=0), label=f"{algo} ({len(curves)} seeds)")
        ax.fill_between(xs[keep], bands[:, 0], bands[:, 1], alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"training {column} (mean per bin)")
    ax.set_title(env_id)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def to_markdown(table: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    """:return: the table as a GitHub markdown table (without the optional ``tabulate`` dependency of pandas)"""

    def cell(value: Any) -> str:
        return float_format.format(value) if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + " --- |" * len(table.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def summary_table(runs: list[Run], thresholds: dict[str, float | None] | None = None) -> pd.DataFrame:
    """
    One row per (env, algo): final return (mean of the last evaluation over seeds) with its 95% bootstrap CI,
    IQM with its CI (rliable), steps and wall-clock to the threshold (median and range over the seeds that reached
    it, and how many did), the mean of all evaluations of a run (area under the learning curve) with its CI,
    env steps per second, and from the training episodes: mean per-step regret (mean and
    std over seeds, and the same over the last 20% of the episodes) and the success rate of the last 100
    episodes when the env reports them.
    """
    thresholds = {**THRESHOLDS, **(thresholds or {})}
    rows = []
    for env_id in sorted({run.env_id for run in runs}):
        threshold = thresholds.get(env_id)
        for algo in sorted({run.algo for run in runs if run.env_id == env_id}):
            group = [run for run in runs if run.env_id == env_id and run.algo == algo]
            finals = np.array([run.eval_returns[-1] for run in group])
            low, high = bootstrap_ci(finals)
            _, iqm_ci = _interval_estimates({algo: finals[:, None]}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=2000)
            row: dict[str, Any] = {
                "env": env_id,
                "algo": algo,
                "seeds": len(group),
                "final return [95% CI]": f"{_fmt(finals.mean())} [{_fmt(low)}, {_fmt(high)}]",
                "IQM [95% CI]": f"{_fmt(metrics.aggregate_iqm(finals[:, None]))} "
                f"[{_fmt(iqm_ci[algo][0][0])}, {_fmt(iqm_ci[algo][1][0])}]",
            }
            if threshold is None:
                row["steps to threshold"] = "n/a"
                row["wall-clock to threshold (s)"] = "n/a"
            else:
                crossings = [(run, first_crossing(run.eval_returns, threshold)) for run in group]
                reached = [(run, index) for run, index in crossings if index is not None]
                if reached:
                    steps = np.array([run.timesteps[index] for run, index in reached])
                    times = np.array([run.eval_train_times[index] for run, index in reached])
                    row["steps to threshold"] = (
                        f"{_fmt(np.median(steps))} ({_fmt(steps.min())}-{_fmt(steps.max())}), {len(reached)}/{len(group)}"
                    )
                    row["wall-clock to threshold (s)"] = f"{np.median(times):.1f} ({times.min():.1f}-{times.max():.1f})"
                else:
                    row["steps to threshold"] = f"never, 0/{len(group)}"
                    row["wall-clock to threshold (s)"] = "never"
            auc = np.array([run.eval_returns.mean() for run in group])
            auc_low, auc_high = bootstrap_ci(auc)
            row["mean of all evaluations (AUC) [95% CI]"] = f"{_fmt(auc.mean())} [{_fmt(auc_low)}, {_fmt(auc_high)}]"
            row["env steps/s"] = f"{np.mean([run.env_steps_per_s for run in group]):.0f}"
            if all("regret" in run.monitor for run in group):
                regrets = np.array([run.monitor["regret"].mean() for run in group])
                ddof = min(1, len(regrets) - 1)
                row["mean regret per step (std over seeds)"] = f"{regrets.mean():.4f} ({regrets.std(ddof=ddof):.4f})"
                # The last fifth of the training episodes: where the policy ended up
                late = np.array([run.monitor["regret"].iloc[-max(len(run.monitor) // 5, 1) :].mean() for run in group])
                row["regret, last 20% of episodes (std)"] = f"{late.mean():.4f} ({late.std(ddof=ddof):.4f})"
            if all("is_success" in run.monitor for run in group):
                success = np.array([run.monitor["is_success"].astype(float).iloc[-100:].mean() for run in group])
                row["train success (last 100 ep.)"] = f"{success.mean():.2f}"
            rows.append(row)
    return pd.DataFrame(rows)


def _score(run: Run, metric: str) -> float:
    """:return: the run's final evaluation return (``"final"``) or the mean of all its evaluations (``"auc"``)"""
    if metric == "final":
        return float(run.eval_returns[-1])
    if metric == "auc":
        return float(run.eval_returns.mean())
    raise ValueError(f"Unknown metric {metric!r}, allowed: 'final', 'auc'")


def _final_matrix(runs: list[Run], algo: str, env_ids: list[str], metric: str = "final") -> np.ndarray:
    """:return: scores (n_runs, n_envs), runs in seed order, cut to the smallest number of runs over the envs"""
    per_env = [
        [_score(run, metric) for run in sorted(runs, key=lambda r: r.seed) if run.algo == algo and run.env_id == env_id]
        for env_id in env_ids
    ]
    n_runs = min(len(values) for values in per_env)
    return np.array([values[:n_runs] for values in per_env]).T


def probability_of_improvement(runs: list[Run], algo: str = "haepo", reps: int = 2000, metric: str = "final") -> pd.DataFrame:
    """
    Probability that ``algo`` beats each other algo on a run's score (rliable), averaged over the envs
    both were run on, with 95% stratified-bootstrap CIs.

    :param metric: the score of a run: ``"final"``, its last evaluation return, or ``"auc"``, the mean of all its
        evaluations (area under the learning curve: rewards learning fast, where the final returns saturate)

    :param algo: a label of the runs: an algo (``haepo``) or a variant (``haepo-beta0``); the others are the baselines

    :return: one row per baseline: baseline, envs, P(algo > baseline), CI low, CI high
    """
    rows = []
    for baseline in sorted({run.algo for run in runs} - {algo}):
        env_ids = sorted(
            {run.env_id for run in runs if run.algo == algo} & {run.env_id for run in runs if run.algo == baseline}
        )
        if not env_ids:
            continue

        pair = {
            f"{algo},{baseline}": (_final_matrix(runs, algo, env_ids, metric), _final_matrix(runs, baseline, env_ids, metric))
        }
        point, interval = _interval_estimates(pair, metrics.probability_of_improvement, reps=reps)
        key = f"{algo},{baseline}"
        rows.append(
            {
                "baseline": baseline,
                "envs": ", ".join(env_ids),
                f"P({algo} > baseline)": float(np.squeeze(point[key])),
                "CI low": float(np.squeeze(interval[key][0])),
                "CI high": float(np.squeeze(interval[key][1])),
            }
        )
    return pd.DataFrame(rows)


def write_report(
    log_dir: str | Path,
    out_dir: str | Path,
    thresholds: dict[str, float | None] | None = None,
    reference: str = "haepo",
    success_return: float | None = None,
) -> Path:
    """
    Regenerate the report from the logs: ``{out_dir}/{env}_curves.png`` (against env steps) and
    ``{out_dir}/{env}_curves_walltime.png`` (against training wall-clock) per env, and ``{out_dir}/report.md``.

    :param reference: the label whose probability of improvement over each other label is reported
    :param success_return: see :func:`load_runs`: training success derived from the return where the env reports none

    :return: the path of ``report.md``
    """
    runs = load_runs(log_dir, success_return)
    if not runs:
        raise ValueError(f"No complete run under {log_dir!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Benchmark report\n\nRegenerated from the logs in `{log_dir}` ({len(runs)} complete runs).\n"]
    if success_return is not None:
        lines.append(f"Training success, where the env reports none: an episode whose return is above {success_return:g}.\n")
    lines.append("Final return: mean evaluation return (deterministic actions) at the last evaluation.\n")
    table = summary_table(runs, thresholds)
    lines.append(to_markdown(table))
    for metric, title in (("final", "final return"), ("auc", "mean of all evaluations, AUC")):
        improvement = probability_of_improvement(runs, reference, metric=metric)
        if len(improvement):
            lines.append(f"\n## Probability of improvement of {reference} ({title}, rliable)\n")
            lines.append(to_markdown(improvement))
    lines.append("\n## Learning curves (95% bootstrap bands over seeds)\n")
    for env_id in sorted({run.env_id for run in runs}):
        for x_axis, suffix in (("timesteps", ""), ("walltime", "_walltime")):
            name = f"{env_folder_name(env_id)}_curves{suffix}.png"
            plot_learning_curves([run for run in runs if run.env_id == env_id], env_id, out / name, x_axis)
            lines.append(f"![{env_id}]({name})\n")
        env_runs = [run for run in runs if run.env_id == env_id]
        for column in ("regret", "is_success"):
            if all(column in run.monitor for run in env_runs):
                name = f"{env_folder_name(env_id)}_train_{column}.png"
                plot_training_metric(env_runs, env_id, column, out / name)
                lines.append(f"![{env_id} {column}]({name})\n")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
