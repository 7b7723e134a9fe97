"""
PPO with RLHF's per-token KL penalty to a frozen reference policy (Ziegler et al. 2019, https://arxiv.org/abs/1909.08593;
Stiennon et al. 2020, "Learning to summarize from human feedback", https://arxiv.org/abs/2009.01325).

RLHF's PPO maximises ``R(x, y) - kl_coef * log(pi(y|x) / pi_ref(y|x))``: the KL to the supervised policy enters the
*reward*, one term per generated token, ``r_t <- r_t - kl_coef * (log pi(a_t|s_t) - log pi_ref(a_t|s_t))``, and the
critic and GAE then see the penalised rewards. :class:`KLPPO` is SB3's PPO with exactly that: after each rollout the
stored rewards are penalised with the log-probabilities the rollout sampled with and those of the reference, and the
returns and advantages are recomputed. The reference is the policy as it was at the start of the first rollout (so
weights loaded before the first ``learn()``, a pretrained policy, are the reference) and is never refreshed, as
HAEPO's, GRPO's and DPO's with ``ref_update_interval=None``. With ``kl_coef=0`` it is SB3's PPO.
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sb3_haepo.common.checks import check_real


def kl_penalized_rewards(rewards: np.ndarray, log_probs: np.ndarray, ref_log_probs: np.ndarray, kl_coef: float) -> np.ndarray:
    """
    :return: ``rewards - kl_coef * (log_probs - ref_log_probs)``, RLHF's per-token penalised reward (a new array)
    """
    return rewards - kl_coef * (log_probs - ref_log_probs)


class KLPPO(PPO):
    """
    SB3's PPO with a per-token KL penalty in the reward towards a frozen reference policy (see the module docstring).

    Logged: ``rollout/ref_kl``, the mean over the rollout's steps of ``log pi_old(a_t|s_t) - log pi_ref(a_t|s_t)`` (an
    unbiased estimate of the per-token ``KL(pi_old || pi_ref)`` at the visited states), and ``rollout/kl_penalty``,
    the mean penalty subtracted per step.

    :param kl_coef: the coefficient of the penalty, a finite number ``>= 0`` (InstructGPT's is 0.02)
    Other parameters: as :class:`stable_baselines3.PPO`.
    """

    ref_policy: ActorCriticPolicy

    def __init__(self, *args: Any, kl_coef: float = 0.05, **kwargs: Any):
        self.kl_coef = check_real("kl_coef", kl_coef, 0.0)
        self.reference_frozen = False
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        ref_policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        )
        assert isinstance(ref_policy, ActorCriticPolicy)
        self.ref_policy = ref_policy.to(self.device)
        self.ref_policy.load_state_dict(self.policy.state_dict())
        self.ref_policy.set_training_mode(False)
        self.ref_policy.requires_grad_(False)

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        if not self.reference_frozen:
            # The policy before the first update is the reference, for good
            self.ref_policy.load_state_dict(self.policy.state_dict())
            self.reference_frozen = True
        if not super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps):
            return False
        ref_log_probs = self._reference_log_probs(rollout_buffer)
        log_probs = rollout_buffer.log_probs
        rollout_buffer.rewards = kl_penalized_rewards(rollout_buffer.rewards, log_probs, ref_log_probs, self.kl_coef)
        # As SB3 did at the end of the rollout, now with the penalised rewards
        assert self._last_episode_starts is not None
        with th.no_grad():
            last_values = self.policy.predict_values(obs_as_tensor(self._last_obs, self.device))  # type: ignore[arg-type]
        rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=self._last_episode_starts)
        self.logger.record("rollout/ref_kl", float(np.mean(log_probs - ref_log_probs)))
        self.logger.record("rollout/kl_penalty", float(self.kl_coef * np.mean(log_probs - ref_log_probs)))
        return True

    def _reference_log_probs(self, rollout_buffer: RolloutBuffer, chunk_size: int = 1024) -> np.ndarray:
        """:return: ``log pi_ref(a_t|s_t)`` of the buffer's steps, shape (n_steps, n_envs)"""
        n_steps, n_envs = rollout_buffer.log_probs.shape
        assert isinstance(rollout_buffer.observations, np.ndarray), "KLPPO supports array observations (not Dict)"
        observations = rollout_buffer.observations.reshape((n_steps * n_envs, *rollout_buffer.observations.shape[2:]))
        actions = rollout_buffer.actions.reshape((n_steps * n_envs, -1))
        result = []
        with th.no_grad():
            for start in range(0, n_steps * n_envs, chunk_size):
                obs = obs_as_tensor(observations[start : start + chunk_size], self.device)
                action = th.as_tensor(actions[start : start + chunk_size], device=self.device)
                if isinstance(self.action_space, spaces.Discrete):
                    # As PPO.train: the buffer stores actions as floats of shape (n, 1)
                    action = action.long().flatten()
                distribution = self.ref_policy.get_distribution(obs)  # type: ignore[arg-type]
                result.append(distribution.log_prob(action).cpu().numpy())
        return np.concatenate(result).reshape(n_steps, n_envs)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        # The reference is saved, so that training continues with it after load
        return ["policy", "policy.optimizer", "ref_policy"], []

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "ref_policy"]
