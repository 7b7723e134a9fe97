from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_haepo.common.buffers import select_steps
from sb3_haepo.common.checks import check_optional_real, check_real
from sb3_haepo.common.episodic import EpisodicOnPolicyAlgorithm
from sb3_haepo.common.utils import grpo_loss, grpo_step_advantages
from sb3_haepo.grpo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy


class GRPO(EpisodicOnPolicyAlgorithm):
    """
    Group Relative Policy Optimization (GRPO), for control, as the baseline of the HAEPO paper.

    Paper: https://arxiv.org/abs/2402.03300 (DeepSeekMath, section 4)
    Code: written for this package on the episodic base class shared with HAEPO (same rollouts, same episode buffer)

    GRPO is PPO without a critic: each update takes a group of complete episodes, gives every step of episode ``k``
    the advantage ``A_k = (R_k - mean(R)) / std(R)`` (the z-scored episode return, "outcome supervision") and
    minimises the clipped surrogate on the per-step ratio against the behaviour policy, plus ``kl_coef`` times the
    k3 estimate of ``KL(pi || pi_ref)`` to a frozen reference policy (see :func:`~sb3_haepo.common.utils.grpo_loss`).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param n_episodes: Number of complete episodes per update, the group size G (>= 2); see
        :class:`~sb3_haepo.common.episodic.EpisodicOnPolicyAlgorithm`
    :param n_epochs: Number of epochs when optimizing the surrogate loss
    :param batch_size: Minibatch size, in steps (the steps of the group are shuffled every epoch)
    :param gamma: Discount factor of the episode return ``R_k = sum_t gamma^t r_t``, counted from the episode's
        first step (1.0: undiscounted; not SB3's per-step discount, see HAEPO)
    :param min_return_std: Floor of the z-score's divisor, in the units of the returns (>= 0): the advantages are
        ``(R_k - mean(R)) / max(std(R), min_return_std)``, so that a group whose returns differ by less than this
        scale (a small move cost, no success yet) gives a proportionally small signal instead of a unit one
        (docs/METHOD.md section 13, as HAEPO's option of the same name). 0 (default): GRPO's plain z-score.
    :param clip_range: Clipping parameter epsilon of the probability ratio
    :param kl_coef: ``beta``, coefficient of the KL divergence to the reference policy (0 disables it)
    :param ref_update_interval: The reference policy is replaced by a copy of the current policy at the start of
        every ``ref_update_interval``-th update (1: every update, so the KL term acts from the second minibatch on).
        None: the reference is the policy at the first update and is never refreshed (a frozen initial policy, as
        in RLHF), so the KL term bounds the drift from the start of training
    :param max_grad_norm: The maximum value for the gradient clipping
    :param target_kl: Limit the KL divergence between updates (estimated against the behaviour policy as in PPO):
        the epochs stop early once it exceeds ``1.5 * target_kl``. None (default) disables it.
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
        learning_rate: float | Schedule = 3e-4,
        n_episodes: int = 16,
        n_epochs: int = 10,
        batch_size: int = 256,
        gamma: float = 1.0,
        min_return_std: float = 0.0,
        clip_range: float = 0.2,
        kl_coef: float = 0.04,
        ref_update_interval: int | None = 1,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
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
        check_real("min_return_std", min_return_std, 0.0)
        check_real("clip_range", clip_range, 0.0, low_open=True, finite=False, why="inf: no clipping")
        check_real("kl_coef", kl_coef, 0.0)
        check_optional_real("target_kl", target_kl, 0.0, low_open=True, why_none="no early stop")

        self.min_return_std = float(min_return_std)
        self.clip_range = float(clip_range)
        self.kl_coef = float(kl_coef)
        self.target_kl = target_kl

        if _init_setup_model:
            self._setup_model()

    def train(self) -> None:
        """
        Update the policy on the group of episodes in the buffer: ``n_epochs`` passes over shuffled minibatches of
        ``batch_size`` steps, as in PPO, with the critic's advantages replaced by the z-scored episode returns.
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        # Update optimizer learning rate
        self._update_learning_rate(self.policy.optimizer)

        # The reference is a frozen copy of the policy, refreshed every `ref_update_interval` updates
        self._refresh_reference()

        # The group refers to the buffer's observations: no copy of them (docs/METHOD.md section 2.2)
        batch = self.rollout_buffer.get(copy_observations=False)
        n_steps = len(batch.episode_index)
        # Outcome supervision: A_t = z-scored return of the step's episode (N,)
        advantages = grpo_step_advantages(batch.returns, batch.episode_index, min_std=self.min_return_std)
        # Log-probabilities under the reference policy (N,): no gradient
        with th.no_grad():
            ref_log_probs, _ = self._step_log_probs(self.ref_policy, batch, self.batch_size)

        logs: dict[str, list[float]] = {}
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for indices in th.randperm(n_steps, device=self.device).split(self.batch_size):
                minibatch = select_steps(batch, indices)
                log_probs, entropy = self._step_log_probs(self.policy, minibatch, len(indices))
                # Clipped surrogate on the per-step ratio + beta * KL(pi || pi_ref) (DeepSeekMath eq. 3)
                terms = grpo_loss(
                    log_probs,
                    minibatch.behaviour_log_probs,
                    ref_log_probs[indices],
                    advantages[indices],
                    self.clip_range,
                    self.kl_coef,
                )
                # KL between the behaviour policy and the current one, as in PPO
                with th.no_grad():
                    log_ratio = log_probs - minibatch.behaviour_log_probs
                    approx_kl_divs.append(float(th.mean((th.exp(log_ratio) - 1) - log_ratio)))
                if self.target_kl is not None and approx_kl_divs[-1] > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_divs[-1]:.2f}")
                    break

                self.policy.optimizer.zero_grad()
                terms.loss.backward()
                grad_norm = self._clip_and_step()

                minibatch_logs = {
                    "loss": float(terms.loss.detach()),
                    "policy_gradient_loss": float(terms.policy_loss.detach()),
                    "ref_kl_loss": float(terms.kl_loss.detach()),
                    "ref_kl": float(terms.kl),
                    "clip_fraction": float(terms.clip_fraction),
                    "grad_norm": float(grad_norm),
                    "policy_entropy": float(entropy.detach().mean()),
                }
                for key, value in minibatch_logs.items():
                    logs.setdefault(key, []).append(value)
            logs.setdefault("approx_kl", []).extend(approx_kl_divs)
            self._n_updates += 1
            if not continue_training:
                break

        self._record_train_logs(logs, batch)
        self.logger.record("train/clip_range", self.clip_range)
        self.logger.record("train/continue_training", continue_training)
