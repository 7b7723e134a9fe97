"""
Pure, differentiable trajectory-level math shared by the episodic algorithms.

Everything here works on one *group* of ``M`` complete episodes and on tensors of shape ``(M,)``
(per episode) or ``(N,)`` (per step, with an ``episode_index`` of shape ``(N,)`` mapping each step to its episode).
"""

import math
import re
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch as th
from scipy.signal import lfilter

from sb3_haepo.common.checks import check_int, check_optional_int, check_optional_real, check_real

NormalizeReturns = Literal["sum", "zscore"]
TrajectoryScore = Literal["sum", "mean"]
Credit = Literal["episode", "reward_to_go"]
CreditWeighting = Literal["episode", "step"]
Baseline = Literal["time", "value"]

NORMALIZE_RETURNS_OPTIONS: tuple[str, ...] = ("sum", "zscore")
TRAJECTORY_SCORE_OPTIONS: tuple[str, ...] = ("sum", "mean")
CREDIT_OPTIONS: tuple[str, ...] = ("episode", "reward_to_go")
CREDIT_WEIGHTING_OPTIONS: tuple[str, ...] = ("episode", "step")
BASELINE_OPTIONS: tuple[str, ...] = ("time", "value")

# The value head's loss coefficient of baseline="value" when vf_coef is None (PPO's default)
DEFAULT_VF_COEF = 0.5

# Adaptive coefficients (docs/METHOD.md section 10): the start value of "auto", and the bounds every adapted value is
# kept within
ADAPTIVE_COEF_START = 0.01
ADAPTIVE_COEF_MIN = 1e-6
ADAPTIVE_COEF_MAX = 10.0
# The default target of KL(w || w_ref) after an update, for ref_kl_coef="auto"
DEFAULT_TARGET_REF_KL = 0.01
# PPO's adaptive KL penalty: the tolerance band around the target, and the factor applied outside it
KL_TOLERANCE = 1.5
KL_COEF_FACTOR = 2.0
# The largest change of log(beta) in one update: beta at most doubles or halves, as lam does under PPO's rule
MAX_LOG_ENT_COEF_STEP = math.log(2.0)
_AUTO_COEF = re.compile(r"^auto(?:_(?P<start>.+))?$")


def _check_1d_same_shape(**tensors: th.Tensor) -> None:
    shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 1 or any(shape != first for shape in shapes.values()):
        raise ValueError(f"Expected 1D tensors of the same shape, got shapes {shapes}")


def segment_sum(values: th.Tensor, segment_index: th.Tensor, n_segments: int) -> th.Tensor:
    """
    Sum per-step values into per-episode totals.

    :param values: per-step values, shape (N,)
    :param segment_index: episode of each step, integers in ``[0, n_segments)``, shape (N,)
    :param n_segments: number of episodes M
    :return: per-episode sums, shape (M,)
    """
    if values.shape != segment_index.shape or values.ndim != 1:
        raise ValueError(
            "values and segment_index must be 1D with the same shape, "
            f"got {tuple(values.shape)} and {tuple(segment_index.shape)}"
        )
    # (N,) -> (M,)
    return th.zeros(n_segments, dtype=values.dtype, device=values.device).index_add_(0, segment_index, values)


def trajectory_scores(
    step_log_probs: th.Tensor,
    episode_index: th.Tensor,
    episode_lengths: th.Tensor,
    score: TrajectoryScore = "mean",
) -> th.Tensor:
    """
    Trajectory score of each episode from its per-step log-likelihoods.

    ``"sum"`` is the paper's cumulative log-likelihood ``L_k = sum_t log pi(a_t | s_t)`` (docs/METHOD.md section 1, step 2).
    ``"mean"`` is the length-normalised ``L_k / T_k``, which keeps episodes of different lengths
    on the same scale (docs/METHOD.md section 3: with ``"sum"`` the softmax collapses onto the shortest episode).

    :param step_log_probs: ``log pi(a_t | s_t)`` of every step, shape (N,)
    :param episode_index: episode of each step in ``[0, M)``, shape (N,)
    :param episode_lengths: ``T_k``, shape (M,)
    :param score: ``"sum"`` or ``"mean"``
    :return: the scores ``L_k``, shape (M,)
    """
    return scores_from_log_prob_sums(segment_sum(step_log_probs, episode_index, len(episode_lengths)), episode_lengths, score)


def scores_from_log_prob_sums(totals: th.Tensor, episode_lengths: th.Tensor, score: TrajectoryScore = "mean") -> th.Tensor:
    """
    :func:`trajectory_scores` from each episode's sum of log-probabilities, for an update that accumulates the sums a
    chunk of steps at a time.

    :param totals: ``sum_t log pi(a_t | s_t)`` of each episode, shape (M,)
    :param episode_lengths: ``T_k``, shape (M,)
    :param score: ``"sum"`` or ``"mean"``
    :return: the scores ``L_k``, shape (M,)
    """
    if score not in TRAJECTORY_SCORE_OPTIONS:
        raise ValueError(f"Unknown trajectory score {score!r}, allowed: {TRAJECTORY_SCORE_OPTIONS}")
    if score == "sum":
        return totals
    return totals / episode_lengths.to(totals.dtype).clamp(min=1)


def score_step_scale(
    episode_index: th.Tensor, episode_lengths: th.Tensor, score: TrajectoryScore, dtype: th.dtype = th.float32
) -> th.Tensor:
    """
    The derivative ``dL_k / dlog pi(a_t|s_t)`` of each step's trajectory score (see :func:`trajectory_scores`).

    :param episode_index: episode of each step in ``[0, M)``, shape (N,)
    :param episode_lengths: ``T_k``, shape (M,)
    :param score: ``"sum"`` (1 for every step) or ``"mean"`` (``1 / T_k``)
    :param dtype: floating dtype of the result
    :return: shape (N,)
    """
    if score not in TRAJECTORY_SCORE_OPTIONS:
        raise ValueError(f"Unknown trajectory score {score!r}, allowed: {TRAJECTORY_SCORE_OPTIONS}")
    if score == "mean":
        return 1.0 / episode_lengths.to(dtype).clamp(min=1)[episode_index]
    return th.ones(len(episode_index), dtype=dtype, device=episode_index.device)


def step_times(episode_lengths: th.Tensor, start: int = 0, stop: int | None = None) -> th.Tensor:
    """
    The time ``t`` of each step within its episode, for steps ordered episode by episode, each in time order.

    :param episode_lengths: ``T_k``, shape (M,)
    :param start: the first step wanted (0: from the group's first step)
    :param stop: one past the last step wanted (None: ``N = sum_k T_k``), so that a long group's times can be formed
        a chunk of steps at a time
    :return: ``(0, 1, ..., T_0 - 1, 0, 1, ..., T_1 - 1, ...)[start:stop]``, int64
    """
    lengths = episode_lengths.to(th.int64)
    ends = th.cumsum(lengths, 0)
    positions = th.arange(start, int(lengths.sum()) if stop is None else stop, device=lengths.device)
    # The episode of a step is the number of episodes that end at or before it (empty episodes are skipped); its time
    # is its step number minus the first step number of its episode
    episode = th.searchsorted(ends, positions, right=True)
    return positions - (ends - lengths)[episode]


def discounted_reward_to_go(rewards: th.Tensor, episode_lengths: th.Tensor, gamma: float) -> th.Tensor:
    """
    The discounted reward-to-go of every step, within its episode (SB3's per-step meaning of ``gamma``).

    .. math::

        G_{k,t} = \\sum_{t' = t}^{T_k - 1} \\gamma^{t' - t} r_{k,t'}

    so ``G_{k,0}`` is the episode's return ``R_k = sum_t gamma^t r_t``. Steps must be ordered episode by episode,
    each in time order (as :class:`EpisodeBatch` is). Computed as a linear recursion
    ``G_t = r_t + gamma G_{t+1}`` in float64 (``scipy.signal.lfilter`` on each reversed episode), which stays finite
    for any episode length: no power ``gamma^{-t}`` is ever formed.

    :param rewards: ``r`` of every step, shape (N,)
    :param episode_lengths: ``T_k``, shape (M,), summing to N
    :param gamma: the per-step discount, in (0, 1]
    :return: ``G``, shape (N,), float32, on the device of ``rewards``
    """
    if rewards.ndim != 1:
        raise ValueError(f"rewards must have shape (n_steps,), got {tuple(rewards.shape)}")
    if int(episode_lengths.sum()) != len(rewards):
        raise ValueError(f"The episode lengths sum to {int(episode_lengths.sum())} but there are {len(rewards)} rewards")
    check_real("gamma", gamma, 0.0, 1.0, low_open=True)
    numpy_rewards = rewards.detach().cpu().numpy()
    # Written episode by episode, rounded to float32 as it is written: only one episode is ever held in float64
    reward_to_go = np.empty(len(numpy_rewards), dtype=np.float32)
    start = 0
    for length in episode_lengths.cpu().numpy().tolist():
        end = start + int(length)
        _episode_reward_to_go(numpy_rewards[start:end], reward_to_go[start:end], gamma, max(1, int(length)))
        start = end
    return th.as_tensor(reward_to_go, device=rewards.device)


def _episode_reward_to_go(rewards: np.ndarray, out: np.ndarray, gamma: float, chunk_steps: int) -> None:
    """
    Write ``G_t = r_t + gamma G_{t+1}`` of one episode to ``out`` (which may be ``rewards`` itself), backwards
    ``chunk_steps`` steps at a time: reversed in time, G is the first-order recursion ``y[n] = x[n] + gamma y[n - 1]``
    (``scipy.signal.lfilter`` in float64), whose state ``gamma G_{t+1}`` is carried from chunk to chunk in float64;
    each value is rounded to ``out``'s dtype as it is written.
    """
    reward_to_go = 0.0
    for stop in range(len(rewards), 0, -chunk_steps):
        start = max(0, stop - chunk_steps)
        reversed_g, _ = lfilter([1.0], [1.0, -gamma], rewards[start:stop][::-1].astype(np.float64), zi=[gamma * reward_to_go])
        out[start:stop] = reversed_g[::-1]
        reward_to_go = float(reversed_g[-1])


# Steps per chunk of reward_to_go_advantages' index arrays (int64): 16,384 steps, 128 KiB per array
ADVANTAGE_CHUNK_STEPS = 16384


def reward_to_go_advantages(
    rewards: th.Tensor, episode_lengths: th.Tensor, gamma: float, eps: float = 1e-8, min_std: float = 0.0
) -> th.Tensor:
    """
    Per-step advantages from the discounted reward-to-go and a time-indexed group baseline (docs/METHOD.md
    section 9).

    .. math::

        b_t = \\mathrm{mean}_{k: T_k > t} G_{k,t}, \\qquad
        A_{k,t} = \\frac{G_{k,t} - b_t}{\\max(\\mathrm{std}(G - b), \\sigma_{min}) + \\epsilon}

    The baseline at time ``t`` is the mean reward-to-go of the group's episodes that last beyond ``t``: a Monte
    Carlo estimate of the value of being ``t`` steps into an episode, with no critic. The deviations ``G - b`` have
    a mean of exactly 0 over the group (their sum is 0 at every ``t``), and are divided by their population std over
    all steps, or by ``min_std`` when that is larger (``min_return_std``, docs/METHOD.md section 13: deviations
    smaller than this scale then give a proportionally small signal, not a unit one). A step that only one episode
    reaches gets 0, and a group with no variation gives 0 everywhere, never NaN.

    :param rewards: ``r`` of every step, ordered episode by episode, each in time order, shape (N,)
    :param episode_lengths: ``T_k``, shape (M,)
    :param gamma: the per-step discount of the reward-to-go, in (0, 1]
    :param eps: guard against division by zero
    :param min_std: ``sigma_min``, the floor of the divisor, in the rewards' units (>= 0; 0: plain z-score)
    :return: ``A``, shape (N,), float32
    """
    check_real("min_std", min_std, 0.0)
    # In place, and in chunks of steps: besides G (float64) and the result, only a chunk's step times and gathered
    # baseline are ever formed, whatever the number or length of the episodes (docs/METHOD.md section 2.2)
    deviations = discounted_reward_to_go(rewards, episode_lengths, gamma).to(th.float64)
    lengths = episode_lengths.to(device=deviations.device, dtype=th.int64)
    max_length = int(lengths.max())
    # The number of episodes that reach t, sum_{L > t} #{k: T_k = L}, for t = 0 .. max T - 1
    counts = th.bincount(lengths, minlength=max_length + 1).flip(0).cumsum(0).flip(0)[1:].to(th.float64)
    chunks = [
        (start, min(start + ADVANTAGE_CHUNK_STEPS, len(deviations)))
        for start in range(0, len(deviations), ADVANTAGE_CHUNK_STEPS)
    ]
    # b_t over the episodes that reach t (max T,): their sum at t, in step order, divided by their number
    totals = th.zeros(max_length, dtype=th.float64, device=deviations.device)
    for start, stop in chunks:
        totals.index_add_(0, step_times(lengths, start, stop), deviations[start:stop])
    baseline = totals.div_(counts)
    for start, stop in chunks:
        deviations[start:stop].sub_(baseline[step_times(lengths, start, stop)])
    deviations.div_(max(float(deviations.std(unbiased=False)), min_std) + eps)
    return deviations.to(th.float32)


def value_baseline_advantages(
    reward_to_go: th.Tensor, values: th.Tensor, eps: float = 1e-8, min_std: float = 0.0
) -> th.Tensor:
    """
    Per-step advantages from the discounted reward-to-go and a learned state-value baseline (``baseline="value"``,
    docs/METHOD.md section 17).

    .. math::

        d_{k,t} = G_{k,t} - V(s_{k,t}), \\qquad
        A_{k,t} = \\frac{d_{k,t} - \\bar d}{\\max(\\mathrm{std}(d), \\sigma_{min}) + \\epsilon}

    where ``d-bar`` and ``std`` are the population mean and std of ``d`` over all the group's steps. As with the
    time-indexed baseline of :func:`reward_to_go_advantages`, the advantages have a mean of 0 over the group, a group
    with no variation gives 0 everywhere (never NaN), and ``min_std`` floors the divisor in the rewards' units.
    Unlike it, the baseline depends on the state, so two episodes at the same time in different states are compared
    with different expectations (PPO's critic). With ``gae_lambda < 1`` ``G`` is the lambda-return
    (:func:`lambda_returns`) and ``d`` PPO's GAE.

    :param reward_to_go: ``G_{k,t}`` of every step (:func:`discounted_reward_to_go` of the bootstrapped rewards, or
        :func:`lambda_returns`), shape (N,)
    :param values: ``V(s_{k,t})`` of every step under the value head before the update, shape (N,), no gradient
    :param eps: guard against division by zero
    :param min_std: ``sigma_min``, the floor of the divisor, in the rewards' units (>= 0; 0: plain z-score)
    :return: ``A``, shape (N,), float32
    """
    check_real("min_std", min_std, 0.0)
    if reward_to_go.ndim != 1 or reward_to_go.shape != values.shape:
        raise ValueError(
            f"reward_to_go and values must have the same shape (n_steps,), got {tuple(reward_to_go.shape)} and "
            f"{tuple(values.shape)}"
        )
    deviations = reward_to_go.detach().to(th.float64) - values.detach().to(th.float64)
    deviations -= deviations.mean()
    deviations /= max(float(deviations.std(unbiased=False)), min_std) + eps
    return deviations.to(th.float32)


def bootstrap_truncated_rewards(
    rewards: th.Tensor, episode_lengths: th.Tensor, truncated: th.Tensor, final_values: th.Tensor, gamma: float
) -> th.Tensor:
    """
    The rewards of a group with each truncated episode's last reward bootstrapped from the value of the state it was
    truncated in (``baseline="value"``, docs/METHOD.md section 17), as SB3's PPO does for time limits:
    ``r'_{k, T_k - 1} = r_{k, T_k - 1} + gamma V(s_{k, T_k})``, every other reward unchanged. The reward-to-go of
    these rewards (:func:`discounted_reward_to_go`) is then ``G_t + gamma^(T_k - t) V(s_{k, T_k})`` on a truncated
    episode: what the episode would have returned had it gone on, by the value head's estimate.

    :param rewards: ``r`` of every step, ordered episode by episode, each in time order, shape (N,)
    :param episode_lengths: ``T_k`` (>= 1), shape (M,)
    :param truncated: which episodes were truncated, bool, shape (M,)
    :param final_values: ``V(s_{k, T_k})`` of the truncated episodes, in episode order, shape (number truncated,)
    :param gamma: the per-step discount, in (0, 1]
    :return: the bootstrapped rewards, a new tensor of shape (N,)
    """
    check_real("gamma", gamma, 0.0, 1.0, low_open=True)
    if truncated.shape != episode_lengths.shape or int(truncated.sum()) != len(final_values):
        raise ValueError(
            f"Expected one final value per truncated episode: {int(truncated.sum())} of {len(episode_lengths)} "
            f"episodes truncated, {len(final_values)} final values"
        )
    last_steps = episode_lengths.cumsum(0) - 1
    bootstrapped = rewards.clone()
    bootstrapped[last_steps[truncated]] += gamma * final_values.to(rewards.dtype)
    return bootstrapped


def lambda_returns(
    rewards: th.Tensor, values: th.Tensor, episode_lengths: th.Tensor, gamma: float, gae_lambda: float
) -> th.Tensor:
    """
    The lambda-returns of every step (``baseline="value"`` with ``gae_lambda``, docs/METHOD.md section 17), the
    value head's targets; minus ``V(s_t)`` they are the generalised advantage estimates of PPO (GAE).

    .. math::

        G^\\lambda_{k,t} = r_{k,t} + \\gamma \\big((1 - \\lambda) V(s_{k,t+1}) + \\lambda G^\\lambda_{k,t+1}\\big),
        \\qquad G^\\lambda_{k,T_k-1} = r_{k,T_k-1}

    with the rewards as :func:`bootstrap_truncated_rewards` leaves them (a truncated episode's last reward already
    holds ``gamma V(s_T)``, a terminated one's next value is 0). Then ``G^lambda - V`` is
    ``sum_l (gamma lambda)^l delta_{t+l}`` with ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``, SB3's GAE.
    ``gae_lambda = 1`` gives the Monte Carlo reward-to-go (:func:`discounted_reward_to_go`), ``0`` the one-step
    target ``r_t + gamma V(s_{t+1})``. Computed as the reward-to-go of ``x_t = r_t + gamma (1 - lambda) V(s_{t+1})``
    with the discount ``gamma lambda``, so it stays finite for any episode length.

    :param rewards: ``r`` of every step (bootstrapped), ordered episode by episode, each in time order, shape (N,)
    :param values: ``V(s_{k,t})`` of every step before the update, shape (N,), no gradient
    :param episode_lengths: ``T_k`` (>= 1), shape (M,), summing to N
    :param gamma: the per-step discount, in (0, 1]
    :param gae_lambda: ``lambda``, in [0, 1]
    :return: ``G^lambda``, shape (N,), float32, on the device of ``rewards``
    """
    check_real("gamma", gamma, 0.0, 1.0, low_open=True)
    check_real("gae_lambda", gae_lambda, 0.0, 1.0)
    if rewards.ndim != 1 or rewards.shape != values.shape:
        raise ValueError(
            f"rewards and values must have the same shape (n_steps,), got {tuple(rewards.shape)} and " f"{tuple(values.shape)}"
        )
    if int(episode_lengths.sum()) != len(rewards):
        raise ValueError(f"The episode lengths sum to {int(episode_lengths.sum())} but there are {len(rewards)} rewards")
    next_values = th.zeros(len(values), dtype=th.float64, device=rewards.device)
    next_values[:-1] = values.detach()[1:].to(th.float64)
    # An episode's last step has no next value here (terminated: 0; truncated: in the bootstrapped reward)
    next_values[episode_lengths.cumsum(0).to(rewards.device) - 1] = 0.0
    if gae_lambda == 1.0:
        # The Monte Carlo reward-to-go: the values take no part
        return discounted_reward_to_go(rewards.detach(), episode_lengths, gamma)
    inputs = rewards.detach().to(th.float64) + gamma * (1.0 - gae_lambda) * next_values
    if gamma * gae_lambda == 0.0:
        return inputs.to(th.float32)
    return discounted_reward_to_go(inputs, episode_lengths, gamma * gae_lambda)


def value_regression_loss(values: th.Tensor, targets: th.Tensor, vf_coef: float, n_steps: int | None = None) -> th.Tensor:
    """
    The value head's regression term of ``baseline="value"`` (docs/METHOD.md section 17):
    ``vf_coef * (1 / N) sum_t (V(s_t) - G_t)^2`` over the ``N`` steps of a group, PPO's value loss without clipping,
    on the (bootstrapped) reward-to-go ``G``, or the lambda-returns with ``gae_lambda < 1``.

    It is a sum over steps, so it splits over chunks and minibatches as :func:`policy_entropy_loss` does: the terms
    of any partition of the steps, each with the same ``n_steps = N``, add up to the whole group's term.

    :param values: ``V(s_t)`` of some of the group's steps, shape (n,), differentiable
    :param targets: their ``G_t``, shape (n,)
    :param vf_coef: the coefficient (finite, > 0)
    :param n_steps: ``N``, the number of steps of the whole group (None: ``n``, these steps are the whole group)
    :return: the loss term (a scalar), to be minimised
    """
    if values.dim() != 1 or values.shape != targets.shape:
        raise ValueError(
            f"values and targets must have the same shape (n,), got {tuple(values.shape)} and {tuple(targets.shape)}"
        )
    check_real("vf_coef", vf_coef, 0.0, low_open=True)
    n_steps = len(values) if n_steps is None else n_steps
    check_int("n_steps", n_steps, max(len(values), 1), why="the group's steps: at least these values and 1")
    return vf_coef * (values - targets.to(values.dtype)).pow(2).sum() / n_steps


def reward_to_go_advantages_into(
    rewards: Sequence[np.ndarray],
    out: Sequence[np.ndarray],
    gamma: float,
    chunk_steps: int = ADVANTAGE_CHUNK_STEPS,
    eps: float = 1e-8,
    min_std: float = 0.0,
) -> None:
    """
    :func:`reward_to_go_advantages` for episodes held as separate arrays (rows of a buffer), written in place: the
    memory it uses beyond ``out`` is ``O(M + chunk_steps)``, whatever the length of the episodes. It makes three
    sweeps over the steps:

    1. ``G_{k,t}`` of each episode, backwards ``chunk_steps`` steps at a time, the recursion ``G_t = r_t + gamma
       G_{t+1}`` carried from chunk to chunk in float64 and each value rounded to float32 as it is written (as
       :func:`discounted_reward_to_go` does);
    2. the baseline ``b_t``, a window of ``chunk_steps`` times at a time: the mean of ``G_{k,t}`` over the episodes
       that reach ``t``, subtracted in float64 and written back in float32, while the sum of the squared deviations
       is accumulated;
    3. the division by ``max(std(G - b), min_std) + eps``, with the population std ``sqrt(sum (G - b)^2 / N)`` (the
       deviations' mean is 0 at every ``t``).

    The result equals :func:`reward_to_go_advantages` up to float32 rounding (it rounds the deviations to float32
    before the division, and sums the squares in another order).

    :param rewards: ``r`` of each episode, in time order, M arrays of shape (T_k,)
    :param out: where ``A`` is written, M float32 arrays of shape (T_k,) (they may share memory with ``rewards``)
    :param gamma: the per-step discount of the reward-to-go, in (0, 1]
    :param chunk_steps: steps per sweep chunk and times per baseline window (>= 1)
    :param eps: guard against division by zero
    :param min_std: ``sigma_min``, the floor of the divisor, in the rewards' units (>= 0; 0: plain z-score)
    """
    check_real("min_std", min_std, 0.0)
    check_real("gamma", gamma, 0.0, 1.0, low_open=True)
    check_int("chunk_steps", chunk_steps, 1)
    if len(rewards) != len(out) or any(len(r) != len(o) for r, o in zip(rewards, out, strict=True)):
        raise ValueError("rewards and out must hold the same number of episodes, of the same lengths")
    lengths = [len(episode) for episode in rewards]
    if sum(lengths) == 0:
        return
    # 1. G, backwards a chunk at a time
    for episode_rewards, episode_out in zip(rewards, out, strict=True):
        _episode_reward_to_go(episode_rewards, episode_out, gamma, chunk_steps)
    # 2. b_t over the episodes that reach t, a window of times at a time; G - b written back
    squares = 0.0
    # The episodes that reach the window, in episode order (it only shrinks: each episode is visited once per window
    # it reaches)
    reaching = [k for k, length in enumerate(lengths) if length > 0]
    for window_start in range(0, max(lengths), chunk_steps):
        window = min(chunk_steps, max(lengths) - window_start)
        totals = np.zeros(window, dtype=np.float64)
        counts = np.zeros(window, dtype=np.float64)
        reaching = [k for k in reaching if lengths[k] > window_start]
        for k in reaching:
            values = out[k][window_start : window_start + window]
            totals[: len(values)] += values
            counts[: len(values)] += 1.0
        baseline = totals / counts
        for k in reaching:
            values = out[k][window_start : window_start + window]
            deviations = values - baseline[: len(values)]
            squares += float(np.dot(deviations, deviations))
            values[:] = deviations
    # 3. The divisor
    std = math.sqrt(squares / sum(lengths))
    divisor = max(std, min_std) + eps
    for episode_out in out:
        episode_out /= divisor


def episode_length_factors(episode_lengths: th.Tensor, dtype: th.dtype = th.float32) -> th.Tensor:
    """
    ``T_k / Tbar`` for each episode of a group, with ``Tbar = N / M`` its mean length: the factor by which
    ``credit_weighting="step"`` multiplies every per-step advantage of episode k (docs/METHOD.md section 16).

    Under the mean score the return term pushes step t of episode k by ``w_k A_{k,t} / T_k`` (section 9.3): each
    episode's weight is shared among its steps, so a step of a long episode counts less than one of a short episode.
    With the advantages multiplied by ``T_k / Tbar`` the push becomes ``w_k A_{k,t} / Tbar`` for every step: with
    uniform weights ``A_{k,t} / N``, PPO's mean over steps. With equal lengths every factor is exactly 1.

    :param episode_lengths: ``T_k`` (>= 1), shape (M,), M >= 1
    :param dtype: floating dtype of the result
    :return: shape (M,)
    """
    if episode_lengths.ndim != 1 or len(episode_lengths) == 0:
        raise ValueError(f"episode_lengths must have shape (M,) with M >= 1, got {tuple(episode_lengths.shape)}")
    if bool((episode_lengths < 1).any()):
        raise ValueError(f"every episode length must be >= 1, got {episode_lengths.tolist()}")
    lengths = episode_lengths.to(dtype)
    return lengths / (lengths.sum() / len(lengths))


def normalize_returns(
    returns: th.Tensor, scheme: NormalizeReturns = "zscore", eps: float = 1e-8, min_std: float = 0.0
) -> th.Tensor:
    """
    Normalise the episode returns of a group (docs/METHOD.md section 1, step 4).

    - ``"zscore"``: ``Rn_k = (R_k - mean(R)) / (max(std(R), min_std) + eps)``, population std. A group of equal
      returns gives exactly 0 (no signal, never NaN): without that guard the float32 rounding of their mean would
      leave every ``Rn_k`` at the same constant of size up to 1 (docs/METHOD.md section 7, choice 3). ``min_std``
      (``min_return_std``, docs/METHOD.md section 13) keeps returns that differ by less than that scale from being
      blown up to unit size.
    - ``"sum"``: ``Rn_k = R_k / sum_j |R_j|``. For non-negative returns (the setting the paper uses this scheme for)
      this is exactly the paper's ``R_k / sum_j R_j``. Using ``|R_j|`` in the denominator is our documented fallback
      for negative returns: the scale stays positive, so a group whose total is negative or zero never flips the sign
      of the learning signal or divides by zero. An all-zero group gives 0.

    :param returns: episode returns ``R_k``, shape (M,)
    :param scheme: ``"sum"`` or ``"zscore"``
    :param eps: guard against division by zero
    :param min_std: with ``"zscore"``, the floor of the divisor, in the returns' units (>= 0; 0: plain z-score)
    :return: normalised returns, shape (M,)
    """
    check_real("min_std", min_std, 0.0)
    if scheme not in NORMALIZE_RETURNS_OPTIONS:
        raise ValueError(f"Unknown return normalisation {scheme!r}, allowed: {NORMALIZE_RETURNS_OPTIONS}")
    if returns.ndim != 1:
        raise ValueError(f"returns must have shape (n_episodes,), got {tuple(returns.shape)}")
    if scheme == "zscore":
        # Equal returns carry no signal. Their float32 mean is exact only for some values (integers, zeros): 8 returns
        # of 0.99 would otherwise give every k a constant of about 0.92, which GRPO hands to every step
        if not has_return_signal(returns):
            return th.zeros_like(returns)
        centered = returns - returns.mean()
        std = returns.std(unbiased=False)
        return centered / (th.clamp(std, min=min_std) + eps)
    return returns / returns.abs().sum().clamp(min=eps)


def has_return_signal(returns: th.Tensor, advantages: th.Tensor | None = None) -> bool:
    """
    Whether the return term of a group's loss can move the policy (docs/METHOD.md section 15).

    - With episode credit (``advantages`` None): unless every return ``R_k`` is the same. Equal returns give every
      episode the same normalised return ``Rn`` (exactly 0 with ``"zscore"``, ``R / sum |R|`` with ``"sum"``), so the
      return term ``-sum_k w_k Rn_k = -Rn`` is a constant of the parameters: its gradient is exactly 0.
    - With per-step credit: unless every advantage is exactly 0. That is what a group of equal reward-to-go at every
      time step gives (no success yet: all rewards 0, or the same reward at every step until the same truncation),
      with no rounding: the baseline is a float64 mean of equal float32 values, which is exact. Equal returns alone
      are not enough there (the same reward at different times gives different ``G_t``).

    Without a return signal, only the weight-entropy and reference-KL terms (and a policy-entropy bonus) can move the
    policy.

    :param returns: the group's episode returns ``R_k``, shape (M,)
    :param advantages: with per-step credit, the group's per-step advantages ``A``, shape (N,); None with episode
        credit
    :return: False when the return term's gradient is exactly 0 for any parameters
    """
    if advantages is not None:
        return bool(advantages.any())
    return not bool((returns == returns[:1]).all())


class HAEPOLoss(NamedTuple):
    """The HAEPO objective and its terms (all scalars but ``log_weights``)."""

    loss: th.Tensor
    return_loss: th.Tensor
    entropy_loss: th.Tensor
    kl_loss: th.Tensor
    log_weights: th.Tensor  # (M,)


def haepo_loss(
    scores: th.Tensor,
    ref_scores: th.Tensor,
    norm_returns: th.Tensor,
    weight_ent_coef: float,
    ref_kl_coef: float,
) -> HAEPOLoss:
    """
    The HAEPO loss of one group (docs/METHOD.md section 1, step 5), differentiable with respect to ``scores``.

    .. math::

        w = \\mathrm{softmax}(L), \\quad w^{ref} = \\mathrm{softmax}(L^{ref})

        J = - \\sum_k w_k Rn_k + \\beta \\sum_k w_k \\log w_k + \\lambda \\sum_k w_k (\\log w_k - \\log w^{ref}_k)

    ``w`` are the Plackett-Luce probabilities that each episode is ranked first. They are computed with
    ``log_softmax``, so scores like -1e5 stay finite. ``beta > 0`` pushes ``w`` towards uniform
    (the second term is ``-beta * H(w)``), and ``lam > 0`` keeps ``w`` close to the reference weights,
    which carry no gradient.

    :param scores: trajectory scores ``L_k`` under the current policy, shape (M,)
    :param ref_scores: scores under the frozen reference policy, shape (M,) (detached here)
    :param norm_returns: normalised returns ``Rn_k``, shape (M,)
    :param weight_ent_coef: ``beta``, coefficient of the weight-entropy bonus
    :param ref_kl_coef: ``lam``, coefficient of the KL to the reference weights
    :return: the loss and each of its terms
    """
    _check_1d_same_shape(scores=scores, ref_scores=ref_scores, norm_returns=norm_returns)
    log_weights = th.log_softmax(scores, dim=0)
    ref_log_weights = th.log_softmax(ref_scores.detach(), dim=0)
    weights = log_weights.exp()
    return_loss = -(weights * norm_returns).sum()
    entropy_loss = weight_ent_coef * (weights * log_weights).sum()
    kl_loss = ref_kl_coef * (weights * (log_weights - ref_log_weights)).sum()
    return HAEPOLoss(return_loss + entropy_loss + kl_loss, return_loss, entropy_loss, kl_loss, log_weights)


def haepo_score_gradient(
    scores: th.Tensor,
    ref_scores: th.Tensor,
    norm_returns: th.Tensor,
    weight_ent_coef: float,
    ref_kl_coef: float,
) -> th.Tensor:
    """
    Analytic gradient ``c_k = dJ/dL_k`` of :func:`haepo_loss` (docs/METHOD.md section 2).

    With ``w = softmax(L)`` and ``g_k = dJ/dw_k``:

    .. math::

        c_k = w_k (g_k - \\sum_j w_j g_j)

        g_k = -Rn_k + \\beta (\\log w_k + 1) + \\lambda (\\log w_k - \\log w^{ref}_k + 1)

    so that ``grad_theta J = sum_k c_k grad_theta L_k``. This is what lets the update compute the scores without a
    graph, then accumulate the exact gradient over chunks of steps with the surrogate ``sum_t c_{k(t)} log pi(a_t|s_t)``.
    The constant ``+1`` terms cancel against the weighted mean and are dropped.

    :param scores: ``L_k``, shape (M,)
    :param ref_scores: ``L^ref_k``, shape (M,)
    :param norm_returns: ``Rn_k``, shape (M,)
    :param weight_ent_coef: ``beta``
    :param ref_kl_coef: ``lam``
    :return: ``c``, shape (M,), without a graph
    """
    _check_1d_same_shape(scores=scores, ref_scores=ref_scores, norm_returns=norm_returns)
    with th.no_grad():
        log_weights = th.log_softmax(scores, dim=0)
        ref_log_weights = th.log_softmax(ref_scores, dim=0)
        weights = log_weights.exp()
        g = -norm_returns + weight_ent_coef * log_weights + ref_kl_coef * (log_weights - ref_log_weights)
        return weights * (g - (weights * g).sum())


def step_credit_loss(
    step_log_probs: th.Tensor,
    episode_index: th.Tensor,
    episode_lengths: th.Tensor,
    ref_scores: th.Tensor,
    advantages: th.Tensor,
    score: TrajectoryScore,
    weight_ent_coef: float,
    ref_kl_coef: float,
) -> HAEPOLoss:
    """
    HAEPO's loss with per-step credit (``credit="reward_to_go"``, docs/METHOD.md section 9), differentiable with
    respect to ``step_log_probs``.

    .. math::

        J = - \\sum_k \\bar w_k \\sum_{t} \\frac{\\partial L_k}{\\partial \\log\\pi_t} A_{k,t} \\log\\pi(a_t|s_t)
            + \\beta \\sum_k w_k \\log w_k + \\lambda \\sum_k w_k (\\log w_k - \\log w^{ref}_k)

    with ``w = softmax(L)``, ``L`` the trajectory scores of ``step_log_probs``, and ``bar w`` the same weights held
    constant (no gradient flows through them in the first term). The first term replaces the episode-level
    ``-sum_k w_k Rn_k``: its gradient is a policy gradient in which each episode's steps count with the episode's
    Plackett-Luce weight, and each step with its own advantage. With the advantage
    ``A_{k,t} = Rn_k - sum_j w_j Rn_j`` for every step, the gradient is exactly that of :func:`haepo_loss`. The
    regularisers are :func:`haepo_loss`'s. The value of the first term is a surrogate (only its gradient means
    something), as PPO's.

    :param step_log_probs: ``log pi(a_t | s_t)`` of every step, shape (N,)
    :param episode_index: episode of each step in ``[0, M)``, shape (N,)
    :param episode_lengths: ``T_k``, shape (M,)
    :param ref_scores: scores under the frozen reference policy, shape (M,) (detached here)
    :param advantages: ``A_{k,t}``, e.g. from :func:`reward_to_go_advantages`, shape (N,)
    :param score: the trajectory score, ``"sum"`` or ``"mean"``
    :param weight_ent_coef: ``beta``
    :param ref_kl_coef: ``lam``
    :return: the loss and each of its terms (``return_loss`` is the surrogate's first term)
    """
    scores = trajectory_scores(step_log_probs, episode_index, episode_lengths, score)
    scale = score_step_scale(episode_index, episode_lengths, score, step_log_probs.dtype)
    credit_sums = segment_sum(scale * advantages.detach() * step_log_probs, episode_index, len(episode_lengths))
    return step_credit_loss_from_sums(scores, ref_scores, credit_sums, weight_ent_coef, ref_kl_coef)


def step_credit_loss_from_sums(
    scores: th.Tensor,
    ref_scores: th.Tensor,
    credit_sums: th.Tensor,
    weight_ent_coef: float,
    ref_kl_coef: float,
) -> HAEPOLoss:
    """
    :func:`step_credit_loss` from each episode's sum ``Q_k = sum_{t in k} dL_k/dlog pi_t A_{k,t} log pi(a_t|s_t)``,
    for an update that accumulates them a chunk of steps at a time: the first term is ``-sum_k wbar_k Q_k``.

    :param scores: ``L_k``, shape (M,) (the weights of the first term are held constant)
    :param ref_scores: ``L^ref_k``, shape (M,)
    :param credit_sums: ``Q_k``, shape (M,)
    :param weight_ent_coef: ``beta``
    :param ref_kl_coef: ``lam``
    :return: the loss and each of its terms (``return_loss`` is the surrogate's first term)
    """
    regularisers = haepo_loss(scores, ref_scores, th.zeros_like(scores), weight_ent_coef, ref_kl_coef)
    return_loss = -(regularisers.log_weights.detach().exp() * credit_sums).sum()
    return HAEPOLoss(
        return_loss + regularisers.loss,
        return_loss,
        regularisers.entropy_loss,
        regularisers.kl_loss,
        regularisers.log_weights,
    )


def step_credit_coefficients(
    scores: th.Tensor,
    ref_scores: th.Tensor,
    advantages: th.Tensor,
    episode_index: th.Tensor,
    step_scale: th.Tensor,
    weight_ent_coef: float,
    ref_kl_coef: float,
) -> th.Tensor:
    """
    Analytic gradient of :func:`step_credit_loss` with respect to each ``log pi(a_t|s_t)`` (docs/METHOD.md
    section 9): the per-step coefficients of the two-pass surrogate.

    .. math::

        \\frac{\\partial J}{\\partial \\log\\pi_t} = \\frac{\\partial L_k}{\\partial \\log\\pi_t}
            \\left(c^{reg}_k - w_k A_{k,t}\\right), \\qquad k = k(t)

    where ``c^reg`` is :func:`haepo_score_gradient` with the returns set to 0 (the beta and lam terms alone).

    :param scores: ``L_k``, shape (M,)
    :param ref_scores: ``L^ref_k``, shape (M,)
    :param advantages: ``A_{k,t}``, shape (N,)
    :param episode_index: episode of each step in ``[0, M)``, shape (N,)
    :param step_scale: ``dL_k / dlog pi_t`` (:func:`score_step_scale`), shape (N,)
    :param weight_ent_coef: ``beta``
    :param ref_kl_coef: ``lam``
    :return: shape (N,), without a graph
    """
    if advantages.shape != episode_index.shape or step_scale.shape != episode_index.shape:
        raise ValueError(
            "advantages, episode_index and step_scale must have the same shape (n_steps,), got "
            f"{tuple(advantages.shape)}, {tuple(episode_index.shape)} and {tuple(step_scale.shape)}"
        )
    with th.no_grad():
        regularisers = haepo_score_gradient(scores, ref_scores, th.zeros_like(scores), weight_ent_coef, ref_kl_coef)
        weights = th.softmax(scores, dim=0)
        return step_scale * (regularisers[episode_index] - weights[episode_index] * advantages)


class ClippedStepLoss(NamedTuple):
    """The clipped per-step surrogate of HAEPO's minibatch update and its diagnostics (scalars)."""

    loss: th.Tensor
    clip_fraction: th.Tensor


def clipped_step_loss(
    log_probs: th.Tensor,
    old_log_probs: th.Tensor,
    step_coef: th.Tensor,
    return_coef: th.Tensor,
    clip_range: float | None,
) -> ClippedStepLoss:
    """
    The surrogate of HAEPO's minibatch epochs (``clip_range`` / ``minibatch_size``, docs/METHOD.md section 9.4),
    differentiable with respect to ``log_probs``.

    .. math::

        \\rho_t = \\exp(\\log\\pi_t - \\log\\pi^{old}_t), \\qquad
        S = - \\sum_t \\min(\\rho_t a_t, \\mathrm{clip}(\\rho_t, 1 - \\epsilon, 1 + \\epsilon) a_t)
            + \\sum_t (c_t + a_t) \\log\\pi_t

    where ``c_t = dJ/dlog pi_t`` are the exact per-step coefficients (:func:`step_credit_coefficients` or the
    episode-level ones) and ``a_t`` the part of ``-c_t`` that comes from the return term (``w_k s_k A_{k,t}``).
    At ``rho = 1`` (the first step of an update) the gradient is exactly ``sum_t c_t grad log pi_t``, the gradient
    of HAEPO's loss; as the policy moves, PPO's clip removes the return term's push on the steps whose ratio has
    left ``[1 - eps, 1 + eps]`` in the direction of their advantage. The regularisers' part ``(c_t + a_t) log pi_t``
    is never clipped. ``clip_range=None`` keeps the ratio without clipping.

    :param log_probs: ``log pi_theta(a_t|s_t)`` under the current policy, shape (N,)
    :param old_log_probs: the same at the start of the update, shape (N,) (detached here)
    :param step_coef: ``c_t``, shape (N,)
    :param return_coef: ``a_t``, shape (N,)
    :param clip_range: ``eps`` (> 0) or None
    :return: the surrogate (summed over the steps) and the fraction of clipped steps
    """
    _check_1d_same_shape(log_probs=log_probs, old_log_probs=old_log_probs, step_coef=step_coef, return_coef=return_coef)
    check_optional_real("clip_range", clip_range, 0.0, low_open=True, why_none="no clipping")
    ratio = th.exp(log_probs - old_log_probs.detach())
    return_coef = return_coef.detach()
    surrogate = ratio * return_coef
    clip_fraction = th.zeros((), device=log_probs.device)
    if clip_range is not None:
        clipped = th.clamp(ratio, 1 - clip_range, 1 + clip_range) * return_coef
        surrogate = th.min(surrogate, clipped)
        clip_fraction = ((ratio - 1).abs() > clip_range).float().mean().detach()
    loss = -surrogate.sum() + ((step_coef.detach() + return_coef) * log_probs).sum()
    return ClippedStepLoss(loss, clip_fraction)


def epoch_minibatch_size(n_steps: int, minibatch_size: int | None, max_minibatches: int | None = None) -> int:
    """
    The steps per minibatch in one epoch of HAEPO's minibatch update (``minibatch_size`` / ``max_minibatches``,
    docs/METHOD.md section 9.5).

    .. math::

        B = \\max\\left(b, \\left\\lceil N / K \\right\\rceil\\right)

    ``b`` is ``minibatch_size`` (None: the whole group, ``N``). With a cap ``K`` the minibatch grows once the group
    holds more than ``b K`` steps, so an epoch takes ``ceil(N / B) <= K`` optimizer steps whatever the episodes'
    length (exactly ``K`` when ``N >= K (K - 1)``, the last minibatch the smallest). Without the cap the steps of an
    update grow in proportion to the group's steps: about 105,000 in one update of 10 epochs over a group of 8
    episodes of 10^5 steps with ``b = 64`` (docs/LEARNING.md entry 38).

    :param n_steps: ``N``, the steps of the group (>= 1)
    :param minibatch_size: ``b`` (>= 1), or None for the whole group
    :param max_minibatches: ``K``, the most optimizer steps per epoch (>= 1), or None for no cap
    :return: ``B``, between 1 and ``N``
    """
    check_int("n_steps", n_steps, 1)
    check_optional_int("minibatch_size", minibatch_size, 1)
    check_optional_int("max_minibatches", max_minibatches, 1)
    size = n_steps if minibatch_size is None else min(minibatch_size, n_steps)
    if max_minibatches is not None:
        size = max(size, -(-n_steps // max_minibatches))
    return size


def weight_diagnostics(log_weights: th.Tensor, ref_scores: th.Tensor) -> dict[str, float]:
    """
    Diagnostics of the episode weights that reveal weight collapse or drift from the reference.

    :param log_weights: ``log w``, shape (M,)
    :param ref_scores: scores under the reference policy ``L^ref``, shape (M,)
    :return: ``weight_entropy`` (``log M`` when uniform, 0 when one-hot), ``max_weight``,
        ``effective_n_episodes`` (``1 / sum_k w_k^2``: M when uniform, 1 when one-hot)
        and ``ref_kl`` (the unscaled ``KL(w || w_ref)``)
    """
    _check_1d_same_shape(log_weights=log_weights, ref_scores=ref_scores)
    with th.no_grad():
        weights = log_weights.exp()
        return {
            "weight_entropy": float(-(weights * log_weights).sum()),
            "max_weight": float(weights.max()),
            "effective_n_episodes": float(1.0 / (weights**2).sum()),
            "ref_kl": float((weights * (log_weights - th.log_softmax(ref_scores, dim=0))).sum()),
        }


def parse_adaptive_coef(name: str, value: float | str) -> tuple[float, bool]:
    """
    Read a regulariser coefficient given as a number or in the style of SAC's ``ent_coef="auto"``
    (docs/METHOD.md section 10).

    - a finite number ``>= 0``: a fixed coefficient;
    - ``"auto"``: adapted once per update, starting from :data:`ADAPTIVE_COEF_START` (0.01, the fixed default);
    - ``"auto_<start>"`` (e.g. ``"auto_0.1"``): adapted, starting from ``start``, which must lie within
      ``[ADAPTIVE_COEF_MIN, ADAPTIVE_COEF_MAX]`` (the adaptive rules work on a log scale, so 0 is not a start).

    :param name: the parameter's name, for the error message
    :param value: the coefficient as given
    :return: the (start) value and whether it is adapted
    :raises ValueError: naming the value and what is allowed
    """
    allowed = (
        f"{name} must be a finite number >= 0, 'auto' or 'auto_<start>' with a start in "
        f"[{ADAPTIVE_COEF_MIN:g}, {ADAPTIVE_COEF_MAX:g}] (e.g. 'auto_0.1'), got {value!r}"
    )
    if isinstance(value, str):
        match = _AUTO_COEF.match(value)
        if match is None:
            raise ValueError(allowed)
        if match.group("start") is None:
            return ADAPTIVE_COEF_START, True
        try:
            start = float(match.group("start"))
        except ValueError:
            raise ValueError(allowed) from None
        if not ADAPTIVE_COEF_MIN <= start <= ADAPTIVE_COEF_MAX:
            raise ValueError(allowed)
        return start, True
    try:
        return check_real(name, value, 0.0), False
    except ValueError:
        raise ValueError(allowed) from None


def default_target_weight_entropy(n_episodes: int) -> float:
    """
    The default target of the adaptive ``beta`` for a group of M episodes: ``log(M / 2)``, the weight entropy whose
    exponential (the number of equally weighted episodes with the same entropy, ``exp(H(w))``) is half the group
    (docs/METHOD.md section 10).

    Uniform weights have ``H = log M``, so the target sits ``log 2`` below it whatever M is. For M = 2 it is 0: the
    weights can then never be below the target and ``beta`` only decreases.

    :param n_episodes: the group size M (>= 1)
    :return: the target weight entropy, in nats (>= 0)
    """
    check_int("n_episodes", n_episodes, 1)
    return max(math.log(n_episodes / 2.0), 0.0)


def adapt_weight_ent_coef(
    coef: float,
    weight_entropy: float,
    target: float,
    max_log_step: float = MAX_LOG_ENT_COEF_STEP,
    min_coef: float = ADAPTIVE_COEF_MIN,
    max_coef: float = ADAPTIVE_COEF_MAX,
) -> float:
    """
    One update of the adaptive weight-entropy coefficient ``beta`` (``weight_ent_coef="auto"``, docs/METHOD.md
    section 10): a gradient step on ``log beta``, as SAC tunes its temperature, with step size 1 and the step
    clipped.

    .. math::

        \\log\\beta \\leftarrow \\mathrm{clip}\\left(\\log\\beta + \\mathrm{clip}(H^* - H, -s, s),
            \\log\\beta_{min}, \\log\\beta_{max}\\right)

    Weights less spread than the target (``H < H*``) raise ``beta``, more spread lower it. Unclipped, the step
    multiplies ``beta`` by ``exp(H* - H)``, the ratio of the target's effective number of episodes ``exp(H*)`` to
    the measured one ``exp(H)``. The clip ``s`` (``log 2``) keeps one update within a factor of 2, as PPO's
    rule for ``lam`` does, so a single odd group cannot throw ``beta`` far.

    :param coef: the current ``beta`` (> 0)
    :param weight_entropy: the measured weight entropy ``H(w)`` (nats)
    :param target: the target ``H*`` (nats)
    :param max_log_step: ``s``, the largest change of ``log beta`` in one update (> 0)
    :param min_coef: lower bound of ``beta`` (> 0)
    :param max_coef: upper bound of ``beta``
    :return: the new ``beta``
    """
    for name, value in (("coef", coef), ("weight_entropy", weight_entropy), ("target", target)):
        check_real(name, value)
    if not 0 < min_coef <= coef <= max_coef or not max_log_step > 0:
        raise ValueError(
            f"Need 0 < min_coef <= coef <= max_coef and max_log_step > 0, got min_coef={min_coef!r}, coef={coef!r}, "
            f"max_coef={max_coef!r}, max_log_step={max_log_step!r}"
        )
    log_step = min(max(target - weight_entropy, -max_log_step), max_log_step)
    return min(max(coef * math.exp(log_step), min_coef), max_coef)


def adapt_ref_kl_coef(
    coef: float,
    kl: float,
    target: float,
    tolerance: float = KL_TOLERANCE,
    factor: float = KL_COEF_FACTOR,
    min_coef: float = ADAPTIVE_COEF_MIN,
    max_coef: float = ADAPTIVE_COEF_MAX,
) -> float:
    """
    One update of the adaptive reference-KL coefficient ``lam`` (``ref_kl_coef="auto"``, docs/METHOD.md
    section 10): PPO's adaptive KL penalty rule.

    - ``kl > tolerance * target``: ``lam * factor`` (the weights moved too far from the reference);
    - ``kl < target / tolerance``: ``lam / factor``;
    - otherwise ``lam`` is kept.

    The result is kept within ``[min_coef, max_coef]``.

    :param coef: the current ``lam`` (> 0)
    :param kl: the measured ``KL(w || w_ref)`` (>= 0)
    :param target: the target KL (> 0)
    :param tolerance: the width of the band around the target (> 1; 1.5 as in PPO)
    :param factor: the multiplicative step (> 1; 2 as in PPO)
    :param min_coef: lower bound of ``lam`` (> 0)
    :param max_coef: upper bound of ``lam``
    :return: the new ``lam``
    """
    for name, value in (("coef", coef), ("kl", kl), ("target", target)):
        check_real(name, value)
    if not 0 < min_coef <= coef <= max_coef or not target > 0 or not tolerance > 1 or not factor > 1:
        raise ValueError(
            f"Need 0 < min_coef <= coef <= max_coef, target > 0, tolerance > 1 and factor > 1, got "
            f"min_coef={min_coef!r}, coef={coef!r}, max_coef={max_coef!r}, target={target!r}, "
            f"tolerance={tolerance!r}, factor={factor!r}"
        )
    if kl > tolerance * target:
        coef = coef * factor
    elif kl < target / tolerance:
        coef = coef / factor
    return min(max(coef, min_coef), max_coef)


def policy_entropy_loss(entropies: th.Tensor, ent_coef: float, n_steps: int | None = None) -> th.Tensor:
    """
    The policy-entropy bonus of HAEPO's ``ent_coef`` (PPO's ``ent_coef``, distinct from the weight-entropy bonus
    ``beta``; docs/METHOD.md section 12): ``-ent_coef * (1 / N) sum_t H(pi(.|s_t))`` over the ``N`` steps of a group.

    It is a sum over steps, so it splits over chunks and minibatches: the terms of any partition of the steps, each
    with the same ``n_steps = N``, add up to the whole group's term (and so do their gradients).

    :param entropies: ``H(pi(.|s_t))`` of some of the group's steps, shape (n,), differentiable
    :param ent_coef: the coefficient (finite, >= 0)
    :param n_steps: ``N``, the number of steps of the whole group (None: ``n``, these steps are the whole group)
    :return: the loss term (a scalar), to be minimised
    """
    if entropies.dim() != 1:
        raise ValueError(f"Expected a 1D tensor of entropies, got shape {tuple(entropies.shape)}")
    check_real("ent_coef", ent_coef, 0.0)
    n_steps = len(entropies) if n_steps is None else n_steps
    check_int("n_steps", n_steps, max(len(entropies), 1), why="the group's steps: at least these entropies and 1")
    return -ent_coef * entropies.sum() / n_steps


class GRPOLoss(NamedTuple):
    """The GRPO objective and its terms (scalars)."""

    loss: th.Tensor
    policy_loss: th.Tensor
    kl_loss: th.Tensor
    kl: th.Tensor  # unscaled mean k3 estimate of KL(pi || pi_ref)
    clip_fraction: th.Tensor


def grpo_step_advantages(returns: th.Tensor, episode_index: th.Tensor, eps: float = 1e-8, min_std: float = 0.0) -> th.Tensor:
    """
    GRPO's outcome-supervision advantages: each episode's z-scored return, given to every one of its steps.

    .. math::

        A_t = \\frac{R_{k(t)} - \\mathrm{mean}(R)}{\\max(\\mathrm{std}(R), \\sigma_{min}) + \\epsilon}

    (Shao et al. 2024, DeepSeekMath, section 4.1.2, with ``sigma_min = 0``; population std, as in
    :func:`normalize_returns`).

    :param returns: episode returns ``R_k``, shape (M,)
    :param episode_index: episode of each step in ``[0, M)``, shape (N,)
    :param eps: guard against division by zero (a group of equal returns gives advantages of exactly 0)
    :param min_std: ``sigma_min``, the floor of the divisor in the returns' units (``min_return_std``,
        docs/METHOD.md section 13; >= 0, 0: GRPO's plain z-score)
    :return: per-step advantages, shape (N,)
    """
    if episode_index.ndim != 1:
        raise ValueError(f"episode_index must have shape (n_steps,), got {tuple(episode_index.shape)}")
    # (M,) -> (N,)
    return normalize_returns(returns, "zscore", eps, min_std=min_std)[episode_index]


def grpo_loss(
    log_probs: th.Tensor,
    behaviour_log_probs: th.Tensor,
    ref_log_probs: th.Tensor,
    advantages: th.Tensor,
    clip_range: float,
    kl_coef: float,
) -> GRPOLoss:
    """
    The GRPO loss on a set of steps (DeepSeekMath eq. 3, averaged over steps), differentiable w.r.t. ``log_probs``.

    .. math::

        \\rho_t = \\exp(\\log\\pi_\\theta(a_t|s_t) - \\log\\pi_{old}(a_t|s_t))

        J = -\\mathrm{mean}_t \\min(\\rho_t A_t, \\mathrm{clip}(\\rho_t, 1-\\epsilon, 1+\\epsilon) A_t)
            + \\beta \\, \\mathrm{mean}_t \\left[x_t - \\log x_t - 1\\right],
            \\quad x_t = \\pi_{ref}(a_t|s_t) / \\pi_\\theta(a_t|s_t)

    The KL term is the unbiased, non-negative "k3" estimator of ``KL(pi_theta || pi_ref)`` used by GRPO
    (DeepSeekMath eq. 4). Unlike the paper, the mean runs over all steps of the (mini)batch rather than per episode
    then over episodes, so long episodes are not down-weighted (token-level averaging).

    :param log_probs: ``log pi_theta(a_t|s_t)`` under the current policy, shape (N,)
    :param behaviour_log_probs: log-probabilities under the policy that collected the steps, shape (N,)
    :param ref_log_probs: log-probabilities under the frozen reference policy, shape (N,) (detached here)
    :param advantages: per-step advantages ``A_t``, shape (N,)
    :param clip_range: ``epsilon`` of the clipped ratio (> 0)
    :param kl_coef: ``beta``, coefficient of the KL to the reference (>= 0)
    :return: the loss and its terms
    """
    _check_1d_same_shape(
        log_probs=log_probs, behaviour_log_probs=behaviour_log_probs, ref_log_probs=ref_log_probs, advantages=advantages
    )
    check_real("clip_range", clip_range, 0.0, low_open=True, finite=False)
    # Per-step probability ratio against the behaviour policy (N,)
    ratio = th.exp(log_probs - behaviour_log_probs.detach())
    # Clipped surrogate, as in PPO (N,)
    surrogate = th.min(ratio * advantages, th.clamp(ratio, 1 - clip_range, 1 + clip_range) * advantages)
    policy_loss = -surrogate.mean()
    # k3 estimator of KL(pi_theta || pi_ref): exp(x) - x - 1 with x = log pi_ref - log pi_theta (N,)
    log_ref_ratio = ref_log_probs.detach() - log_probs
    kl = (th.exp(log_ref_ratio) - log_ref_ratio - 1).mean()
    kl_loss = kl_coef * kl
    clip_fraction = ((ratio - 1).abs() > clip_range).float().mean().detach()
    return GRPOLoss(policy_loss + kl_loss, policy_loss, kl_loss, kl.detach(), clip_fraction)


def pair_episodes_by_return(returns: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    Pair the episodes of a group into (preferred, rejected) pairs by return, for DPO.

    The episodes are sorted by decreasing return (ties keep their group order), then the i-th best is paired with
    the i-th worst: best with worst, second best with second worst, and so on, giving ``M // 2`` disjoint pairs
    (with odd M the median episode is left out). Pairs whose two returns are equal carry no preference and are
    dropped, so an all-equal group gives no pair.

    :param returns: episode returns ``R_k``, shape (M,)
    :return: indices of the preferred and of the rejected episodes, shape (P,) each, ``R[win] > R[lose]``
    """
    if returns.ndim != 1:
        raise ValueError(f"returns must have shape (n_episodes,), got {tuple(returns.shape)}")
    n_pairs = len(returns) // 2
    order = th.sort(returns, descending=True, stable=True).indices
    winners = order[:n_pairs]
    losers = order.flip(0)[:n_pairs]
    strict = returns[winners] > returns[losers]
    return winners[strict], losers[strict]


class DPOLoss(NamedTuple):
    """The DPO objective and diagnostics (scalars but ``logits``)."""

    loss: th.Tensor
    logits: th.Tensor  # (P,) beta * (implicit reward margin) of each pair
    accuracy: th.Tensor  # fraction of pairs with a positive margin


def dpo_loss(
    scores: th.Tensor,
    ref_scores: th.Tensor,
    winners: th.Tensor,
    losers: th.Tensor,
    beta: float,
) -> DPOLoss:
    """
    The DPO loss over preference pairs of episodes (Rafailov et al. 2023, eq. 7), differentiable w.r.t. ``scores``.

    .. math::

        J = -\\mathrm{mean}_{(w, l)} \\log \\sigma\\left(b \\left[(L_w - L^{ref}_w) - (L_l - L^{ref}_l)\\right]\\right)

    with ``L`` the episode log-likelihood under the policy and ``L^ref`` under the frozen reference
    (docs/METHOD.md section 4). Computed with ``logsigmoid``. Without pairs the loss is 0 (no preference, no signal).

    :param scores: episode log-likelihoods ``L_k``, shape (M,)
    :param ref_scores: the same under the reference policy, shape (M,) (detached here)
    :param winners: indices of the preferred episodes, shape (P,)
    :param losers: indices of the rejected episodes, shape (P,)
    :param beta: ``b``, the inverse temperature of the implicit reward (> 0)
    :return: the loss, the per-pair logits and the preference accuracy
    """
    _check_1d_same_shape(scores=scores, ref_scores=ref_scores)
    if winners.shape != losers.shape or winners.ndim != 1:
        raise ValueError(
            f"winners and losers must be 1D with the same shape, got {tuple(winners.shape)} and {tuple(losers.shape)}"
        )
    check_real("beta", beta, 0.0, low_open=True)
    # Implicit rewards log pi(tau) / pi_ref(tau) of each episode (M,)
    log_ratios = scores - ref_scores.detach()
    # (M,) -> (P,)
    logits = beta * (log_ratios[winners] - log_ratios[losers])
    if len(logits) == 0:
        zero = (scores * 0.0).sum()
        return DPOLoss(zero, logits, zero.detach())
    loss = -th.nn.functional.logsigmoid(logits).mean()
    return DPOLoss(loss, logits, (logits > 0).float().mean().detach())
