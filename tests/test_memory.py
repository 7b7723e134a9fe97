"""
Memory that does not grow with episode length (docs/METHOD.md section 2.2): the two-pass gradient against autograd
through a whole group of 10^4-step episodes, the update reading the buffer's observations without copying them, the
buffer's bytes per step, and the memory benchmark (``scripts/benchmark_memory.py``) on tiny episodes.
"""

import subprocess
import tracemalloc

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import obs_as_tensor

from sb3_haepo import DPO, GRPO, HAEPO, EpisodeBuffer
from sb3_haepo.common.buffers import select_steps, step_observations
from sb3_haepo.common.utils import (
    haepo_loss,
    normalize_returns,
    reward_to_go_advantages,
    step_credit_loss,
    trajectory_scores,
)
from sb3_haepo.experiments import memory, published

LONG = 10_000


# One torch thread for every test of this file (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fill_near_mean(model: HAEPO, length: int, noise: float, rng: np.random.Generator) -> None:
    """
    A group of ``n_envs`` episodes of ``length`` steps whose actions are the policy's mean plus ``noise`` standard
    deviations of Gaussian noise, so that the episodes' log-likelihoods differ by a few nats even over 10^4 steps
    (the sum score's weights are then not one-hot, and every term of the gradient counts).
    """
    buffer = model.rollout_buffer
    n_envs = buffer.n_envs
    observations = rng.standard_normal((length * n_envs, memory.MLP_OBS_DIM)).astype(np.float32)
    with th.no_grad():
        distribution = model.policy.get_distribution(obs_as_tensor(observations, model.device))
        mean = distribution.distribution.mean
        std = distribution.distribution.stddev
        actions = (mean + noise * std * th.as_tensor(rng.standard_normal(mean.shape), dtype=th.float32)).numpy()
    rewards = rng.standard_normal(length * n_envs).astype(np.float32)
    for t in range(length):
        rows = slice(t * n_envs, (t + 1) * n_envs)
        buffer.add(observations[rows], actions[rows], rewards[rows], np.zeros(n_envs, np.float32))
    buffer.end_episodes(np.ones(n_envs, dtype=bool))


@pytest.mark.parametrize(
    "credit, score", [("episode", "mean"), ("episode", "sum"), ("reward_to_go", "mean")], ids=["mean", "sum", "rtg-mean"]
)
def test_two_pass_gradient_equals_one_pass_autograd_on_long_episodes(credit, score):
    """
    train()'s gradient, accumulated over chunks of 1024 steps, equals autograd through the whole group of three
    10^4-step episodes (J of docs/METHOD.md sections 1 and 9.3, differentiated directly), with all three terms acting.
    """
    rng = np.random.default_rng(0)
    env = make_vec_env(lambda: memory.FixedLengthEnv("mlp", LONG), n_envs=3)
    model = HAEPO(
        "MlpPolicy",
        env,
        n_episodes=3,
        n_epochs=1,
        batch_size=1024,
        minibatch_size=None,
        clip_range=None,
        credit=credit,
        trajectory_score=score,
        gamma=0.999,
        weight_ent_coef=0.05,
        ref_kl_coef=0.1,
        ref_update_interval=2,
        seed=0,
        device="cpu",
    )
    model.set_logger(Logger(None, []))
    # A Gaussian whose density at its mean is 1 in each dimension: the log-probabilities near the mean are close to
    # 0, so that the sum score of a 10^4-step episode stays small and its float32 rounding does not dominate the
    # comparison (with log-probabilities of about -2 per step, the scores are about -2e4 and rounded to about 1e-3)
    with th.no_grad():
        model.policy.log_std.fill_(-0.5 * np.log(2 * np.pi))
    # A reference that differs from the policy (and is not refreshed by this update), so that lam's term acts too
    with th.no_grad():
        for parameter in model.ref_policy.parameters():
            parameter.add_(0.05 * th.randn(parameter.shape, generator=th.Generator().manual_seed(1)))
    model._n_train_calls = 1
    fill_near_mean(model, LONG, noise=0.05 if score == "sum" else 1.0, rng=rng)

    # One pass: autograd through every step of the group at once
    batch = model.rollout_buffer.get()
    assert len(batch.episode_index) == 3 * LONG
    observations = obs_as_tensor(step_observations(batch, slice(None)), model.device)
    log_probs = model.policy.get_distribution(observations).log_prob(batch.actions)
    with th.no_grad():
        ref_log_probs = model.ref_policy.get_distribution(observations).log_prob(batch.actions)
    ref_scores = trajectory_scores(ref_log_probs, batch.episode_index, batch.lengths, score)
    beta, lam = model.weight_ent_coef, model.ref_kl_coef
    if credit == "episode":
        scores = trajectory_scores(log_probs, batch.episode_index, batch.lengths, score)
        terms = haepo_loss(scores, ref_scores, normalize_returns(batch.returns), beta, lam)
    else:
        advantages = reward_to_go_advantages(batch.rewards, batch.lengths, model.gamma)
        terms = step_credit_loss(log_probs, batch.episode_index, batch.lengths, ref_scores, advantages, score, beta, lam)
    weights = terms.log_weights.detach().exp()
    # Not collapsed: every episode's weight counts
    assert float(weights.min()) > 1e-3, weights
    model.policy.optimizer.zero_grad()
    log_probs.retain_grad()
    terms.loss.backward()
    expected = {name: p.grad.clone() for name, p in model.policy.named_parameters() if p.grad is not None}
    # dJ/dlog pi_t: the per-step coefficients of the surrogate (docs/METHOD.md section 2.1)
    step_coef = log_probs.grad.abs().sum()

    # Two passes, by train() itself: the gradient it steps with (taken before clipping and the optimizer step)
    gradients = []

    def capture_gradient() -> float:
        gradients.append({name: p.grad.clone() for name, p in model.policy.named_parameters() if p.grad is not None})
        return 0.0

    model._clip_and_step = capture_gradient  # type: ignore[method-assign]
    model.train()
    assert len(gradients) == 1
    assert gradients[0].keys() == expected.keys() and "log_std" in expected
    for name, want in expected.items():
        got = gradients[0][name]
        assert th.isfinite(got).all() and float(want.abs().max()) > 0
        # float32 sums over 3 x 10^4 steps: agreement to 1e-4 relative. log_std's gradient is a near-cancelling sum
        # (with actions near the mean each step contributes about -dJ/dlog pi_t, and these sum to 0 over the group):
        # its tolerance is the float32 rounding of a sum of that many terms of that size
        atol = 1e-6 * float(step_coef) if name == "log_std" else 1e-5 * float(want.abs().max())
        th.testing.assert_close(got, want, rtol=1e-4, atol=atol)


def test_buffer_bytes_per_step_uint8_images():
    buffer = EpisodeBuffer(
        spaces.Box(0, 255, (3, 16, 16), np.uint8), spaces.Discrete(4), n_envs=2, initial_capacity=8, page_rows=4
    )
    # The image in its own dtype, the action as one float32, reward and log-probability float32, and the update's three
    # float32 slots (advantage, log-probability at the update's start, KL term); nothing says which episode a step is in
    assert buffer.bytes_per_step == 3 * 16 * 16 * 1 + 4 + 4 + 4 + 3 * 4 == 792
    assert buffer.observations.dtype == np.uint8  # type: ignore[union-attr]
    for _ in range(5):
        buffer.add(np.full((2, 3, 16, 16), 7, np.uint8), np.zeros(2), np.ones(2), np.zeros(2))
    assert buffer.size == 10 and buffer.capacity == 16
    assert buffer.nbytes == 792 * 16
    # Dict observations: each key in its own dtype
    dict_buffer = EpisodeBuffer(
        spaces.Dict({"img": spaces.Box(0, 255, (2, 4, 4), np.uint8), "vec": spaces.Box(-1, 1, (3,), np.float64)}),
        spaces.Box(-1, 1, (2,), np.float32),
    )
    assert dict_buffer.bytes_per_step == 2 * 4 * 4 + 3 * 8 + 2 * 4 + 4 + 4 + 3 * 4
    # Benchmark's figure: the same property
    model = memory.make_model(memory.MemoryCase("cnn", 5, "two-pass"))
    assert model.rollout_buffer.bytes_per_step == 792


def test_batch_refers_to_buffer_observations():
    """get(copy_observations=False) copies no observation; its steps read the same observations as a copied batch."""
    buffer = EpisodeBuffer(spaces.Box(0, 255, (1, 2, 2), np.uint8), spaces.Discrete(2), n_envs=3, initial_capacity=4)
    rng = np.random.default_rng(0)
    for t in range(7):
        buffer.add(rng.integers(0, 256, (3, 1, 2, 2), dtype=np.uint8), np.zeros(3), np.ones(3), np.zeros(3))
        if t in (2, 4):
            buffer.end_episodes(np.array([t == 2, True, False]))
    copied, referring = buffer.get(), buffer.get(copy_observations=False)
    assert copied.observation_positions is None and referring.observation_positions is not None
    assert np.shares_memory(referring.observations, buffer.observations)
    assert not np.shares_memory(copied.observations, buffer.observations)
    n_steps = len(copied.episode_index)
    np.testing.assert_array_equal(step_observations(referring, slice(0, n_steps)), copied.observations)
    np.testing.assert_array_equal(step_observations(referring, slice(2, 5)), step_observations(copied, slice(2, 5)))
    indices = th.tensor([4, 0, 3])
    for batch in (copied, referring):
        selected = select_steps(batch, indices)
        np.testing.assert_array_equal(step_observations(selected, slice(None)), copied.observations[[4, 0, 3]])
        th.testing.assert_close(selected.episode_index, copied.episode_index[indices])


@pytest.mark.parametrize("algo", [HAEPO, GRPO, DPO])
def test_update_without_observation_copies_is_unchanged(algo, monkeypatch):
    """The updates read the buffer's observations in place: the parameters are bitwise those of an update on a copy."""
    params = []
    for copy in (True, False):
        env = make_vec_env("CartPole-v1", n_envs=3, seed=0)
        model = algo("MlpPolicy", env, n_episodes=4, n_epochs=2, batch_size=37, seed=0, device="cpu")
        get = model.rollout_buffer.get
        monkeypatch.setattr(model.rollout_buffer, "get", lambda copy_observations=True, get=get, copy=copy: get(copy))
        model.learn(600)
        assert model._n_train_calls >= 2
        params.append(th.nn.utils.parameters_to_vector(model.policy.parameters()).detach())
    assert th.equal(params[0], params[1])


def test_update_does_not_copy_the_groups_observations():
    """
    numpy's allocations during one update (tracemalloc follows them) stay far below the group's observations: the
    observations are gathered a chunk at a time, never as a whole (the copy the update used to make).
    """
    case = memory.MemoryCase("cnn", 5_000, "two-pass", n_episodes=2, batch_size=256)
    model = memory.make_model(case)
    memory.fill_group(model, case.length, np.random.default_rng(0))
    observation_bytes = case.n_steps * int(np.prod(memory.IMAGE_SHAPE))
    tracemalloc.start()
    try:
        model.train()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Per step: the int64 positions and episode index, the float32 actions, rewards, log-probabilities (~ 36 bytes
    # of the 768 of an observation); per chunk: 256 observations
    assert peak < 0.25 * observation_bytes, (peak, observation_bytes)


def test_measure_case_fields():
    """Each mode's settings, and the report's fields, from real (tiny) measurements in this process."""
    results = []
    for policy in memory.POLICIES:
        for mode in memory.MODES:
            result = memory.measure_case(memory.MemoryCase(policy, 20, mode, n_episodes=2, batch_size=8, repeats=2))
            assert result.case.n_steps == 40 and len(result.measurements) == 2
            assert result.buffer_bytes_per_step == (792 if policy == "cnn" else 8 * 4 + 2 * 4 + 4 + 4 + 3 * 4)
            assert result.buffer_held_bytes == 40 * result.buffer_bytes_per_step
            assert result.buffer_allocated_bytes >= result.buffer_held_bytes
            assert result.observation_dtype == ("uint8" if policy == "cnn" else "float32")
            for measurement in result.measurements:
                assert measurement.peak_rss >= measurement.rss_before > 0 and measurement.seconds > 0
                assert measurement.update_peak == measurement.peak_rss - measurement.rss_before
                # On the CPU, no CUDA figure
                assert measurement.cuda_peak is None and measurement.cuda_update_peak is None
            assert result.update_peak == np.median([m.update_peak for m in result.measurements])
            assert result.seconds == np.median([m.seconds for m in result.measurements])
            expected = {"two-pass": (8, None), "one-pass": (40, None), "default": (4096, 64)}[mode]
            assert (result.batch_size, result.minibatch_size) == expected
            assert memory.MemoryResult.from_dict(result.to_dict()) == result
            results.append(result)
    report = memory.render_memory(results, [], "python scripts/benchmark_memory.py --lengths 20", published.machine_note())
    assert report.startswith(published.generated_by("python scripts/benchmark_memory.py --lengths 20"))
    assert "each figure is the median of 2 updates" in report
    assert "| mlp | 20 | 40 | two-pass (chunks of 8) | " in report
    assert "| cnn | 20 | 40 | default (minibatch 64, chunks of 4096) | " in report
    assert "| cnn | 20 | 40 | one-pass | " in report
    # One length: no growth per step, no target line
    assert "| cnn | - | - | - | 792 (uint8 observations) |" in report
    assert "target" not in report


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs a GPU")
def test_measure_case_on_cuda():
    """On a GPU the update's CUDA peak is measured and reported."""
    result = memory.measure_case(memory.MemoryCase("cnn", 50, "two-pass", batch_size=16, device="cuda"))
    (measurement,) = result.measurements
    assert measurement.cuda_before is not None and measurement.cuda_peak is not None
    assert measurement.cuda_peak >= measurement.cuda_before and result.cuda_update_peak is not None
    report = memory.render_memory([result], [], "command", published.machine_note())
    assert "CUDA update peak (MiB)" in report and "`torch.cuda.max_memory_allocated()`" in report


def test_growth_skips_and_target_by_hand():
    def result(policy: str, length: int, mode: str, update_peak_mib: float) -> memory.MemoryResult:
        # Three updates: the median is the middle one
        measurements = [
            memory.Measurement(100 * memory.MIB, int((100 + update_peak_mib + change) * memory.MIB), 1.0)
            for change in (2.0, 0.0, -0.5)
        ]
        return memory.MemoryResult(
            memory.MemoryCase(policy, length, mode, repeats=3),
            measurements,
            batch_size=1024,
            minibatch_size=None,
            buffer_bytes_per_step=56,
            buffer_held_bytes=56 * 2 * length,
            buffer_allocated_bytes=56 * 4 * length,
            observation_dtype="float32",
            peak_reset=True,
        )

    results = [
        result("mlp", 1_000, "two-pass", 10.0),
        result("mlp", 100_000, "two-pass", 11.0),
        result("cnn", 1_000, "two-pass", 20.0),
        result("cnn", 100_000, "two-pass", 30.0),
        result("cnn", 1_000, "one-pass", 30.0),
    ]
    assert memory.target_ratios(results) == pytest.approx({"mlp": 1.1, "cnn": 1.5})
    # 1 MiB more over 198,000 more steps
    assert memory.growth_per_step(results, "mlp", "two-pass") == pytest.approx(memory.MIB / 198_000)
    assert memory.growth_per_step(results, "cnn", "one-pass") is None
    # A one-pass case 100 times longer than the last one measured is projected at 100 times its peak
    skip = memory.one_pass_projection(results, memory.MemoryCase("cnn", 100_000, "one-pass"), 2048)
    assert skip == memory.SkippedCase(memory.MemoryCase("cnn", 100_000, "one-pass"), 3000 * memory.MIB, 1_000)
    assert memory.one_pass_projection(results, memory.MemoryCase("cnn", 10_000, "one-pass"), 2048) is None
    assert memory.one_pass_projection(results, memory.MemoryCase("mlp", 100_000, "one-pass"), 2048) is None
    report = memory.render_memory(results, [skip], "command", published.machine_note())
    assert "Two-pass update peak at T = 100,000 over T = 1,000, mlp: 1.10 (target <= 1.2: met)." in report
    assert "Two-pass update peak at T = 100,000 over T = 1,000, cnn: 1.50 (target <= 1.2: not met)." in report
    assert "| cnn | 100,000 | 200,000 | one-pass | not run: 3,000.0 projected from T = 1,000 | | | |" in report
    assert "| mlp | 5 bytes | - | - | 56 (float32 observations) |" in report


def test_benchmark_command_in_fresh_processes(tmp_path):
    """The command: one case in a fresh process, its report written and quoted in a README block."""
    report, readme = tmp_path / "memory.md", tmp_path / "README.md"
    template = "# Title\n\n<!-- memory:begin -->\nstale\n<!-- memory:end -->\n"
    readme.write_text(template)
    argv = ["--policies", "mlp", "--lengths", "30", "--modes", "two-pass", "--batch-size", "16"]
    argv += ["--report", str(report), "--readme", str(readme)]
    content = memory.main(argv)
    assert content.startswith(published.generated_by(" ".join(["python scripts/benchmark_memory.py", *argv])))
    assert "| mlp | 30 | 60 | two-pass (chunks of 16) | " in content
    assert report.read_text() == content
    assert readme.read_text() == template.replace("stale\n", content)
    with pytest.raises(SystemExit):
        memory.main(["--publish", "--lengths", "30"])


def test_memory_cases_run_with_a_fixed_mmap_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Each case of this benchmark runs in a process with glibc's fixed mmap threshold (and the caller's environment);
    the LM benchmark's cases, which share ``run_in_subprocess``, do not.
    """
    calls: list[dict[str, str]] = []

    class Stop(Exception):
        pass

    def fake_run(command: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(env)
        if len(calls) == 1:
            return subprocess.CompletedProcess(command, 0, stdout='noise\n{"answer": 42}\n', stderr="")
        raise Stop

    monkeypatch.setattr(memory.subprocess, "run", fake_run)
    monkeypatch.setenv("SB3_HAEPO_TEST_MARKER", "kept")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    # The last line of the process's output is its record
    assert memory.run_in_subprocess("some.module", "--flag", {}) == {"answer": 42}
    with pytest.raises(Stop):
        memory.run_case_in_subprocess(memory.MemoryCase(policy="mlp", length=10, mode="two-pass"))
    from sb3_haepo.experiments import lm

    with pytest.raises(Stop):
        lm.run_lm_memory(lengths=(16,), methods=("HAEPO",), verbose=False)
    plain, memory_case, lm_case = calls
    assert "MALLOC_MMAP_THRESHOLD_" not in plain and plain["SB3_HAEPO_TEST_MARKER"] == "kept"
    assert memory_case["MALLOC_MMAP_THRESHOLD_"] == "4096" and memory_case["SB3_HAEPO_TEST_MARKER"] == "kept"
    assert "MALLOC_MMAP_THRESHOLD_" not in lm_case and lm_case["SB3_HAEPO_TEST_MARKER"] == "kept"
    # --mmap-threshold 0: glibc's default, the variable not set; another threshold is passed as it is
    assert memory.mmap_threshold_env(0) == {} and memory.mmap_threshold_env(65536) == {"MALLOC_MMAP_THRESHOLD_": "65536"}
    with pytest.raises(ValueError, match=r"mmap_threshold must be an integer >= 0 \(bytes; 0: glibc's default\), got -1"):
        memory.mmap_threshold_env(-1)


def test_the_cli_names_its_option_for_a_bad_mmap_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        memory.main(["--mmap-threshold", "-1"])
    assert "error: --mmap-threshold must be an integer >= 0 (bytes; 0: glibc's default), got -1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "credit, score, target_kl",
    [("episode", "sum", 10.0), ("episode", "mean", 1e-9), ("reward_to_go", "mean", 10.0), ("reward_to_go", "sum", 1e-9)],
)
def test_streamed_exact_update_equals_the_one_chunk_update(credit, score, target_kl):
    """
    The exact update over several chunks reads the group in place (GroupView: per-episode sums, each chunk's
    coefficients formed as it is read, per-step values in the buffer's update slots). On the same group, with three
    epochs, the policy-entropy bonus and adaptive beta and lam, it gives the parameters, logs and adapted
    coefficients of the same update in one chunk (a batch, with its graph), up to float32 rounding; with a tiny
    target_kl both stop after the first epoch.
    """
    outcomes = []
    for batch_size in (16, 4096):
        env = make_vec_env("CartPole-v1", n_envs=3, seed=0)
        model = HAEPO(
            "MlpPolicy",
            env,
            n_episodes=6,
            n_epochs=3,
            batch_size=batch_size,
            minibatch_size=None,
            clip_range=None,
            credit=credit,
            trajectory_score=score,
            gamma=0.99,
            ent_coef=0.01,
            weight_ent_coef="auto",
            ref_kl_coef="auto",
            target_kl=target_kl,
            seed=0,
            device="cpu",
        )
        _, callback = model._setup_learn(10_000)
        model.set_logger(Logger(None, []))
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, 0)
        n_steps = model.rollout_buffer.n_completed_steps
        assert (n_steps > batch_size) == (batch_size == 16), n_steps
        model.train()
        logs = dict(model.logger.name_to_value)
        parameters = th.nn.utils.parameters_to_vector(model.policy.parameters()).detach()
        outcomes.append((parameters, logs, model.weight_ent_coef, model.ref_kl_coef))
    (streamed, streamed_logs, *streamed_coefs), (one_chunk, one_chunk_logs, *one_chunk_coefs) = outcomes
    th.testing.assert_close(streamed, one_chunk, rtol=1e-5, atol=1e-6)
    assert streamed_logs["train/n_epochs"] == one_chunk_logs["train/n_epochs"] == (1 if target_kl < 1 else 3)
    for key in ("loss", "return_loss", "weight_entropy_loss", "ref_kl_loss", "approx_kl", "policy_entropy", "grad_norm"):
        assert streamed_logs[f"train/{key}"] == pytest.approx(one_chunk_logs[f"train/{key}"], rel=1e-4, abs=1e-6), key
    assert streamed_coefs == pytest.approx(one_chunk_coefs, rel=1e-6)


@pytest.mark.parametrize("credit", ["episode", "reward_to_go"])
def test_streamed_exact_update_forms_nothing_the_size_of_the_group(credit):
    """
    The exact update over 40,000 steps in chunks of 128 creates no tensor with more elements than a chunk's
    activations (torch's dispatcher sees every op that allocates, the backward pass included), and numpy and Python
    allocate less than a float32 per step of the group at any time (tracemalloc: torch's small Python-side objects,
    which grow with the number of chunks and then level off, are about half of that): the update of
    docs/METHOD.md section 2.2. The default update
    (minibatches, which shuffle the steps) does form per-step tensors: the check can fail.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LargestAllocation(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            # Views and in-place ops return (part of) an existing tensor: they allocate nothing
            if not any(ret.alias_info is not None for ret in func._schema.returns):
                self.numel = max([self.numel] + [t.numel() for t in tree_leaves(out) if isinstance(t, th.Tensor)])
            return out

    length, batch_size = 20_000, 128
    largest = {}
    for mode in ("exact", "default"):
        env = make_vec_env(lambda: memory.FixedLengthEnv("mlp", length), n_envs=2)
        exact = {"minibatch_size": None, "clip_range": None} if mode == "exact" else {}
        model = HAEPO(
            "MlpPolicy",
            env,
            n_episodes=2,
            n_epochs=3,
            batch_size=batch_size,
            credit=credit,
            ent_coef=0.01,
            weight_ent_coef="auto",
            ref_kl_coef="auto",
            target_kl=10.0,
            seed=0,
            device="cpu",
            **exact,
        )
        model.set_logger(Logger(None, []))
        memory.fill_group(model, length, np.random.default_rng(0))
        # A first update on this group: torch's one-time allocations are not the update's
        model.train()
        tracemalloc.start()
        try:
            model.train()
            _, numpy_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        allocations = LargestAllocation()
        with allocations:
            model.train()
        largest[mode] = allocations.numel
        if mode == "exact":
            assert numpy_peak < 4 * (2 * length), numpy_peak
    # A chunk's activations: 128 steps x 64 units
    assert largest["exact"] == batch_size * 64
    assert largest["default"] >= 2 * length
