from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_haepo.common.checks import check_real
from sb3_haepo.common.episodic import EpisodicOnPolicyAlgorithm
from sb3_haepo.common.utils import (
    TRAJECTORY_SCORE_OPTIONS,
    TrajectoryScore,
    dpo_loss,
    pair_episodes_by_return,
    score_step_scale,
    trajectory_scores,
)
from sb3_haepo.dpo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy


class DPO(EpisodicOnPolicyAlgorithm):
    """
    Direct Preference Optimization (DPO) for control, online, as the baseline of the HAEPO paper.

    Paper: https://arxiv.org/abs/2305.18290
    Code: written for this package on the episodic base class shared with HAEPO (same rollouts, same episode buffer)

    Each update takes a group of complete episodes and turns it into preference pairs by return: the episodes are
    sorted by return and the best is preferred to the worst, the second best to the second worst, etc.
    (``M // 2`` disjoint pairs; pairs with equal returns are dropped, see
    :func:`~sb3_haepo.common.utils.pair_episodes_by_return`). The loss is

    ``J = -mean_pairs log sigmoid(beta * ((L_win - L_win_ref) - (L_lose - L_lose_ref)))``

    with ``L`` an episode's log-likelihood under the policy and ``L_ref`` under a frozen reference policy.
    The gradient is exact and computed in two passes, as HAEPO's: the scores without a graph, then
    ``c_k = dJ/dL_k`` by autograd on the (M,) scores, then the surrogate ``sum_t c_{k(t)} log pi(a_t|s_t)`` over
    chunks of ``batch_size`` steps, so memory does not grow with episode length.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_episodes: Number of complete episodes per update, the group size M (>= 2); see
        :class:`~sb3_haepo.common.episodic.EpisodicOnPolicyAlgorithm`
    :param n_epochs: Number of gradient steps on each group (each is one full-batch step over the pairs)
    :param batch_size: Number of steps evaluated at once when computing the gradient (the gradient is the same for
        any value; smaller values use less memory)
    :param gamma: Discount factor of the episode return ``R_k = sum_t gamma^t r_t`` used to rank the episodes,
        counted from the episode's first step (1.0: undiscounted; not SB3's per-step discount, see HAEPO)
    :param beta: Inverse temperature of DPO's implicit reward (0.1 in the DPO paper)
    :param trajectory_score: ``"sum"`` (the episode log-likelihood ``L = sum_t log pi(a_t|s_t)``, DPO's) or
        ``"mean"`` (``L / T``)
    :param ref_update_interval: The reference policy is replaced by a copy of the current policy at the start of
        every ``ref_update_interval``-th update (1: every update; the loss then starts at ``log 2`` on each group).
        None: the reference is the policy at the first update and is never refreshed (a frozen initial policy, as
        in RLHF and in the DPO paper)
    :param max_grad_norm: The maximum value for the gradient clipping
    :param max_episode_steps: Guard against envs that never end (see the base class)
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
    :param policy_kwargs: additional arguments to be passed to the policy on creation (without ``net_arch``:
        ``dict(pi=[64, 64], vf=[])``, no critic MLP)
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
        n_episodes: int = 16,
        n_epochs: int = 4,
        batch_size: int = 4096,
        gamma: float = 1.0,
        beta: float = 0.1,
        trajectory_score: TrajectoryScore = "sum",
        ref_update_interval: int | None = 1,
        max_grad_norm: float = 0.5,
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
        if trajectory_score not in TRAJECTORY_SCORE_OPTIONS:
            raise ValueError(f"Unknown trajectory_score {trajectory_score!r}, allowed: {TRAJECTORY_SCORE_OPTIONS}")
        check_real("beta", beta, 0.0, low_open=True)

        self.beta = float(beta)
        self.trajectory_score = trajectory_score

        if _init_setup_model:
            self._setup_model()

    def train(self) -> None:
        """
        Update the policy on the preference pairs of the group in the buffer (``n_epochs`` full-batch steps).
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        # Update optimizer learning rate
        self._update_learning_rate(self.policy.optimizer)

        # The reference is a frozen copy of the policy, refreshed every `ref_update_interval` updates
        self._refresh_reference()

        # The group refers to the buffer's observations: no copy of them (docs/METHOD.md section 2.2)
        batch = self.rollout_buffer.get(copy_observations=False)
        # Preference pairs: best vs worst return, second best vs second worst, ... (P,) each
        winners, losers = pair_episodes_by_return(batch.returns)
        self.logger.record("train/n_pairs", len(winners))
        self.logger.record("train/n_episodes", len(batch.returns))
        self.logger.record("train/mean_return", float(batch.returns.mean()))
        if len(winners) == 0:
            # All returns equal: no preference, no update
            return

        # Episode log-likelihoods under the reference policy (M,): no gradient
        ref_scores = self._episode_scores(self.ref_policy, batch, self.trajectory_score)
        # dL_k / dlog pi(a_t|s_t), (N,)
        step_scale = score_step_scale(batch.episode_index, batch.lengths, self.trajectory_score)

        logs: dict[str, list[float]] = {}
        for _ in range(self.n_epochs):
            # Pass 1: scores L_k (M,) without a graph
            with th.no_grad():
                log_probs, entropy = self._step_log_probs(self.policy, batch, self.batch_size)
            scores = trajectory_scores(log_probs, batch.episode_index, batch.lengths, self.trajectory_score)
            scores.requires_grad_(True)
            # DPO loss -log sigmoid(beta * margin) (DPO paper eq. 7), and c_k = dJ/dL_k (M,)
            terms = dpo_loss(scores, ref_scores, winners, losers, self.beta)
            (score_grad,) = th.autograd.grad(terms.loss, scores)
            step_coef = score_grad[batch.episode_index] * step_scale

            # Pass 2: gradient of the surrogate sum_t step_coef_t * log pi(a_t|s_t) == grad J, and the step
            grad_norm = self._score_gradient_step(batch, step_coef)

            epoch_logs = {
                "loss": float(terms.loss.detach()),
                "preference_accuracy": float(terms.accuracy),
                "reward_margin": float(terms.logits.detach().mean()) / self.beta,
                "grad_norm": grad_norm,
                "policy_entropy": float(entropy.mean()),
            }
            for key, value in epoch_logs.items():
                logs.setdefault(key, []).append(value)
            self._n_updates += 1

        self._record_train_logs(logs, batch)
