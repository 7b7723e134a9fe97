from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import FloatSchedule, obs_as_tensor

from sb3_haepo.common.buffers import GroupChunk, GroupView, select_steps, stack_observations, step_observations
from sb3_haepo.common.checks import check_bool, check_optional_int, check_optional_real, check_real
from sb3_haepo.common.episodic import EpisodicOnPolicyAlgorithm, GroupPass
from sb3_haepo.common.type_aliases import EpisodeBatch
from sb3_haepo.common.utils import (
    BASELINE_OPTIONS,
    CREDIT_OPTIONS,
    CREDIT_WEIGHTING_OPTIONS,
    DEFAULT_TARGET_REF_KL,
    DEFAULT_VF_COEF,
    NORMALIZE_RETURNS_OPTIONS,
    TRAJECTORY_SCORE_OPTIONS,
    Baseline,
    Credit,
    CreditWeighting,
    HAEPOLoss,
    NormalizeReturns,
    TrajectoryScore,
    adapt_ref_kl_coef,
    adapt_weight_ent_coef,
    bootstrap_truncated_rewards,
    clipped_step_loss,
    default_target_weight_entropy,
    episode_length_factors,
    epoch_minibatch_size,
    haepo_loss,
    haepo_score_gradient,
    has_return_signal,
    lambda_returns,
    normalize_returns,
    parse_adaptive_coef,
    policy_entropy_loss,
    reward_to_go_advantages,
    score_step_scale,
    step_credit_coefficients,
    step_credit_loss,
    step_credit_loss_from_sums,
    trajectory_scores,
    value_baseline_advantages,
    value_regression_loss,
    weight_diagnostics,
)
from sb3_haepo.haepo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy


def _check_baseline(
    baseline: str,
    credit: str,
    minibatch_size: int | None,
    clip_range: float | Schedule | None,
    vf_coef: float | None,
    gae_lambda: float,
) -> None:
    """Refuse a ``baseline`` with options it cannot take (docs/METHOD.md section 17): the value baseline needs per-step
    credit and the minibatch update; ``vf_coef`` and ``gae_lambda`` belong to it."""
    if baseline not in BASELINE_OPTIONS:
        raise ValueError(f"Unknown baseline {baseline!r}, allowed: {BASELINE_OPTIONS}")
    if baseline == "value" and credit != "reward_to_go":
        raise ValueError(
            f"baseline='value' is the baseline of credit='reward_to_go' (each step's reward-to-go against the "
            f"value of its state), got credit={credit!r}"
        )
    if baseline == "value" and minibatch_size is None and clip_range is None:
        raise ValueError(
            "baseline='value' trains the value head in the minibatch steps of the clipped surrogate: give a "
            "minibatch_size or a clip_range (the exact update, minibatch_size=None with clip_range=None, has none)"
        )
    check_optional_real("vf_coef", vf_coef, 0.0, low_open=True, why_none=f"{DEFAULT_VF_COEF} with baseline='value'")
    if vf_coef is not None and baseline != "value":
        raise ValueError(f"vf_coef={vf_coef!r} weights the value head's loss of baseline='value', got baseline={baseline!r}")
    check_real("gae_lambda", gae_lambda, 0.0, 1.0)
    if gae_lambda != 1.0 and baseline != "value":
        raise ValueError(
            f"gae_lambda={gae_lambda!r} mixes the value head's estimates into the targets of baseline='value', "
            f"got baseline={baseline!r}: use baseline='value', or gae_lambda=1 (the time baseline's Monte Carlo "
            "reward-to-go)"
        )


class ValueStats(NamedTuple):
    """The value head's statistics over an epoch of minibatch steps (``baseline="value"``)."""

    squared_error: float  # mean over the group's steps of (V(s_t) - G_t)^2, each at its minibatch's parameters
    grad_norm: float  # mean over the minibatches of the value head's gradient norm before clipping


class EpochOutcome(NamedTuple):
    """What one epoch of :meth:`HAEPO.train` gives."""

    terms: HAEPOLoss | None  # the loss terms; None: the epochs stopped early (target_kl) before this epoch's step
    grad_norm: float  # before clipping
    policy_entropy: float  # the mean policy entropy per step
    approx_kl: float  # to the log-probabilities at the update's start
    scores: th.Tensor  # (M,) L_k at the parameters before this epoch's step
    start_log_probs: th.Tensor | None = None  # a batch's (N,) log-probabilities at the update's start


# The paper's formulation (docs/METHOD.md section 1): HAEPO("MlpPolicy", env, **PAPER_PRESET). Every step is
# credited with its episode's undiscounted return, episodes are scored by their cumulative log-likelihood, and each
# epoch is one step along the exact gradient. The paper normalises returns by their sum on bandits and by z-score on
# long sparse tasks: pass normalize_returns to choose (z-score by default).
PAPER_PRESET: dict[str, Any] = {
    "credit": "episode",
    "trajectory_score": "sum",
    "gamma": 1.0,
    "minibatch_size": None,
    "clip_range": None,
}
# The defaults of the package's first version (before 2026-11-26): the paper's update with the mean score, 4 exact
# full-batch epochs per group at lr 3e-3. The published benchmarks of the paper's tasks and the tuned zoo entries
# measured before per-step credit use it (docs/RESULTS.md).
EPISODE_CREDIT_PRESET: dict[str, Any] = {
    "credit": "episode",
    "gamma": 1.0,
    "learning_rate": 3e-3,
    "n_epochs": 4,
    "minibatch_size": None,
    "clip_range": None,
}


def check_adaptive_target(name: str, target: float | None, coef_name: str, coef: float | str, minimum: float | None) -> None:
    """
    Check the target of an adaptive coefficient: None, or a finite number ``>= minimum`` (``> 0`` when ``minimum``
    is None), given only with an adaptive coefficient (``"auto"`` or ``"auto_<start>"``).

    :param name: the target's parameter name
    :param target: its value
    :param coef_name: the coefficient's parameter name
    :param coef: the coefficient as given
    :param minimum: the smallest allowed target (None: the target must be > 0)
    :raises ValueError: naming the value and what is allowed
    """
    if target is None:
        return
    check_optional_real(name, target, 0.0 if minimum is None else minimum, low_open=minimum is None, why_none="the default")
    if not isinstance(coef, str):
        raise ValueError(
            f"{name}={target!r} is only used with {coef_name}='auto' (or 'auto_<start>'), but {coef_name}={coef!r} is "
            f"fixed: leave {name} at None, or make {coef_name} adaptive"
        )


class HAEPO(EpisodicOnPolicyAlgorithm):
    """
    History-Aggregated Exploratory Policy Optimization (HAEPO).

    Paper: https://arxiv.org/abs/2508.18884
    Code: written for this package on top of Stable-Baselines3's ``OnPolicyAlgorithm``
    (the rollout loop follows SB3's, the buffer handling follows sb3-contrib's RecurrentPPO and MaskablePPO).

    HAEPO is critic-free (by default) and treats a whole episode as one unit. Each update takes a group of complete episodes,
    scores episode ``k`` by its log-likelihood ``L_k`` under the policy, turns the scores into Plackett-Luce weights
    ``w = softmax(L)`` and minimises

    ``J = - sum_k w_k Rn_k + beta * sum_k w_k log w_k + lam * sum_k w_k (log w_k - log w_ref_k)``

    where ``Rn`` are the normalised episode returns and ``w_ref`` the weights under a frozen reference policy.
    The gradient is computed exactly with a two-pass scheme whose memory does not grow with episode length
    (see ``train()``). Only the actor of the policy is evaluated (see :class:`EpisodicOnPolicyAlgorithm`), unless
    ``baseline="value"`` asks for a learned state-value baseline.

    By default (``credit="reward_to_go"``) the return term credits each step with its own discounted reward-to-go
    against the group's mean at the same time step, and each group is reused for ``n_epochs`` epochs of clipped
    minibatch steps (docs/METHOD.md section 9), measured much faster than the paper's update. The paper's formulation
    is ``HAEPO(policy, env, **PAPER_PRESET)``; the defaults before per-step credit are ``EPISODE_CREDIT_PRESET``.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_episodes: Number of complete episodes per update, the group size M (>= 2). A rollout ends when this
        many episodes have completed across all envs; every episode that completes on that last step joins the
        group, so it can hold up to ``n_episodes + n_envs - 1`` episodes. Unfinished episodes go to the next group.
    :param n_epochs: Number of passes over each group. With the defaults each pass is one full-batch gradient step;
        with ``minibatch_size`` it is one step per minibatch.
    :param batch_size: Number of steps evaluated at once when computing the gradient. The gradient is the same for
        any value (it is accumulated over chunks); smaller values use less memory.
    :param gamma: Discount factor. The reward-to-go of step ``t`` is ``G_t = sum_{t' >= t} gamma^(t' - t) r_t'``
        (SB3's per-step meaning), and the episode return is ``R_k = G_0``. With ``credit="episode"`` every step is
        credited with ``R_k``, counted from the episode's first step: with ``gamma=0.4`` only its first ~5 rewards
        count, so keep 1.0 (the paper's undiscounted return) there. With ``credit="reward_to_go"`` each step gets its
        own ``G_t``.
    :param credit: What each step of an episode is credited with (docs/METHOD.md section 9).
        ``"episode"``: the paper's update, every step gets its episode's normalised return ``Rn_k``, through the
        Plackett-Luce weights. ``"reward_to_go"``: each step gets its own advantage, its discounted reward-to-go
        ``G_t`` minus the group's mean reward-to-go at the same time ``t``, z-scored over the group, and its
        episode's steps count with the episode's weight ``w_k``.
    :param normalize_returns: ``"zscore"`` (``(R - mean) / std``, for long horizons and sparse rewards) or ``"sum"``
        (``R / sum_j |R_j|``, the paper's sum-normalisation for non-negative returns). Applies to
        ``credit="episode"``; ``"reward_to_go"`` z-scores its per-step advantages.
    :param min_return_std: Floor of the z-score's divisor, in the units of the returns (>= 0): the normalised
        returns (``credit="episode"``, ``"zscore"``) and the per-step advantages (``"reward_to_go"``) are divided by
        ``max(std, min_return_std)``, so that a group whose returns differ by less than this scale (a small move cost,
        no success yet) gives a proportionally small signal instead of a unit one (docs/METHOD.md section 13).
        0 (default): the plain z-score.
    :param trajectory_score: ``"mean"`` (mean log-probability per step, ``L_k / T_k``) or ``"sum"`` (the paper's
        cumulative log-likelihood ``L_k``, which collapses the weights onto the shortest episodes when lengths vary)
    :param weight_ent_coef: ``beta``, coefficient of the entropy bonus on the episode weights (pushes ``w`` towards
        uniform; 0 disables it). ``"auto"`` (or ``"auto_<start>"``, e.g. ``"auto_0.1"``; ``"auto"`` starts at 0.01)
        adapts it after every update so that the weight entropy after the update tracks ``target_weight_entropy``,
        as SAC's ``ent_coef="auto"`` tunes its temperature (docs/METHOD.md section 10). The attribute
        ``weight_ent_coef`` then holds the current value.
    :param ref_kl_coef: ``lam``, coefficient of the KL divergence of the weights to the reference weights
        (0 disables it). With ``ref_update_interval=1`` the reference equals the policy at the first epoch, so this
        term acts from the second epoch on. ``"auto"`` (or ``"auto_<start>"``) adapts it after every update with
        PPO's adaptive KL penalty rule, towards ``target_ref_kl`` (docs/METHOD.md section 10).
    :param target_weight_entropy: With ``weight_ent_coef="auto"``: the target of the weight entropy ``H(w)``, in
        nats (>= 0). None (default): ``log(M / 2)`` for a group of M episodes, i.e. ``exp(H)``, the effective number
        of episodes, at half the group. Only with ``"auto"``.
    :param target_ref_kl: With ``ref_kl_coef="auto"``: the target of ``KL(w || w_ref)`` after the update (> 0).
        None (default): 0.01. Only with ``"auto"``.
    :param ref_update_interval: The reference policy is replaced by a copy of the current policy at the start of
        every ``ref_update_interval``-th update (1: every update). None: the reference is the policy at the first
        update and is never refreshed (a frozen initial policy, as in RLHF), so lam bounds the drift of the weights
        from the start of training (docs/METHOD.md section 10). A group skipped by ``skip_tied_groups`` counts as an
        update here.
    :param minibatch_size: None: each epoch is one step along the exact full-batch gradient. An integer:
        each epoch shuffles the group's steps and takes one step per minibatch of this many steps, on the clipped
        surrogate of ``clip_range`` (docs/METHOD.md section 9.4), with the episode weights and advantages computed
        once per epoch on the whole group.
    :param max_minibatches: The most optimizer steps of an epoch (an integer >= 1), or None (default): no cap. A
        group of more than ``minibatch_size * max_minibatches`` steps is split into at most this many larger
        minibatches (:func:`~sb3_haepo.common.utils.epoch_minibatch_size`), so that the number of steps of an
        update does not grow with the episodes' length; each minibatch is still evaluated in chunks of
        ``batch_size`` steps, which bound the memory (docs/METHOD.md section 9.5). With ``minibatch_size=None`` an
        epoch is one step, so the cap never binds.
    :param clip_range: PPO's clip of the per-step probability ratio against the policy at the start of the update,
        applied to the return term (None: no clipping). As in PPO, it can be a function of the current progress
        remaining (from 1 to 0). With ``minibatch_size=None`` and ``clip_range=None`` the
        update is the exact gradient of HAEPO's loss.
    :param max_grad_norm: The maximum value for the gradient clipping
    :param target_kl: Limit the KL divergence between the policy at the start of the update and the updated policy
        (mean over the group's steps, estimated as in PPO): the epochs stop early once it exceeds
        ``1.5 * target_kl``. It is checked before each epoch, not before each minibatch as in PPO, so the first
        epoch's minibatch steps are never stopped (docs/LEARNING.md entry 32). None (default) disables it.
    :param ent_coef: Coefficient of a policy-entropy bonus, PPO's ``ent_coef``: ``-ent_coef`` times the mean over
        the group's steps of the entropy of ``pi(.|s_t)`` is added to the loss, with its exact gradient in every
        update mode (docs/METHOD.md section 12). Distinct from ``weight_ent_coef`` (beta), which acts on the episode
        weights. 0 (default) disables it. Refused with gSDE and ``squash_output=True`` (no closed-form entropy).
    :param skip_tied_groups: Whether to skip the update on a group without a return signal
        (:func:`~sb3_haepo.common.utils.has_return_signal`: every episode returned the same with
        ``credit="episode"``, every per-step advantage is 0 with ``credit="reward_to_go"``, e.g. no success yet on a
        sparse-reward task). False (default): such a group is trained on like any other, and only the beta and lam
        terms (and ``ent_coef``) move the policy, through ``n_epochs`` epochs of optimizer steps whose tiny gradient
        Adam scales up to full-size steps; on long episodes that drift has collapsed the policy (docs/METHOD.md
        section 15). True: no optimizer step on such a group, its coefficients given as ``"auto"`` are not adapted,
        and it is counted in ``train/n_skipped_groups`` and ``train/n_skipped_steps``; its steps count in the budget
        as any others.
    :param credit_weighting: With ``credit="reward_to_go"`` and the mean score: how much each step's advantage
        counts in the return term (docs/METHOD.md section 16). ``"episode"`` (default): each episode's weight is
        shared among its steps, so step t of episode k is pushed by ``w_k A_{k,t} / T_k`` (the gradient of HAEPO's
        loss): a step of a long episode counts less than one of a short episode. ``"step"``: every advantage is
        multiplied by ``T_k / Tbar`` (``Tbar``: the group's mean episode length), so every step is pushed by
        ``w_k A_{k,t} / Tbar``, whatever its episode's length (with uniform weights PPO's mean over steps).
    :param baseline: With ``credit="reward_to_go"``: what each step's reward-to-go ``G_t`` is compared with.
        ``"time"`` (default, critic-free): the group's mean reward-to-go at the same time step. ``"value"``: the
        policy's value head ``V(s_t)`` at the start of the update, trained on the group's ``G_t`` in the same minibatch
        steps (PPO's critic with Monte Carlo returns, or GAE with ``gae_lambda``), its gradient clipped on its own
        (docs/METHOD.md section 17).
        Truncated episodes are bootstrapped with ``gamma * V(s_T)``. Without a ``net_arch``, MlpPolicy and
        MultiInputPolicy then get SB3's 64x64 critic MLP. Needs the minibatch update (``minibatch_size`` or
        ``clip_range``).
    :param vf_coef: With ``baseline="value"``: the coefficient of the value head's squared-error loss (> 0).
        None: 0.5 (PPO's default). Refused with ``baseline="time"``.
    :param gae_lambda: With ``baseline="value"``: PPO's ``gae_lambda``, in [0, 1]. The value head's targets are the
        lambda-returns (docs/METHOD.md section 17), so each step's advantage before the z-score is PPO's generalised
        advantage estimate. 1 (default): the Monte Carlo reward-to-go ``G_t``. Refused (other than 1) with
        ``baseline="time"``.
    :param max_episode_steps: Guard against envs that never end: an episode that reaches this length without
        ``done`` is cut and closed as truncated (counted in ``rollout/n_cut_episodes``)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE) instead of action noise
        (``Box`` actions only), as in PPO. The log-probabilities the update uses are those of the gSDE Gaussian.
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE.
        Default: -1 (only sample at the beginning of the rollout)
    :param logit_noise_std: Held logit noise, the exploration of gSDE for ``Discrete``, ``MultiDiscrete`` and
        ``MultiBinary`` actions: at the start of every episode a noise matrix ``Z`` is drawn and, for the whole
        episode, the logits become ``action_net(h(s)) + logit_noise_std * h(s) @ Z`` (``h``: the actor's latent
        features). The update conditions on each episode's ``Z``, so its gradient stays exact; evaluation and
        ``predict()`` use the unperturbed policy (docs/METHOD.md section 14). 0 (default) disables it.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation. Without ``net_arch``,
        MlpPolicy and MultiInputPolicy get ``dict(pi=[64, 64], vf=[])``: SB3's default actor and no critic MLP
        (``vf=[64, 64]``, SB3's default critic, with ``baseline="value"``).
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[MlpPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_episodes: int = 8,
        n_epochs: int = 10,
        batch_size: int = 4096,
        gamma: float = 0.99,
        credit: Credit = "reward_to_go",
        normalize_returns: NormalizeReturns = "zscore",
        min_return_std: float = 0.0,
        trajectory_score: TrajectoryScore = "mean",
        weight_ent_coef: float | str = 0.01,
        ref_kl_coef: float | str = 0.01,
        target_weight_entropy: float | None = None,
        target_ref_kl: float | None = None,
        ref_update_interval: int | None = 1,
        minibatch_size: int | None = 64,
        max_minibatches: int | None = None,
        clip_range: float | Schedule | None = 0.2,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
        ent_coef: float = 0.0,
        skip_tied_groups: bool = False,
        credit_weighting: CreditWeighting = "episode",
        baseline: Baseline = "time",
        vf_coef: float | None = None,
        gae_lambda: float = 1.0,
        max_episode_steps: int = 100_000,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        logit_noise_std: float = 0.0,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_episodes=n_episodes,
            n_epochs=n_epochs,
            batch_size=batch_size,
            gamma=gamma,
            ref_update_interval=ref_update_interval,
            max_grad_norm=max_grad_norm,
            max_episode_steps=max_episode_steps,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            logit_noise_std=logit_noise_std,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
        )
        if normalize_returns not in NORMALIZE_RETURNS_OPTIONS:
            raise ValueError(f"Unknown normalize_returns {normalize_returns!r}, allowed: {NORMALIZE_RETURNS_OPTIONS}")
        if credit not in CREDIT_OPTIONS:
            raise ValueError(f"Unknown credit {credit!r}, allowed: {CREDIT_OPTIONS}")
        if credit == "reward_to_go" and normalize_returns != "zscore":
            raise ValueError(
                f"normalize_returns={normalize_returns!r} applies to credit='episode' only: credit='reward_to_go' "
                "z-scores its per-step advantages (use normalize_returns='zscore')"
            )
        if trajectory_score not in TRAJECTORY_SCORE_OPTIONS:
            raise ValueError(f"Unknown trajectory_score {trajectory_score!r}, allowed: {TRAJECTORY_SCORE_OPTIONS}")
        if credit_weighting not in CREDIT_WEIGHTING_OPTIONS:
            raise ValueError(f"Unknown credit_weighting {credit_weighting!r}, allowed: {CREDIT_WEIGHTING_OPTIONS}")
        if credit_weighting == "step" and (credit, trajectory_score) != ("reward_to_go", "mean"):
            raise ValueError(
                f"credit_weighting='step' reweights the per-step advantages of credit='reward_to_go' under "
                f"trajectory_score='mean' (with the sum score every step already counts the same), got "
                f"credit={credit!r} and trajectory_score={trajectory_score!r}"
            )
        _check_baseline(baseline, credit, minibatch_size, clip_range, vf_coef, gae_lambda)
        check_real("min_return_std", min_return_std, 0.0)
        if min_return_std > 0 and normalize_returns != "zscore":
            raise ValueError(
                f"min_return_std={min_return_std!r} is a floor of the z-score's divisor: it needs "
                f"normalize_returns='zscore', got {normalize_returns!r}"
            )
        weight_ent_coef_value, weight_ent_coef_auto = parse_adaptive_coef("weight_ent_coef", weight_ent_coef)
        ref_kl_coef_value, ref_kl_coef_auto = parse_adaptive_coef("ref_kl_coef", ref_kl_coef)
        check_adaptive_target("target_weight_entropy", target_weight_entropy, "weight_ent_coef", weight_ent_coef, 0.0)
        check_adaptive_target("target_ref_kl", target_ref_kl, "ref_kl_coef", ref_kl_coef, None)
        check_optional_real("target_kl", target_kl, 0.0, low_open=True, why_none="no early stop")
        check_real("ent_coef", ent_coef, 0.0)
        if ent_coef > 0 and use_sde and (policy_kwargs or {}).get("squash_output", False):
            raise ValueError(
                f"ent_coef={ent_coef!r} needs the policy's entropy in closed form, which gSDE with "
                "squash_output=True does not have (its one-sample estimate -log pi(a|s) has a zero expected gradient): "
                "use ent_coef=0 or squash_output=False"
            )
        check_optional_int("minibatch_size", minibatch_size, 1)
        check_optional_int("max_minibatches", max_minibatches, 1)
        if clip_range is not None and not callable(clip_range):
            check_real("clip_range", clip_range, 0.0, low_open=True, why="or a schedule, or None")

        self.credit = credit
        self.normalize_returns = normalize_returns
        self.min_return_std = float(min_return_std)
        self.trajectory_score = trajectory_score
        # The coefficients in use: with "auto", their current values, adapted after every update (and saved)
        self.weight_ent_coef = weight_ent_coef_value
        self.ref_kl_coef = ref_kl_coef_value
        self.weight_ent_coef_auto = weight_ent_coef_auto
        self.ref_kl_coef_auto = ref_kl_coef_auto
        self.target_weight_entropy = None if target_weight_entropy is None else float(target_weight_entropy)
        self.target_ref_kl = DEFAULT_TARGET_REF_KL if target_ref_kl is None else float(target_ref_kl)
        self.target_kl = target_kl
        self.ent_coef = float(ent_coef)
        self.skip_tied_groups = check_bool("skip_tied_groups", skip_tied_groups)
        self.credit_weighting = credit_weighting
        self.baseline = baseline
        self.vf_coef = (DEFAULT_VF_COEF if vf_coef is None else float(vf_coef)) if baseline == "value" else 0.0
        self.gae_lambda = float(gae_lambda)
        # Groups (and their steps) skipped by skip_tied_groups, over the model's life
        self._n_skipped_groups = 0
        self._n_skipped_steps = 0
        self.minibatch_size = None if minibatch_size is None else int(minibatch_size)
        self.max_minibatches = None if max_minibatches is None else int(max_minibatches)
        self.clip_range: Schedule | None = None if clip_range is None else FloatSchedule(clip_range)

        if _init_setup_model:
            self._setup_model()

    def train(self) -> None:
        """
        Update the policy on the group of episodes in the buffer (``n_epochs`` full-batch gradient steps).

        Each epoch makes two passes over the steps (docs/METHOD.md section 2):

        1. the scores ``L_k`` without a graph, then the scalars ``c_k = dJ/dL_k`` from them;
        2. the gradient of the surrogate ``sum_t c_{k(t)} dL_k/dlog pi_t * log pi(a_t|s_t)``, accumulated over
           chunks of ``batch_size`` steps. It equals the gradient of ``J`` exactly, with memory bounded by the chunk.

        When the whole group fits in one chunk, both passes share one forward pass. When it does not, the group is
        read in place from the buffer (:class:`~sb3_haepo.common.buffers.GroupView`): pass 1 keeps only per-episode
        sums, pass 2 forms each chunk's coefficients, and the per-step values the update needs live in the buffer's
        update slots, so that nothing the size of the group is allocated (docs/METHOD.md section 2.2). With
        ``minibatch_size`` or ``clip_range``, pass 2 is replaced by minibatch steps on the clipped surrogate
        (docs/METHOD.md section 9.4). After the epochs, the coefficients given as ``"auto"`` are adapted
        (docs/METHOD.md section 10). With ``skip_tied_groups``, a group without a return signal makes no update at all
        (docs/METHOD.md section 15).
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        # Update optimizer learning rate
        self._update_learning_rate(self.policy.optimizer)

        # The reference is a frozen copy of the policy, refreshed every `ref_update_interval` updates
        self._refresh_reference()

        exact = self.minibatch_size is None and self.clip_range is None
        clip_range = None if self.clip_range is None else float(self.clip_range(self._current_progress_remaining))
        per_step_credit = self.credit == "reward_to_go"
        # The group refers to the buffer's observations: no copy of them; the exact update over several chunks reads
        # everything in place (docs/METHOD.md section 2.2)
        group: EpisodeBatch | GroupView
        if exact and self.rollout_buffer.n_completed_steps > self.batch_size:
            group = GroupView(self.rollout_buffer)
        else:
            group = self.rollout_buffer.get(copy_observations=False)

        # Normalised returns Rn_k (M,), and with per-step credit the advantages A_{k,t} (N; read in place when streamed)
        norm_returns = normalize_returns(group.returns, self.normalize_returns, min_std=self.min_return_std)
        advantages = None
        # With baseline="value": the value head's regression targets G_t, or the lambda-returns (N,)
        value_targets: th.Tensor | None = None
        if per_step_credit and isinstance(group, GroupView):
            group.compute_advantages(self.gamma, self.batch_size, min_std=self.min_return_std)
            if self.credit_weighting == "step":
                group.scale_advantages(episode_length_factors(group.lengths))
        elif per_step_credit and isinstance(group, EpisodeBatch) and self.baseline == "time":
            advantages = reward_to_go_advantages(group.rewards, group.lengths, self.gamma, min_std=self.min_return_std)
        if self.skip_tied_groups and not self._group_has_return_signal(group, advantages):
            self._skip_group(group, clip_range)
            return
        if per_step_credit and isinstance(group, EpisodeBatch):
            if self.baseline == "value":
                # After the skip check, which reads the rewards: a skipped group costs no value-head passes
                rewards = bootstrap_truncated_rewards(
                    group.rewards,
                    group.lengths,
                    th.as_tensor(group.truncated, device=group.lengths.device),
                    self._final_values(group),
                    self.gamma,
                )
                values = self._step_values(group)
                value_targets = lambda_returns(rewards, values, group.lengths, self.gamma, self.gae_lambda)
                advantages = value_baseline_advantages(value_targets, values, min_std=self.min_return_std)
            assert advantages is not None
            if self.credit_weighting == "step":
                advantages = advantages * episode_length_factors(group.lengths, advantages.dtype)[group.episode_index]
        # Scores of the reference policy (M,): no gradient
        ref_scores = self._episode_scores(self.ref_policy, group, self.trajectory_score)

        logs: dict[str, list[float]] = {}
        # The coefficients this update uses (the adaptive ones change after it)
        coefs = (self.weight_ent_coef, self.ref_kl_coef)
        # The scores at the current parameters, when known (after an early stop)
        current_scores: th.Tensor | None = None
        # The batch path's log pi(a_t|s_t) at the update's start (N,)
        start_log_probs: th.Tensor | None = None
        continue_training = True
        for epoch in range(self.n_epochs):
            if isinstance(group, GroupView):
                kl_mode: Literal["record", "measure"] = "record" if epoch == 0 else "measure"
                epoch_pass = self._group_pass(self.policy, group, self.trajectory_score, kl_mode, per_step_credit)
                outcome = self._streamed_epoch(group, epoch_pass, ref_scores, norm_returns, coefs, epoch)
            else:
                outcome = self._batch_epoch(
                    group, advantages, norm_returns, ref_scores, coefs, clip_range, logs, epoch, start_log_probs, value_targets
                )
                start_log_probs = outcome.start_log_probs
            terms = outcome.terms
            if terms is None:
                continue_training = False
                current_scores = outcome.scores
                break

            epoch_logs = {
                "loss": float(terms.loss) - self.ent_coef * outcome.policy_entropy,
                "return_loss": float(terms.return_loss),
                "weight_entropy_loss": float(terms.entropy_loss),
                "ref_kl_loss": float(terms.kl_loss),
                "grad_norm": outcome.grad_norm,
                "approx_kl": outcome.approx_kl,
                "policy_entropy": outcome.policy_entropy,
                "policy_entropy_loss": -self.ent_coef * outcome.policy_entropy,
                **weight_diagnostics(terms.log_weights, ref_scores),
            }
            for key, value in epoch_logs.items():
                logs.setdefault(key, []).append(value)
            self._n_updates += 1

        # The coefficients this update used are logged before the adaptive ones change
        self._record_update_logs(logs, group, clip_range, continue_training)
        if self.weight_ent_coef_auto or self.ref_kl_coef_auto:
            self._adapt_coefficients(group, ref_scores, current_scores)

    def _record_update_logs(
        self,
        logs: dict[str, list[float]],
        group: "EpisodeBatch | GroupView",
        clip_range: float | None,
        continue_training: bool,
    ) -> None:
        """Log an update's per-epoch diagnostics (none for a skipped group), the group's statistics, the coefficients
        in use, and with ``skip_tied_groups`` the skip counters."""
        self._record_train_logs(logs, group)
        self.logger.record("train/weight_ent_coef", self.weight_ent_coef)
        self.logger.record("train/ref_kl_coef", self.ref_kl_coef)
        if clip_range is not None:
            self.logger.record("train/clip_range", clip_range)
        self.logger.record("train/n_epochs", len(logs.get("loss", [])))
        self.logger.record("train/continue_training", continue_training)
        if self.skip_tied_groups:
            self.logger.record("train/n_skipped_groups", self._n_skipped_groups)
            self.logger.record("train/n_skipped_steps", self._n_skipped_steps)

    def _group_has_return_signal(self, group: "EpisodeBatch | GroupView", advantages: th.Tensor | None) -> bool:
        """:return: :func:`~sb3_haepo.common.utils.has_return_signal` of the group, with the per-step advantages
        this update computed (read in place from the buffer's slot when the group is streamed; before
        ``credit_weighting``'s positive factors, which leave every zero a zero)"""
        if self.credit == "episode":
            return has_return_signal(group.returns)
        if isinstance(group, GroupView):
            advantages = group.slot("advantages")
        elif self.baseline == "value":
            # The value baseline's advantages vary with V wherever the rewards do not: the signal is the rewards'
            assert isinstance(group, EpisodeBatch)
            advantages = reward_to_go_advantages(group.rewards, group.lengths, self.gamma)
        return has_return_signal(group.returns, advantages)

    def _skip_group(self, group: "EpisodeBatch | GroupView", clip_range: float | None) -> None:
        """Make no update on a group without a return signal (``skip_tied_groups``): count it and log its statistics."""
        self._n_skipped_groups += 1
        self._n_skipped_steps += int(group.lengths.sum())
        self._record_update_logs({}, group, clip_range, continue_training=True)

    def _stops_early(self, epoch: int, approx_kl: float) -> bool:
        """:return: whether the epochs stop here: the policy moved beyond ``1.5 * target_kl`` from the update's start"""
        if self.target_kl is None or approx_kl <= 1.5 * self.target_kl:
            return False
        if self.verbose >= 1:
            print(f"Early stopping at epoch {epoch} due to reaching max kl: {approx_kl:.2f}")
        return True

    def _streamed_epoch(
        self,
        group: GroupView,
        epoch_pass: GroupPass,
        ref_scores: th.Tensor,
        norm_returns: th.Tensor,
        coefs: tuple[float, float],
        epoch: int,
    ) -> EpochOutcome:
        """
        One exact epoch on a group read in place, after its pass 1 (:meth:`_group_pass`): the loss terms from the
        per-episode sums, then pass 2 with each chunk's coefficients formed as it is read.

        :param coefs: ``(weight_ent_coef, ref_kl_coef)`` of this update
        """
        weight_ent_coef, ref_kl_coef = coefs
        if self._stops_early(epoch, epoch_pass.approx_kl):
            return EpochOutcome(None, 0.0, epoch_pass.policy_entropy, epoch_pass.approx_kl, epoch_pass.scores)
        scores, lengths, score = epoch_pass.scores, group.lengths, self.trajectory_score
        if epoch_pass.credit_sums is None:
            terms = haepo_loss(scores, ref_scores, norm_returns, weight_ent_coef, ref_kl_coef)
            # c_k = dJ/dL_k (M,), times dL_k/dlog pi_t for each chunk's steps
            score_grad = haepo_score_gradient(scores, ref_scores, norm_returns, weight_ent_coef, ref_kl_coef)

            def step_coef(chunk: GroupChunk) -> th.Tensor:
                return score_grad[chunk.episode_index] * score_step_scale(chunk.episode_index, lengths, score)

        else:
            terms = step_credit_loss_from_sums(scores, ref_scores, epoch_pass.credit_sums, weight_ent_coef, ref_kl_coef)
            step_advantages = group.slot("advantages")

            def step_coef(chunk: GroupChunk) -> th.Tensor:
                scale = score_step_scale(chunk.episode_index, lengths, score)
                chunk_advantages = step_advantages[chunk.steps].to(self.device)
                return step_credit_coefficients(
                    scores, ref_scores, chunk_advantages, chunk.episode_index, scale, weight_ent_coef, ref_kl_coef
                )

        grad_norm = self._score_gradient_step(group, step_coef, ent_coef=self.ent_coef)
        return EpochOutcome(terms, grad_norm, epoch_pass.policy_entropy, epoch_pass.approx_kl, scores)

    def _batch_epoch(
        self,
        batch: EpisodeBatch,
        advantages: th.Tensor | None,
        norm_returns: th.Tensor,
        ref_scores: th.Tensor,
        coefs: tuple[float, float],
        clip_range: float | None,
        logs: dict[str, list[float]],
        epoch: int,
        start_log_probs: th.Tensor | None,
        value_targets: th.Tensor | None = None,
    ) -> EpochOutcome:
        """
        One epoch on a group held as a batch: the exact update when the group fits in one chunk (one forward pass
        with its graph serves both passes), or the minibatch epochs on the clipped surrogate.

        :param coefs: ``(weight_ent_coef, ref_kl_coef)`` of this update
        :param start_log_probs: ``log pi(a_t|s_t)`` at the update's start (None at the first epoch, which sets them)
        :param value_targets: with ``baseline="value"``, the value head's targets ``G_t`` or lambda-returns (N,),
            else None
        """
        weight_ent_coef, ref_kl_coef = coefs
        exact = self.minibatch_size is None and self.clip_range is None
        n_steps = len(batch.episode_index)
        # Pass 1: per-step log-probabilities (with a graph when the exact update holds everything in one chunk)
        if exact:
            log_probs, entropy = self._step_log_probs(self.policy, batch, n_steps)
            detached_log_probs = log_probs.detach()
        else:
            with th.no_grad():
                detached_log_probs, entropy = self._step_log_probs(self.policy, batch, self.batch_size)
        policy_entropy = float(entropy.detach().mean())
        # Without the policy-entropy bonus the per-step entropies are only logged; with it, pass 2 reuses them
        step_entropies = entropy if exact and self.ent_coef > 0 else None
        del entropy
        if start_log_probs is None:
            start_log_probs = detached_log_probs
        # KL between the policy at the start of the update and now, per step (as in PPO)
        log_ratio = detached_log_probs - start_log_probs
        approx_kl = float(th.mean((th.exp(log_ratio) - 1) - log_ratio))
        del log_ratio
        if self._stops_early(epoch, approx_kl):
            scores = trajectory_scores(detached_log_probs, batch.episode_index, batch.lengths, self.trajectory_score)
            return EpochOutcome(None, 0.0, policy_entropy, approx_kl, scores, start_log_probs)

        # Trajectory scores L_k (M,), the loss terms (for logging) and the per-step coefficients dJ/dlog pi_t (N,)
        scores = trajectory_scores(detached_log_probs, batch.episode_index, batch.lengths, self.trajectory_score)
        # dL_k / dlog pi(a_t|s_t), (N,)
        step_scale = score_step_scale(batch.episode_index, batch.lengths, self.trajectory_score)
        if advantages is None:
            terms = haepo_loss(scores, ref_scores, norm_returns, weight_ent_coef, ref_kl_coef)
            # c_k = dJ/dL_k (M,) -> per-step coefficient of log pi(a_t|s_t) (N,)
            score_grad = haepo_score_gradient(scores, ref_scores, norm_returns, weight_ent_coef, ref_kl_coef)
            step_coef = score_grad[batch.episode_index] * step_scale
        else:
            terms = step_credit_loss(
                detached_log_probs,
                batch.episode_index,
                batch.lengths,
                ref_scores,
                advantages,
                self.trajectory_score,
                weight_ent_coef,
                ref_kl_coef,
            )
            step_coef = step_credit_coefficients(
                scores, ref_scores, advantages, batch.episode_index, step_scale, weight_ent_coef, ref_kl_coef
            )

        if exact:
            # Pass 2: gradient of the surrogate sum_t step_coef_t * log pi(a_t|s_t) == grad J, and the step
            grad_norm = self._score_gradient_step(batch, step_coef, log_probs, step_entropies, self.ent_coef)
        else:
            # The return term's share a_t of -step_coef: w_k s_k A_{k,t}, with the episode-level advantage
            # A_{k,t} = Rn_k - sum_j w_j Rn_j under credit="episode" (docs/METHOD.md section 9.3)
            weights = th.softmax(scores, 0)
            if advantages is None:
                step_advantages = (norm_returns - (weights * norm_returns).sum())[batch.episode_index]
            else:
                step_advantages = advantages
            return_coef = weights[batch.episode_index] * step_scale * step_advantages
            grad_norm, clip_fraction, value_stats = self._minibatch_steps(
                batch, step_coef, return_coef, start_log_probs, clip_range, value_targets
            )
            logs.setdefault("clip_fraction", []).append(clip_fraction)
            if value_stats is not None:
                logs.setdefault("value_loss", []).append(value_stats.squared_error)
                logs.setdefault("value_grad_norm", []).append(value_stats.grad_norm)
        return EpochOutcome(terms, grad_norm, policy_entropy, approx_kl, scores, start_log_probs)

    def _adapt_coefficients(self, group: "EpisodeBatch | GroupView", ref_scores: th.Tensor, scores: th.Tensor | None) -> None:
        """
        Adapt ``weight_ent_coef`` and ``ref_kl_coef`` (those given as ``"auto"``) once the update is done
        (docs/METHOD.md section 10), from the weights of the group under the updated policy: the weight entropy
        ``H(w)`` for ``beta`` (:func:`adapt_weight_ent_coef`), and ``KL(w || w_ref)`` for ``lam``
        (:func:`adapt_ref_kl_coef`). Both are measured after the last step, so the KL is what the update added: at
        the first epoch it is 0 whenever the reference was just refreshed.

        :param group: the group
        :param ref_scores: its scores under the reference policy, shape (M,)
        :param scores: its scores at the current parameters if the update already computed them (after an early
            stop), else None: one more forward pass without a graph computes them
        """
        if scores is None:
            scores = self._episode_scores(self.policy, group, self.trajectory_score)
        diagnostics = weight_diagnostics(th.log_softmax(scores, dim=0), ref_scores)
        if self.weight_ent_coef_auto:
            target = self.target_weight_entropy
            if target is None:
                target = default_target_weight_entropy(len(group.returns))
            self.logger.record("train/target_weight_entropy", target)
            self.logger.record("train/post_update_weight_entropy", diagnostics["weight_entropy"])
            self.weight_ent_coef = adapt_weight_ent_coef(self.weight_ent_coef, diagnostics["weight_entropy"], target)
        if self.ref_kl_coef_auto:
            self.logger.record("train/target_ref_kl", self.target_ref_kl)
            self.logger.record("train/post_update_ref_kl", diagnostics["ref_kl"])
            self.ref_kl_coef = adapt_ref_kl_coef(self.ref_kl_coef, diagnostics["ref_kl"], self.target_ref_kl)

    def _minibatch_steps(
        self,
        batch: EpisodeBatch,
        step_coef: th.Tensor,
        return_coef: th.Tensor,
        old_log_probs: th.Tensor,
        clip_range: float | None,
        value_targets: th.Tensor | None = None,
    ) -> tuple[float, float, "ValueStats | None"]:
        """
        One epoch of minibatch steps on the clipped surrogate (:func:`clipped_step_loss`, docs/METHOD.md section
        9.4). Each minibatch's surrogate is scaled by ``N / minibatch`` so that its gradient estimates the
        full-batch one. A minibatch larger than ``batch_size`` (``max_minibatches``, section 9.5) has its gradient
        accumulated over chunks of ``batch_size`` steps before its one optimizer step: the surrogate is a sum over
        steps, so the chunks' gradients add up to the minibatch's, and only a chunk's graph is held. With
        ``value_targets`` (``baseline="value"``) each minibatch's loss also has the value head's regression term
        (:func:`value_regression_loss`), scaled the same way, so one optimizer step trains both heads as in PPO.

        :return: the mean gradient norm before clipping (of the actor's parameters alone with ``value_targets``),
            the mean fraction of clipped steps, and with ``value_targets`` the value head's statistics (else None)
        """
        n_steps = len(batch.episode_index)
        minibatch_size = epoch_minibatch_size(n_steps, self.minibatch_size, self.max_minibatches)
        grad_norms, clip_fractions, squared_errors, value_grad_norms = [], [], [], []
        actor, critic = self._actor_critic_parameters() if value_targets is not None else ([], [])
        for indices in th.randperm(n_steps, device=self.device).split(minibatch_size):
            self.policy.optimizer.zero_grad()
            chunk_clip_fractions = []
            for chunk in indices.split(self.batch_size):
                minibatch = select_steps(batch, chunk)
                log_probs, entropies = self._step_log_probs(self.policy, minibatch, len(chunk))
                terms = clipped_step_loss(log_probs, old_log_probs[chunk], step_coef[chunk], return_coef[chunk], clip_range)
                loss = terms.loss
                if self.ent_coef > 0:
                    loss = loss + policy_entropy_loss(entropies, self.ent_coef, n_steps)
                if value_targets is not None:
                    values = self._chunk_values(step_observations(minibatch, slice(0, len(chunk))))
                    loss = loss + value_regression_loss(values, value_targets[chunk], self.vf_coef, n_steps)
                    squared_errors.append(float((values.detach() - value_targets[chunk]).pow(2).sum()))
                (loss * (n_steps / len(indices))).backward()
                chunk_clip_fractions.append((float(terms.clip_fraction), len(chunk)))
            if value_targets is None:
                grad_norms.append(self._clip_and_step())
            else:
                # The value head's gradient is clipped on its own: in the actor's norm it would dwarf the return
                # term's gradient and shrink the actor's step (docs/METHOD.md section 17)
                value_grad_norms.append(float(th.nn.utils.clip_grad_norm_(critic, self.max_grad_norm)))
                grad_norms.append(self._clip_and_step(actor))
            if len(chunk_clip_fractions) == 1:
                clip_fractions.append(chunk_clip_fractions[0][0])
            else:
                clip_fractions.append(sum(fraction * size for fraction, size in chunk_clip_fractions) / len(indices))
        value_stats = None
        if value_targets is not None:
            value_stats = ValueStats(sum(squared_errors) / n_steps, float(np.mean(value_grad_norms)))
        return float(np.mean(grad_norms)), float(np.mean(clip_fractions)), value_stats

    def _default_net_arch(self) -> dict[str, list[int]]:
        """:return: without a ``net_arch`` in ``policy_kwargs``: SB3's default 64x64 actor, and with
        ``baseline="value"`` SB3's default 64x64 critic (else none, the value head is never evaluated)"""
        return dict(pi=[64, 64], vf=[64, 64] if self.baseline == "value" else [])

    def _actor_critic_parameters(self) -> tuple[list[th.nn.Parameter], list[th.nn.Parameter]]:
        """:return: the policy's parameters outside the value head, and the value head's own (its MLP, its output
        layer, and its features extractor when the heads do not share one; a shared one is the actor's, and the
        value head reads its features detached, :meth:`_chunk_values`)"""
        critic_modules = [self.policy.mlp_extractor.value_net, self.policy.value_net]
        if not self.policy.share_features_extractor:
            critic_modules.append(self.policy.vf_features_extractor)
        critic_ids = {id(parameter) for module in critic_modules for parameter in module.parameters()}
        actor = [parameter for parameter in self.policy.parameters() if id(parameter) not in critic_ids]
        critic = [parameter for module in critic_modules for parameter in module.parameters()]
        return actor, critic

    def _chunk_values(self, observations: np.ndarray | dict[str, np.ndarray]) -> th.Tensor:
        """:return: ``V(s_t)`` of some steps under the policy's value head, shape (chunk,), with a graph when
        gradients are enabled (``baseline="value"``). As SB3's ``predict_values``, except that the features of a
        features extractor shared with the actor are detached: the value loss trains only the value head's own
        parameters, so the actor's update does not depend on it (docs/METHOD.md section 17)."""
        policy = self.policy
        obs = obs_as_tensor(observations, self.device)
        features = BasePolicy.extract_features(policy, obs, policy.vf_features_extractor)
        if policy.share_features_extractor:
            features = features.detach()
        return policy.value_net(policy.mlp_extractor.forward_critic(features)).flatten()

    def _final_values(self, batch: EpisodeBatch) -> th.Tensor:
        """:return: ``V(s_T)`` of the observation after the last step of each truncated episode of ``batch``, in
        episode order, without a graph, shape (number truncated,)"""
        finals = [
            batch.final_observations[k] if batch.final_observations is not None else None
            for k in np.flatnonzero(batch.truncated)
        ]
        if any(final is None for final in finals):
            raise ValueError(
                "baseline='value' bootstraps truncated episodes from their final observation, and an env truncated an "
                "episode without one: use SB3's VecEnvs, which put it in info['terminal_observation']"
            )
        return self._values_without_graph(
            len(finals), lambda chunk: stack_observations(finals[chunk])  # type: ignore[arg-type]
        )

    def _step_values(self, batch: EpisodeBatch) -> th.Tensor:
        """:return: ``V(s_t)`` of every step of ``batch`` before the update, without a graph, shape (N,)"""
        return self._values_without_graph(len(batch.episode_index), lambda chunk: step_observations(batch, chunk))

    def _values_without_graph(
        self, n_observations: int, observations: Callable[[slice], np.ndarray | dict[str, np.ndarray]]
    ) -> th.Tensor:
        """:return: ``V`` of ``n_observations`` observations without a graph, ``batch_size`` at a time, shape
        (n_observations,); ``observations(chunk)`` gives those of a slice of them"""
        if n_observations == 0:
            return th.zeros(0, device=self.device)
        with th.no_grad():
            return th.cat(
                [
                    self._chunk_values(observations(slice(start, min(start + self.batch_size, n_observations))))
                    for start in range(0, n_observations, self.batch_size)
                ]
            )
