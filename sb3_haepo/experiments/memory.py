"""
Peak memory and time of one HAEPO update as episodes get longer (docs/METHOD.md section 2.2).

For each episode length ``T``, policy (an MLP on a small ``Box`` observation, a small CNN on ``uint8`` images) and
update mode, a fresh Python process

1. builds HAEPO on :class:`FixedLengthEnv` (``n_episodes`` envs, so that the group is ``n_episodes`` episodes of
   exactly ``T`` steps), runs one warm-up update on a short group (one-time allocations of torch and the optimizer),
2. fills the buffer with a group of ``n_episodes`` episodes of ``T`` steps through the buffer's own ``add`` and
   ``end_episodes``, as a rollout does (observations drawn at random, actions sampled from the policy with their
   log-probabilities, rewards drawn at random),
3. returns the memory the C allocator holds unused to the system (``malloc_trim``), resets the process's peak RSS
   (``/proc/self/clear_refs``) and reads it, runs ``train()`` once and reads the peak RSS again
   (``getrusage(RUSAGE_SELF).ru_maxrss``), the wall-clock time and, on a GPU, ``torch.cuda.max_memory_allocated``.

Each case runs in its own process because a process's peak RSS never goes down. One-pass cases whose update peak,
extrapolated from the longest one-pass case of the same policy measured before, exceeds ``--one-pass-max-mib`` are
not run (the report says so, with the projection). The modes:

- ``two-pass``: the exact update (``minibatch_size=None, clip_range=None``) with ``batch_size`` steps per chunk, the
  memory-bounded path;
- ``one-pass``: the same update with ``batch_size`` at least the group's size, so autograd goes through the whole
  group at once (the single-chunk path);
- ``default``: HAEPO's defaults (64-step minibatches on the clipped surrogate; pass 1 in chunks of the default
  ``batch_size=4096``).

Steps 2 and 3 are repeated ``--repeats`` times in the process, and the report gives the median. Each case's process
runs with glibc's mmap threshold fixed (:data:`MMAP_THRESHOLD_BYTES`, ``--mmap-threshold``): with its adaptive
default, how the C allocator lays out its heap moved a case's update peak by as much as 6 MiB from run to run; fixed,
every tensor above the threshold is unmapped when freed and the RSS follows the memory the update holds.

Every mode trains one epoch (``n_epochs=1``): the memory of an epoch does not depend on how many follow, and the
time of an update is ``n_epochs`` times the time per epoch plus the reference policy's pass.

With ``--publish`` (``make memory``) the report goes to ``docs/results/memory.md`` and replaces the README's ``memory``
block. ``--device cuda`` (or ``auto`` on a machine with a GPU) adds the CUDA peak to the report.
"""

import argparse
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_haepo
from sb3_haepo import HAEPO
from sb3_haepo.common.checks import check_int
from sb3_haepo.experiments import published

POLICIES = ("mlp", "cnn")
MODES = ("two-pass", "one-pass", "default")
# Observation and action spaces of each policy's FixedLengthEnv
IMAGE_SHAPE = (3, 16, 16)
MLP_OBS_DIM = 8
MLP_ACTION_DIM = 2
CNN_N_ACTIONS = 4
# The steps of the warm-up update's episodes
WARMUP_LENGTH = 32
MIB = 2**20

# glibc's malloc maps every allocation of at least this many bytes on its own and unmaps it when freed. Its default
# threshold adapts (it rises to the size of the largest block freed so far), so that after the first large free the
# update's tensors come from the heap, whose unused pages stay resident; the same case's update peak then varied by
# as much as 6 MiB between identical runs (the CNN at T = 100,000: 47 and 53 MiB). With the threshold fixed, the RSS
# follows the memory the update holds, and repeated runs agree to about 0.1 MiB. At 64 KiB (until 2026-11-30) the
# chunk's smaller buffers (a chunk's observations, actions, log-probabilities: 4-32 KiB each) still came from the heap,
# whose resident size crept up over the first few hundred chunks of a process and then stopped (about 0.3-0.5 MiB for
# the MLP): an update of 200 chunks showed it, one of 2 chunks not, whatever the episodes' length. At 4 KiB, each is
# mapped on its own too. Only glibc reads this variable; elsewhere it has no effect.
MMAP_THRESHOLD_BYTES = 4096

# The published settings, and what --publish writes (relative to the repository root)
DEFAULTS: dict[str, Any] = {
    "lengths": [100, 1_000, 10_000, 100_000],
    "policies": list(POLICIES),
    "modes": list(MODES),
    "n_episodes": 2,
    "batch_size": 1024,
    "one_pass_max_mib": 2048,
    "repeats": 3,
    "seed": 0,
    "threads": 1,
    "device": "cpu",
    "mmap_threshold": MMAP_THRESHOLD_BYTES,
}
PUBLISHED_REPORT = published.RESULTS_DIR / "memory.md"
PUBLISH_COMMAND = "python scripts/benchmark_memory.py --publish"
README_BLOCK = "memory"
# The target of the issue "long horizons": the two-pass update's peak at the longest episodes within this factor of
# its peak at 1,000-step episodes
TARGET_RATIO = 1.2
TARGET_LENGTHS = (1_000, 100_000)


class FixedLengthEnv(gym.Env):
    """
    Every episode lasts exactly ``length`` steps (then ``terminated``). Observations are drawn at random (standard
    normal vectors, or uniform ``uint8`` images), rewards from a standard normal.

    :param policy: ``"mlp"`` (``Box((8,), float32)`` observations, ``Box((2,))`` actions) or ``"cnn"``
        (``Box((3, 16, 16), uint8)`` images, ``Discrete(4)`` actions)
    :param length: the number of steps of every episode
    """

    def __init__(self, policy: str = "mlp", length: int = 100):
        super().__init__()
        if policy not in POLICIES:
            raise ValueError(f"Unknown policy {policy!r}, allowed: {POLICIES}")
        self.policy = policy
        self.length = check_int("length", length, 1)
        self.observation_space: spaces.Box
        self.action_space: spaces.Space
        if policy == "mlp":
            self.observation_space = spaces.Box(-np.inf, np.inf, (MLP_OBS_DIM,), np.float32)
            self.action_space = spaces.Box(-1.0, 1.0, (MLP_ACTION_DIM,), np.float32)
        else:
            self.observation_space = spaces.Box(0, 255, IMAGE_SHAPE, np.uint8)
            self.action_space = spaces.Discrete(CNN_N_ACTIONS)
        self.t = 0

    def sample_observations(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """:return: ``n`` observations drawn as the env draws them, shape (n, *obs_shape), in the space's dtype"""
        if self.policy == "mlp":
            return rng.standard_normal((n, *self.observation_space.shape), dtype=np.float32)
        return rng.integers(0, 256, (n, *self.observation_space.shape), dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self.sample_observations(1, self.np_random)[0], {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        reward = float(self.np_random.standard_normal())
        return self.sample_observations(1, self.np_random)[0], reward, self.t >= self.length, False, {}


class SmallCNN(BaseFeaturesExtractor):
    """
    A small CNN for small images: two stride-2 3x3 convolutions (16 and 32 channels) and a linear layer.
    (SB3's NatureCNN needs images of at least 36x36.)
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 64):
        super().__init__(observation_space, features_dim)
        n_channels, height, width = observation_space.shape
        self.cnn = th.nn.Sequential(
            th.nn.Conv2d(n_channels, 16, kernel_size=3, stride=2, padding=1),
            th.nn.ReLU(),
            th.nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),
            th.nn.ReLU(),
            th.nn.Flatten(),
        )
        with th.no_grad():
            n_flatten = self.cnn(th.zeros(1, n_channels, height, width)).shape[1]
        self.linear = th.nn.Sequential(th.nn.Linear(n_flatten, features_dim), th.nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))


@dataclass(frozen=True)
class MemoryCase:
    """One measurement: a policy, an episode length and an update mode, measured ``repeats`` times."""

    policy: str
    length: int
    mode: str
    n_episodes: int = 2
    batch_size: int = 1024
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    repeats: int = 1
    mmap_threshold: int = MMAP_THRESHOLD_BYTES  # glibc's mmap threshold in the case's process, bytes

    @property
    def n_steps(self) -> int:
        """N, the number of steps of the measured group."""
        return self.length * self.n_episodes


@dataclass(frozen=True)
class Measurement:
    """One update. Sizes in bytes."""

    rss_before: int  # RSS just before train(), buffer included (the peak RSS just after its reset)
    peak_rss: int  # peak RSS during train() (the process's peak, reset just before train())
    seconds: float  # wall-clock time of train()
    cuda_before: int | None = None  # torch.cuda.memory_allocated() just before train(), None without a GPU
    cuda_peak: int | None = None  # torch.cuda.max_memory_allocated() during train()

    @property
    def update_peak(self) -> int:
        """The update's peak RSS above the RSS just before it."""
        return self.peak_rss - self.rss_before

    @property
    def cuda_update_peak(self) -> int | None:
        """The update's peak of allocated CUDA memory above the amount allocated just before it."""
        if self.cuda_peak is None or self.cuda_before is None:
            return None
        return self.cuda_peak - self.cuda_before


def _median(values: Sequence[float]) -> float:
    return float(np.median(values))


@dataclass
class MemoryResult:
    """What one case measured: each update, and the buffer. Sizes in bytes."""

    case: MemoryCase
    measurements: list[Measurement]  # one per repeat, each on a freshly filled group
    batch_size: int  # the model's batch_size (steps per chunk)
    minibatch_size: int | None  # the model's minibatch_size (None: the exact update)
    buffer_bytes_per_step: int  # EpisodeBuffer.bytes_per_step
    buffer_held_bytes: int  # bytes_per_step times the steps held
    buffer_allocated_bytes: int  # EpisodeBuffer.nbytes (capacity up to twice the steps held)
    observation_dtype: str
    peak_reset: bool  # False where the peak could not be reset: peak_rss is then the process's peak since it started

    @property
    def update_peak(self) -> float:
        """The median over the repeats of the update's peak RSS above the RSS just before it."""
        return _median([m.update_peak for m in self.measurements])

    @property
    def peak_rss(self) -> float:
        """The median over the repeats of the peak RSS during the update."""
        return _median([m.peak_rss for m in self.measurements])

    @property
    def seconds(self) -> float:
        """The median over the repeats of the update's wall-clock time."""
        return _median([m.seconds for m in self.measurements])

    @property
    def cuda_update_peak(self) -> float | None:
        """The median over the repeats of the update's CUDA peak above the amount allocated before it."""
        peaks = [m.cuda_update_peak for m in self.measurements]
        return None if any(p is None for p in peaks) else _median([p for p in peaks if p is not None])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "MemoryResult":
        return cls(
            **{
                **record,
                "case": MemoryCase(**record["case"]),
                "measurements": [Measurement(**m) for m in record["measurements"]],
            }
        )


@dataclass(frozen=True)
class SkippedCase:
    """A one-pass case not run: its update peak, extrapolated from a shorter one, exceeds the limit."""

    case: MemoryCase
    projected_peak: int  # bytes: the shorter case's update peak times the ratio of their numbers of steps
    projected_from: int  # the episode length of the shorter case


def current_rss() -> int:
    """The process's resident set size now, in bytes (from ``/proc/self/statm``; the peak where that is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss()


def peak_rss() -> int:
    """The process's peak resident set size, in bytes (``ru_maxrss``: kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def release_free_memory() -> None:
    """
    Collect garbage and return the memory the C allocator holds but no longer uses to the system (glibc's
    ``malloc_trim``), so that the RSS measures what is in use. Only the collection where there is no glibc.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """
    Reset the process's peak RSS to its current RSS (Linux: write 5 to ``/proc/self/clear_refs``).

    :return: whether it could be reset
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    # The peak now reads the current RSS, up to the pages touched in between
    return peak_rss() <= current_rss() + 4 * MIB


def make_model(case: MemoryCase) -> HAEPO:
    """
    HAEPO for ``case``, on ``n_episodes`` copies of :class:`FixedLengthEnv`, training one epoch per update. ``two-pass``
    chunks by ``case.batch_size``, ``one-pass`` by at least the group's size; ``default`` keeps HAEPO's defaults
    (``batch_size`` included).
    """
    if case.mode not in MODES:
        raise ValueError(f"Unknown mode {case.mode!r}, allowed: {MODES}")
    env = DummyVecEnv([lambda: FixedLengthEnv(case.policy, case.length)] * case.n_episodes)
    kwargs: dict[str, Any] = {"n_episodes": case.n_episodes, "n_epochs": 1}
    if case.mode == "two-pass":
        kwargs.update(minibatch_size=None, clip_range=None, batch_size=case.batch_size)
    elif case.mode == "one-pass":
        # One chunk holds the whole group: autograd through every step at once
        kwargs.update(minibatch_size=None, clip_range=None, batch_size=max(case.batch_size, case.n_steps))
    policy = "MlpPolicy"
    if case.policy == "cnn":
        policy = "CnnPolicy"
        kwargs["policy_kwargs"] = {
            "features_extractor_class": SmallCNN,
            "features_extractor_kwargs": {"features_dim": 64},
            "net_arch": {"pi": [64], "vf": []},
        }
    model = HAEPO(policy, env, seed=case.seed, device=case.device, **kwargs)
    model.set_logger(Logger(None, []))
    return model


def fill_group(model: HAEPO, length: int, rng: np.random.Generator, chunk_steps: int = 4096) -> None:
    """
    Add a group of ``n_envs`` episodes of exactly ``length`` steps to the model's buffer, one vector step at a time
    through ``EpisodeBuffer.add`` and ``end_episodes``, as a rollout on :class:`FixedLengthEnv` does. The actions are
    sampled from the policy with their log-probabilities (as in ``collect_rollouts``), ``chunk_steps`` steps per
    forward pass.
    """
    buffer = model.rollout_buffer
    env = model.get_env()
    assert isinstance(env, DummyVecEnv)
    fixed_env = env.envs[0].unwrapped
    assert isinstance(fixed_env, FixedLengthEnv)
    n_envs = buffer.n_envs
    times_per_chunk = max(1, chunk_steps // n_envs)
    for start in range(0, length, times_per_chunk):
        n_times = min(times_per_chunk, length - start)
        # (n_times * n_envs, *obs_shape), in the observation space's dtype
        observations = fixed_env.sample_observations(n_times * n_envs, rng)
        with th.no_grad():
            distribution = model.policy.get_distribution(obs_as_tensor(observations, model.device))
            actions_tensor = distribution.get_actions()
            log_probs = distribution.log_prob(actions_tensor).cpu().numpy()
        actions = actions_tensor.cpu().numpy()
        rewards = rng.standard_normal(n_times * n_envs).astype(np.float32)
        for t in range(n_times):
            rows = slice(t * n_envs, (t + 1) * n_envs)
            buffer.add(observations[rows], actions[rows], rewards[rows], log_probs[rows])
    buffer.end_episodes(np.ones(n_envs, dtype=bool), truncated=np.zeros(n_envs, dtype=bool))


def measure_update(update: Callable[[], Any], cuda: bool = False) -> tuple[Measurement, bool]:
    """
    Measure one call of ``update`` (e.g. a model's ``train``) in this process: return the memory the C allocator
    holds unused to the system, reset the peak RSS (and, with ``cuda``, the CUDA peak), call ``update``, read the peak
    RSS, the wall-clock time and the CUDA peak. Shared by this benchmark and the language-model one
    (:func:`sb3_haepo.experiments.lm.measure_lm_memory_case`); call it in a fresh process, since a process's peak RSS
    only resets where ``/proc/self/clear_refs`` exists.

    :return: the measurement, and whether the peak RSS could be reset (False: the peak is the process's since it
        started)
    """
    release_free_memory()
    cuda_before = None
    if cuda:
        th.cuda.synchronize()
        th.cuda.reset_peak_memory_stats()
        cuda_before = th.cuda.memory_allocated()
    peak_reset = reset_peak_rss()
    # Just after the reset, the peak is the current RSS, read from the same counters as the peak after the update
    rss_before = peak_rss() if peak_reset else current_rss()
    start = time.perf_counter()
    update()
    if cuda:
        th.cuda.synchronize()
    seconds = time.perf_counter() - start
    cuda_peak = th.cuda.max_memory_allocated() if cuda else None
    return Measurement(rss_before, peak_rss(), seconds, cuda_before, cuda_peak), peak_reset


def measure_case(case: MemoryCase) -> MemoryResult:
    """Measure one case ``case.repeats`` times in this process (see the module's docstring). Call it in a fresh process."""
    th.set_num_threads(case.threads)
    rng = np.random.default_rng(case.seed)
    model = make_model(case)
    buffer = model.rollout_buffer
    cuda = model.device.type == "cuda"
    # Warm-up: torch's and the optimizer's one-time allocations are not the update's
    fill_group(model, min(case.length, WARMUP_LENGTH), rng)
    model.train()
    measurements, peak_reset = [], True
    for _ in range(case.repeats):
        buffer.pop_completed()
        fill_group(model, case.length, rng)
        assert buffer.n_completed == case.n_episodes and buffer.n_completed_steps == case.n_steps
        measurement, reset = measure_update(model.train, cuda)
        peak_reset = reset and peak_reset
        measurements.append(measurement)
    return MemoryResult(
        case=case,
        measurements=measurements,
        batch_size=model.batch_size,
        minibatch_size=model.minibatch_size,
        buffer_bytes_per_step=buffer.bytes_per_step,
        buffer_held_bytes=buffer.bytes_per_step * buffer.size,
        buffer_allocated_bytes=buffer.nbytes,
        observation_dtype=str(np.dtype(model.observation_space.dtype)),
        peak_reset=peak_reset,
    )


def mmap_threshold_env(threshold: int = MMAP_THRESHOLD_BYTES) -> dict[str, str]:
    """
    :param threshold: bytes; 0: glibc's adaptive default (the variable is not set)
    :return: the environment variable that fixes glibc's mmap threshold at ``threshold`` bytes
    """
    check_int("mmap_threshold", threshold, 0, why="bytes; 0: glibc's default")
    return {"MALLOC_MMAP_THRESHOLD_": str(threshold)} if threshold > 0 else {}


def run_in_subprocess(module: str, flag: str, case: dict[str, Any], extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """
    Run ``python -m module flag JSON(case)`` in a fresh Python process (with this process's ``sb3_haepo`` first on its
    path) and return the JSON object of the last line it prints. Shared by this benchmark and the language-model one.

    :param extra_env: environment variables set for that process only (e.g. :func:`mmap_threshold_env`)
    :raises RuntimeError: if the process fails (with the end of its standard error)
    """
    package_root = str(Path(sb3_haepo.__file__).resolve().parents[1])
    python_path = os.pathsep.join(path for path in (package_root, os.environ.get("PYTHONPATH")) if path)
    command = [sys.executable, "-m", module, flag, json.dumps(case)]
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": python_path}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"The case {case} failed (exit status {completed.returncode}):\n{completed.stderr[-4000:]}")
    record: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return record


def run_case_in_subprocess(case: MemoryCase) -> MemoryResult:
    """Measure ``case`` in a fresh Python process (with this process's ``sb3_haepo`` first on its path)."""
    return MemoryResult.from_dict(
        run_in_subprocess("sb3_haepo.experiments.memory", "--case", asdict(case), mmap_threshold_env(case.mmap_threshold))
    )


def plan_cases(
    lengths: Sequence[int],
    policies: Sequence[str],
    modes: Sequence[str],
    n_episodes: int,
    batch_size: int,
    seed: int,
    threads: int,
    device: str,
    repeats: int = 1,
    mmap_threshold: int = MMAP_THRESHOLD_BYTES,
) -> list[MemoryCase]:
    """:return: every case, policy by policy, in increasing episode length"""
    for name, values, allowed in (("policy", policies, POLICIES), ("mode", modes, MODES)):
        unknown = [value for value in values if value not in allowed]
        if unknown:
            raise ValueError(f"Unknown {name} {unknown}, allowed: {allowed}")
    lengths = [check_int("each of lengths", length, 1, why="steps per episode") for length in lengths]
    n_episodes = check_int("n_episodes", n_episodes, 2)
    batch_size = check_int("batch_size", batch_size, 1)
    repeats = check_int("repeats", repeats, 1)
    return [
        MemoryCase(policy, length, mode, n_episodes, batch_size, seed, threads, device, repeats, mmap_threshold)
        for policy in policies
        for length in sorted(set(lengths))
        for mode in modes
    ]


def one_pass_projection(results: Sequence[MemoryResult], case: MemoryCase, one_pass_max_mib: float) -> SkippedCase | None:
    """
    :return: for a one-pass case, its update peak extrapolated linearly in the number of steps from the longest
        one-pass case of the same policy in ``results``, when that exceeds ``one_pass_max_mib`` (the case is then not
        run); None otherwise (run it)
    """
    shorter = [r for r in results if r.case.policy == case.policy and r.case.mode == "one-pass"]
    if case.mode != "one-pass" or not shorter:
        return None
    last = max(shorter, key=lambda r: r.case.n_steps)
    projected = int(last.update_peak * case.n_steps / last.case.n_steps)
    if projected <= one_pass_max_mib * MIB:
        return None
    return SkippedCase(case, projected, last.case.length)


def run_cases(
    cases: Sequence[MemoryCase], one_pass_max_mib: float, verbose: bool = True
) -> tuple[list[MemoryResult], list[SkippedCase]]:
    """
    Measure each case in a fresh process, except the one-pass cases whose projected update peak exceeds
    ``one_pass_max_mib`` (:func:`one_pass_projection`: autograd through the whole group would need more memory than
    the benchmark may use).

    :return: the results, and the cases skipped
    """
    results: list[MemoryResult] = []
    skipped: list[SkippedCase] = []
    for case in cases:
        skip = one_pass_projection(results, case, one_pass_max_mib)
        if skip is not None:
            skipped.append(skip)
            continue
        result = run_case_in_subprocess(case)
        if verbose:
            print(
                f"{case.policy} T={case.length:>7,} {case.mode:>8}: update peak {_mib(result.update_peak):>8} MiB, "
                f"absolute {_mib(result.peak_rss):>8} MiB, {result.seconds:7.2f} s",
                file=sys.stderr,
            )
        results.append(result)
    return results, skipped


def _mib(n_bytes: float | None) -> str:
    if n_bytes is None:
        return "-"
    text = f"{n_bytes / MIB:,.1f}"
    return "0.0" if text == "-0.0" else text


def growth_per_step(results: Sequence[MemoryResult], policy: str, mode: str) -> float | None:
    """
    :return: the growth of the update peak per step of the group, in bytes: the difference of the update peaks of
        the two longest episode lengths measured for ``policy`` and ``mode``, divided by the difference of their
        numbers of steps (None with fewer than two lengths)
    """
    runs = sorted((r for r in results if r.case.policy == policy and r.case.mode == mode), key=lambda r: r.case.n_steps)
    if len(runs) < 2 or runs[-1].case.n_steps == runs[-2].case.n_steps:
        return None
    return (runs[-1].update_peak - runs[-2].update_peak) / (runs[-1].case.n_steps - runs[-2].case.n_steps)


def target_ratios(results: Sequence[MemoryResult]) -> dict[str, float]:
    """
    :return: for each policy, the two-pass update's peak (above the RSS before it) at the longest target length
        divided by its peak at the shortest (:data:`TARGET_LENGTHS`), where both were measured
    """
    short, long = TARGET_LENGTHS
    ratios = {}
    for policy in POLICIES:
        peaks = {r.case.length: r.update_peak for r in results if r.case.policy == policy and r.case.mode == "two-pass"}
        if short in peaks and long in peaks and peaks[short] > 0:
            ratios[policy] = peaks[long] / peaks[short]
    return ratios


def _mode_label(result: MemoryResult) -> str:
    if result.minibatch_size is not None:
        return f"{result.case.mode} (minibatch {result.minibatch_size}, chunks of {result.batch_size})"
    if result.case.mode == "two-pass":
        return f"two-pass (chunks of {result.batch_size})"
    return result.case.mode


def render_memory(
    results: Sequence[MemoryResult], skipped: Sequence[SkippedCase], command: str, machine: dict[str, str]
) -> str:
    """The markdown report (the README's ``memory`` block)."""
    if not results:
        raise ValueError("No result to report")
    first = results[0].case
    cuda = any(r.cuda_update_peak is not None for r in results)
    seconds_note = "."
    if first.mmap_threshold > 0:
        seconds_note = (
            ", and under the fixed mmap threshold, which maps every buffer above it afresh: slower than a process "
            "with glibc's default (`--mmap-threshold 0` measures that)."
        )
    lines = [
        published.generated_by(command),
        f"`{command}`: one `train()` of HAEPO (one epoch) on a group of M = {first.n_episodes} episodes of exactly "
        f"T steps (N = M T steps), device `{first.device}`, each case in a fresh process after a warm-up update; "
        f"each figure is the median of {first.repeats} update{'' if first.repeats == 1 else 's'}, each on a newly "
        "filled group. "
        "`two-pass`: the exact update (`minibatch_size=None, clip_range=None`) in chunks of `batch_size` steps; "
        "`one-pass`: the same with `batch_size >= N`, autograd through the whole group; `default`: HAEPO's "
        "defaults (64-step minibatches on the clipped surrogate, `batch_size=4096`). MLP: `MlpPolicy` (64x64) on "
        f"`Box(({MLP_OBS_DIM},), float32)` observations, `Box(({MLP_ACTION_DIM},))` actions; CNN: two stride-2 3x3 "
        f"convolutions (16, 32 channels) and a 64-unit layer on `uint8` images {'x'.join(map(str, IMAGE_SHAPE))}, "
        f"`Discrete({CNN_N_ACTIONS})` actions. Run on {published.format_machine_note(machine)}.",
        "",
        "- **update peak**: the process's peak RSS during `train()` minus its RSS just before it (which holds the "
        "buffer, the policy and torch). The peak is reset just before `train()` (`/proc/self/clear_refs`) and read "
        "with `getrusage(RUSAGE_SELF).ru_maxrss`. "
        + (
            "Each case's process runs with glibc's mmap threshold fixed at "
            f"{first.mmap_threshold / 1024:g} KiB (`MALLOC_MMAP_THRESHOLD_={first.mmap_threshold}`), so that every "
            "buffer of that size or more is unmapped when freed and the RSS follows the memory the update holds; with "
            "glibc's adaptive default, freed heap pages stay resident and the same case varied by as much as 6 MiB "
            "from run to run."
            if first.mmap_threshold > 0
            else "Each case's process runs with glibc's adaptive mmap threshold (its default), under which freed heap "
            "pages stay resident: the same case varied by as much as 6 MiB from run to run."
        ),
        "- **absolute peak**: the process's peak RSS during `train()`, everything included.",
        "- **buffer**: the bytes of the N steps the buffer holds (`EpisodeBuffer.bytes_per_step` times N; its arrays "
        "are pages from a pool that grows by doubling: up to about twice that is allocated, plus a page per env).",
        "- **s / train()**: wall-clock seconds of `train()` with `n_epochs=1` (the reference policy's pass, one "
        f"epoch), dependent on the machine's load{seconds_note}",
    ]
    if cuda:
        lines.append(
            "- **CUDA update peak**: `torch.cuda.max_memory_allocated()` during `train()` minus "
            "`torch.cuda.memory_allocated()` just before it."
        )
    if not all(r.peak_reset for r in results):
        lines.append("- The peak RSS could not be reset on this machine: the peaks include the filling of the buffer.")
    header = "| policy | T | N | mode | update peak (MiB) | absolute peak (MiB) | buffer (MiB) | s / train() |"
    rule = "|---|---|---|---|---|---|---|---|"
    if cuda:
        header += " CUDA update peak (MiB) |"
        rule += "---|"
    lines += ["", header, rule]
    rows: list[tuple[tuple[int, int, int], str]] = []
    for r in results:
        row = (
            f"| {r.case.policy} | {r.case.length:,} | {r.case.n_steps:,} | {_mode_label(r)} | {_mib(r.update_peak)} | "
            f"{_mib(r.peak_rss)} | {_mib(r.buffer_held_bytes)} | {r.seconds:.2f} |"
        )
        if cuda:
            row += f" {_mib(r.cuda_update_peak)} |"
        rows.append(((POLICIES.index(r.case.policy), r.case.length, MODES.index(r.case.mode)), row))
    for s in skipped:
        row = (
            f"| {s.case.policy} | {s.case.length:,} | {s.case.n_steps:,} | {s.case.mode} | not run: "
            f"{_mib(s.projected_peak)} projected from T = {s.projected_from:,} | | | |" + (" |" if cuda else "")
        )
        rows.append(((POLICIES.index(s.case.policy), s.case.length, MODES.index(s.case.mode)), row))
    lines += [row for _, row in sorted(rows)]
    lines += [
        "",
        "Growth of the update peak per step of the group (between the two longest T measured), against the buffer's "
        "bytes per step:",
        "",
        "| policy | two-pass | one-pass | default | buffer bytes per step |",
        "|---|---|---|---|---|",
    ]
    for policy in POLICIES:
        policy_results = [r for r in results if r.case.policy == policy]
        if not policy_results:
            continue
        growth = [growth_per_step(results, policy, mode) for mode in MODES]
        cells = ["-" if g is None else f"{g:,.0f} bytes" for g in growth]
        first_result = policy_results[0]
        lines.append(
            f"| {policy} | {' | '.join(cells)} | {first_result.buffer_bytes_per_step} "
            f"({first_result.observation_dtype} observations) |"
        )
    ratios = target_ratios(results)
    if ratios:
        short, long = TARGET_LENGTHS
        lines.append("")
        for policy, ratio in ratios.items():
            verdict = "met" if ratio <= TARGET_RATIO else "not met"
            lines.append(
                f"Two-pass update peak at T = {long:,} over T = {short:,}, {policy}: {ratio:.2f} "
                f"(target <= {TARGET_RATIO}: {verdict})."
            )
    return "\n".join(lines) + "\n"


def run_memory(
    lengths: Sequence[int] = tuple(DEFAULTS["lengths"]),
    policies: Sequence[str] = POLICIES,
    modes: Sequence[str] = MODES,
    n_episodes: int = DEFAULTS["n_episodes"],
    batch_size: int = DEFAULTS["batch_size"],
    one_pass_max_mib: float = DEFAULTS["one_pass_max_mib"],
    repeats: int = DEFAULTS["repeats"],
    seed: int = 0,
    threads: int = 1,
    device: str = "cpu",
    command: str = "sb3_haepo.experiments.memory.run_memory()",
    verbose: bool = True,
    mmap_threshold: int = MMAP_THRESHOLD_BYTES,
) -> tuple[str, list[MemoryResult]]:
    """Measure every case (:func:`plan_cases`, :func:`run_cases`) and return the report and the results."""
    load = published.load_average()
    cases = plan_cases(lengths, policies, modes, n_episodes, batch_size, seed, threads, device, repeats, mmap_threshold)
    results, skipped = run_cases(cases, one_pass_max_mib, verbose)
    th.set_num_threads(threads)
    machine = {**published.machine_note(), "load_average": load}
    return render_memory(results, skipped, command, machine), results


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=DEFAULTS["lengths"], help="episode lengths T")
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=DEFAULTS["policies"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=DEFAULTS["modes"])
    parser.add_argument("--n-episodes", type=int, default=DEFAULTS["n_episodes"], help="episodes per group (M)")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="steps per chunk (two-pass)")
    parser.add_argument(
        "--one-pass-max-mib",
        type=float,
        default=DEFAULTS["one_pass_max_mib"],
        help="skip a one-pass case whose update peak, extrapolated from a shorter one, exceeds this",
    )
    parser.add_argument(
        "--repeats", type=int, default=DEFAULTS["repeats"], help="updates per case, each on a new group (median)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--threads", type=int, default=DEFAULTS["threads"], help="torch CPU threads")
    parser.add_argument("--device", default=DEFAULTS["device"], help="cpu, cuda or auto (CUDA memory is reported on a GPU)")
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=DEFAULTS["mmap_threshold"],
        help="glibc's mmap threshold in each case's process, bytes (MALLOC_MMAP_THRESHOLD_; 0: glibc's default)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    published.add_report_arguments(parser, README_BLOCK, PUBLISHED_REPORT, "")
    args = parser.parse_args(argv)
    try:
        mmap_threshold_env(args.mmap_threshold)
    except ValueError as error:
        parser.error(str(error).replace("mmap_threshold", "--mmap-threshold", 1))
    if args.case:
        # One case, in this (fresh) process: its result as one JSON line
        line = json.dumps(measure_case(MemoryCase(**json.loads(args.case))).to_dict())
        print(line)
        return line
    is_default = all(getattr(args, key) == value for key, value in DEFAULTS.items())
    published.resolve_report_arguments(parser, args, README_BLOCK, PUBLISHED_REPORT, DEFAULTS if is_default else None)
    command = " ".join(["python scripts/benchmark_memory.py", *(sys.argv[1:] if argv is None else argv)])
    report, _ = run_memory(
        args.lengths,
        args.policies,
        args.modes,
        args.n_episodes,
        args.batch_size,
        args.one_pass_max_mib,
        args.repeats,
        args.seed,
        args.threads,
        args.device,
        command,
        mmap_threshold=args.mmap_threshold,
    )
    print(report, end="")
    published.save_report(args, README_BLOCK, report)
    return report


if __name__ == "__main__":
    main()
