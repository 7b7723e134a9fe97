"""Base class of the critic-free algorithms that update on groups of complete episodes."""

import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sb3_haepo.common.buffers import EpisodeBuffer, GroupView, final_observations, step_observations
from sb3_haepo.common.checks import check_int, check_optional_int, check_real
from sb3_haepo.common.exploration import (
    check_logit_noise_std,
    logit_noise_distribution,
    logit_noise_shape,
    sample_logit_noise,
)
from sb3_haepo.common.type_aliases import EpisodeBatch
from sb3_haepo.common.utils import (
    TrajectoryScore,
    policy_entropy_loss,
    score_step_scale,
    scores_from_log_prob_sums,
    trajectory_scores,
)

SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
SUPPORTED_OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


class GroupPass(NamedTuple):
    """What one pass over a group's steps without a graph gives (:meth:`EpisodicOnPolicyAlgorithm._group_pass`)."""

    scores: th.Tensor  # (M,) the trajectory scores L_k
    policy_entropy: float  # the mean policy entropy per step
    approx_kl: float  # the mean over the steps of PPO's KL estimate to the log-probabilities at the update's start
    credit_sums: th.Tensor | None  # (M,) sum_t dL_k/dlog pi_t A_{k,t} log pi(a_t|s_t), when asked for


SelfEpisodic = TypeVar("SelfEpisodic", bound="EpisodicOnPolicyAlgorithm")

# Arguments of SB3's PPO/A2C that the episodic algorithms do not take: why, and the nearest counterpart with what it
# does (named only to an algorithm that has it). A user porting PPO code gets a TypeError that says this instead of a
# bare "unexpected keyword argument".
NO_CRITIC = "there is no critic (value function)"
PPO_ARGUMENT_COUNTERPARTS: dict[str, tuple[str, str | None, str | None]] = {
    "n_steps": (
        "a rollout is a group of complete episodes, not a fixed number of steps per env",
        "n_episodes",
        "the number of complete episodes per rollout",
    ),
    "ent_coef": ("it has no policy-entropy bonus (HAEPO has one, under this name)", None, None),
    "clip_range": ("the update has no probability ratio to clip", "target_kl", "it stops the epochs early"),
    "normalize_advantage": (
        "there are no advantages",
        "normalize_returns",
        "how the episode returns are normalised within each group",
    ),
    "gae_lambda": (
        NO_CRITIC + ": returns are Monte Carlo episode returns (see gamma; HAEPO takes it with baseline='value')",
        None,
        None,
    ),
    "vf_coef": (NO_CRITIC + " (HAEPO takes it with baseline='value')", None, None),
    "clip_range_vf": (NO_CRITIC, None, None),
    "rollout_buffer_class": ("rollouts are stored in an EpisodeBuffer of complete episodes", None, None),
    "rollout_buffer_kwargs": ("rollouts are stored in an EpisodeBuffer of complete episodes", None, None),
}


def check_ppo_arguments(algorithm: "type[EpisodicOnPolicyAlgorithm]", kwargs: dict[str, Any]) -> None:
    """
    Raise a ``TypeError`` that explains each PPO argument in ``kwargs`` that ``algorithm`` does not take, and names
    the nearest counterpart where ``algorithm`` has one.

    Other unknown arguments are left to Python's own ``TypeError`` (SB3's behaviour).

    :param algorithm: the algorithm class being constructed
    :param kwargs: the keyword arguments of the constructor call
    """
    accepted = inspect.signature(algorithm.__init__).parameters
    for name in kwargs:
        if name in accepted or name not in PPO_ARGUMENT_COUNTERPARTS:
            continue
        why, counterpart, what = PPO_ARGUMENT_COUNTERPARTS[name]
        message = f"{algorithm.__name__} does not take PPO's argument {name!r}: {why}"
        if counterpart in accepted:
            message += f". The nearest counterpart is {counterpart!r} ({what})"
        raise TypeError(message)


class EpisodicOnPolicyAlgorithm(OnPolicyAlgorithm):
    """
    The base for on-policy algorithms that collect complete episodes into an :class:`EpisodeBuffer` and use no critic.

    A rollout ends as soon as ``n_episodes`` episodes have completed across all envs of the VecEnv. Every episode that
    completed on that last vector step joins the group, so a group holds between ``n_episodes`` and
    ``n_episodes + n_envs - 1`` episodes. Episodes still running are carried over to the next rollout.

    The policy is SB3's actor-critic policy, but only its actor is ever evaluated: rollouts and updates call
    ``policy.get_distribution`` (features extractor + actor MLP + action head; with held logit noise, its
    counterpart :func:`~sb3_haepo.common.exploration.logit_noise_distribution`), never ``policy.forward`` or
    ``predict_values``, so the value head costs no compute and receives no gradient (Adam skips parameters without a
    gradient). Unless ``policy_kwargs`` gives a ``net_arch``, the value MLP is empty (``vf=[]``), so it costs almost
    no memory either. (HAEPO's ``baseline="value"`` is the one exception: it evaluates and trains the value head.)

    A frozen reference policy ``ref_policy`` (same architecture, no gradient, not in the optimizer) is built in
    ``_setup_model`` and saved with the model.

    :param n_episodes: Number of complete episodes per update (the group size M)
    :param n_epochs: Number of passes over each group
    :param batch_size: Number of steps evaluated at once (a chunk or a minibatch, as the algorithm uses it)
    :param ref_update_interval: The reference policy becomes a copy of the policy at the start of every
        ``ref_update_interval``-th update (the first update included). None: a frozen initial policy, as in RLHF: the
        reference is the policy as it was at the start of the first update and is never refreshed
    :param max_episode_steps: Guard for envs that never end: an episode that reaches this many steps without
        ``done`` is cut there and closed as truncated (the env itself keeps running, and its next steps start a new
        episode). Cuts are counted in ``rollout/n_cut_episodes``.
    :param logit_noise_std: Held logit noise (:mod:`sb3_haepo.common.exploration`): the scale of a state-dependent
        perturbation of the logits drawn at the start of each episode and held for all of it, for ``Discrete``,
        ``MultiDiscrete`` and ``MultiBinary`` actions; the update conditions on each episode's drawn noise. 0 disables it.
    """

    rollout_buffer: EpisodeBuffer  # type: ignore[assignment]
    policy: ActorCriticPolicy
    ref_policy: ActorCriticPolicy

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }

    def __new__(cls, *args: Any, **kwargs: Any) -> "EpisodicOnPolicyAlgorithm":
        # Runs before __init__ binds the arguments, so a PPO argument gets a helpful error instead of a bare one
        check_ppo_arguments(cls, kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule,
        n_episodes: int,
        n_epochs: int,
        batch_size: int,
        gamma: float,
        ref_update_interval: int | None,
        max_grad_norm: float,
        max_episode_steps: int,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        logit_noise_std: float = 0.0,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
    ):
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=1,  # unused: rollouts end on a number of complete episodes (n_episodes), not of steps
            gamma=gamma,
            gae_lambda=1.0,  # unused: no critic, returns are Monte Carlo (HAEPO sets its own for baseline="value")
            ent_coef=0.0,  # unused: the episodic algorithms define their own regularisers
            vf_coef=0.0,  # unused: no critic
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            supported_action_spaces=SUPPORTED_ACTION_SPACES,
        )
        check_int("n_episodes", n_episodes, 2, why="a group needs episodes to compare")
        for name, value in (
            ("n_epochs", n_epochs),
            ("batch_size", batch_size),
            ("max_episode_steps", max_episode_steps),
        ):
            check_int(name, value, 1)
        check_optional_int(
            "ref_update_interval",
            ref_update_interval,
            1,
            why="refresh the reference every this many updates",
            why_none="a frozen reference: the policy at the first update, never refreshed",
        )
        check_real("gamma", gamma, 0.0, 1.0, low_open=True)
        check_real("max_grad_norm", max_grad_norm, 0.0, low_open=True, finite=False, why="inf: no clipping")
        # Without an env (a model being loaded) the action space is checked in _setup_model
        check_logit_noise_std(logit_noise_std, getattr(self, "action_space", None), use_sde)
        self.logit_noise_std = float(logit_noise_std)
        self.n_episodes = int(n_episodes)
        self.n_epochs = int(n_epochs)
        self.batch_size = int(batch_size)
        self.ref_update_interval = None if ref_update_interval is None else int(ref_update_interval)
        self.max_episode_steps = int(max_episode_steps)
        self._n_train_calls = 0
        self._n_cut_episodes = 0
        self._n_discarded_steps = 0
        self._group_ready = False
        self._budget_reached = False

    def _check_observation_space(self) -> None:
        obs_space = self.observation_space
        subspaces = list(obs_space.spaces.values()) if isinstance(obs_space, spaces.Dict) else [obs_space]
        for subspace in subspaces:
            if not isinstance(subspace, SUPPORTED_OBSERVATION_SPACES):
                raise ValueError(
                    f"Unsupported observation space {obs_space} for {self.__class__.__name__}: allowed are "
                    "Box, Discrete, MultiDiscrete, MultiBinary, and a Dict of these"
                )

    def _make_policy(self) -> ActorCriticPolicy:
        policy = self.policy_class(
            self.observation_space, self.action_space, self.lr_schedule, use_sde=self.use_sde, **self.policy_kwargs
        )
        assert isinstance(policy, ActorCriticPolicy), f"{self.__class__.__name__} needs an ActorCriticPolicy, got {policy}"
        return policy.to(self.device)

    def _setup_model(self) -> None:
        # Not calling OnPolicyAlgorithm._setup_model, which allocates a fixed (n_steps, n_envs) RolloutBuffer
        self._check_observation_space()
        check_logit_noise_std(self.logit_noise_std, self.action_space, self.use_sde)
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        if "net_arch" not in self.policy_kwargs and not issubclass(self.policy_class, ActorCriticCnnPolicy):
            self.policy_kwargs = {**self.policy_kwargs, "net_arch": self._default_net_arch()}
        self.policy = self._make_policy()
        self.ref_policy = self._make_policy()
        self.ref_policy.load_state_dict(self.policy.state_dict())
        self.ref_policy.set_training_mode(False)
        self.ref_policy.requires_grad_(False)
        self.rollout_buffer = EpisodeBuffer(
            self.observation_space,
            self.action_space,
            n_envs=self.n_envs,
            gamma=self.gamma,
            device=self.device,
            episode_noise_shape=logit_noise_shape(self.policy) if self.logit_noise_std > 0 else None,
        )

    def _default_net_arch(self) -> dict[str, list[int]]:
        """:return: the MLP ``net_arch`` used when ``policy_kwargs`` gives none: SB3's default 64x64 actor, and no
        critic MLP (the value head is never evaluated)"""
        return dict(pi=[64, 64], vf=[])

    def _refresh_reference(self) -> None:
        """
        Call at the start of each update: every ``ref_update_interval``-th update (updates 1, 1 + interval,
        1 + 2 * interval, ...), the frozen reference policy becomes a copy of the current policy. With
        ``ref_update_interval=None`` only the first update copies it, so the reference stays the policy as it was
        when training started (including weights loaded into the policy before the first ``learn()``).
        """
        if self.ref_update_interval is None:
            refresh = self._n_train_calls == 0
        else:
            refresh = self._n_train_calls % self.ref_update_interval == 0
        if refresh:
            self.ref_policy.load_state_dict(self.policy.state_dict())
        self._n_train_calls += 1

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        # The reference policy is saved, so that training continues identically after load
        return ["policy", "policy.optimizer", "ref_policy"], []

    def _reconcile_buffer_with_envs(self) -> None:
        """
        Make the buffer agree with the state of the envs before collecting, from ``_last_episode_starts[i]``
        (``_last_obs[i]`` starts a new episode):

        - the buffer holds steps of a running episode of env ``i`` but ``_last_obs[i]`` starts a new one: the env was
          reset from outside (``learn()`` with ``reset_num_timesteps=True``, ``set_env``). That episode can never
          complete: its steps are dropped and counted in ``rollout/n_discarded_steps``.
        - the buffer holds no step of env ``i``'s episode but ``_last_obs[i]`` is in the middle of one: the model
          was loaded onto (or given with ``force_reset=False``) an env with episodes in progress. The rest of that
          episode is a fragment: it is collected, then dropped and counted when it ends, never trained on as if it
          were an episode.
        """
        assert self._last_episode_starts is not None
        episode_starts = np.asarray(self._last_episode_starts, dtype=bool)
        self._n_discarded_steps += self.rollout_buffer.discard_in_progress(episode_starts)
        self.rollout_buffer.mark_fragments(~episode_starts & (self.rollout_buffer.current_lengths == 0))

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        """
        As SB3's ``set_env``. With ``force_reset=True`` (the default) the envs will be reset, so every step the buffer
        holds (episodes in progress, and completed episodes not trained on yet) is dropped and counted in
        ``rollout/n_discarded_steps``: they came from the previous env. With ``force_reset=False`` the new env is
        taken to continue where the old one was (as SB3 assumes of the last observation), and the buffer is kept.
        """
        super().set_env(env, force_reset=force_reset)
        if force_reset and hasattr(self, "rollout_buffer"):
            if self._group_ready:
                # The group of the last update was trained on: it is used, not discarded
                self.rollout_buffer.pop_completed()
                self._group_ready = False
            self._n_discarded_steps += self.rollout_buffer.size
            self.rollout_buffer.reset()

    def learn(
        self: SelfEpisodic,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfEpisodic:
        """
        As SB3's ``learn``: collection stops as soon as ``total_timesteps`` steps have been collected (at most
        ``n_envs - 1`` more, as a vector step cannot be split). The group in progress is not trained: its completed
        episodes and the episodes still running stay in the buffer, and the next ``learn(...,
        reset_num_timesteps=False)`` goes on with them, so ``learn(a)`` then ``learn(b, reset_num_timesteps=False)``
        trains exactly as ``learn(a + b)`` (with a constant learning rate). A warning says when a call ended without
        any update (no group of ``n_episodes`` episodes completed within the budget, e.g. an env that never ends).

        :param tb_log_name: the name of the run for TensorBoard logging (None: the algorithm's name, e.g. ``HAEPO``)
        Other parameters: as SB3's ``OnPolicyAlgorithm.learn``.
        """
        n_updates_before = self._n_train_calls
        self._budget_reached = False
        super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name or type(self).__name__,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
        if self._budget_reached and self._n_train_calls == n_updates_before:
            buffer = self.rollout_buffer
            warnings.warn(
                f"{self.__class__.__name__}.learn(total_timesteps={total_timesteps}) made no update: only "
                f"{buffer.n_completed} of the n_episodes={self.n_episodes} episodes of a group completed within the "
                f"budget ({buffer.n_in_progress_steps} steps are in episodes still running). Nothing is lost: they "
                "carry over to the next learn(..., reset_num_timesteps=False). Give a larger budget, or, for an env "
                f"that never ends, a smaller max_episode_steps (now {self.max_episode_steps})."
            )
        return self

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect complete episodes with the current policy until ``n_episodes`` of them have completed.

        Largely identical to ``OnPolicyAlgorithm.collect_rollouts``: the same callback protocol (``on_rollout_start``,
        one ``on_step`` per ``env.step`` with the locals ``dones``, ``infos``, ``new_obs``, ``rewards``,
        ``on_rollout_end``), action clipping, ``num_timesteps`` and episode-info bookkeeping. What differs:
        the stop condition (complete episodes instead of ``n_rollout_steps``, which is ignored), the policy call
        (actor only, no value), no timeout bootstrap (no critic: a time limit ends an episode like termination does),
        and the buffer, which keeps the unfinished episodes for the next rollout.

        :param env: The training environment
        :param callback: Callback that will be called at each step (and at the beginning and end of the rollout)
        :param rollout_buffer: Must be ``self.rollout_buffer``
        :param n_rollout_steps: Unused (kept for the parent's signature)
        :return: True if ``n_episodes`` episodes completed, False if the callback stopped training or the budget
            ``total_timesteps`` of ``learn()`` was reached first (the group then stays in the buffer, to be completed
            by the next ``learn()``)
        """
        assert self._last_obs is not None, "No previous observation was provided"
        assert isinstance(rollout_buffer, EpisodeBuffer), f"{self.__class__.__name__} needs an EpisodeBuffer"
        # Switch to eval mode (this affects batch norm / dropout)
        self.policy.set_training_mode(False)
        # new to episodic: remove the group that train() used, keeping the episodes still running. After a rollout
        # stopped by a callback, nothing was trained: its completed episodes stay and count towards this group.
        if self._group_ready:
            rollout_buffer.pop_completed()
            self._group_ready = False
        self._reconcile_buffer_with_envs()
        n_carried_steps = rollout_buffer.n_in_progress_steps

        if self.use_sde:
            self.policy.reset_noise(env.num_envs)

        callback.on_rollout_start()
        n_steps = 0
        dones = np.zeros(env.num_envs, dtype=bool)
        while rollout_buffer.n_completed < self.n_episodes:
            # new to episodic: keep learn()'s budget. The group is not complete: it stays for the next learn()
            if self.num_timesteps >= self._total_timesteps:
                self._budget_reached = True
                callback.on_rollout_end()
                return False
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                # Sample a new noise matrix
                self.policy.reset_noise(env.num_envs)
            with th.no_grad():
                # Convert to pytorch tensor or to TensorDict
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                # new to episodic: actor only, no value
                distribution = self._rollout_distribution(obs_tensor)
                actions_tensor = distribution.get_actions()
                log_probs = distribution.log_prob(actions_tensor)
            actions = actions_tensor.cpu().numpy()

            # Rescale and perform action
            if isinstance(self.action_space, spaces.Box):
                # The distribution's actions are flat: give them the action space's shape (as SB3's policy.forward)
                actions = actions.reshape((-1, *self.action_space.shape))
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if self.policy.squash_output:
                    clipped_actions = self.policy.unscale_action(clipped_actions)
                else:
                    # Clip the actions to avoid out of bound error, as we sample from an unbounded Gaussian
                    clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)

            self.num_timesteps += env.num_envs

            # new to episodic: a NaN/inf reward would poison every return of the group
            if not np.all(np.isfinite(rewards)):
                bad_env = int(np.flatnonzero(~np.isfinite(rewards))[0])
                raise ValueError(
                    f"Env {bad_env} returned the non-finite reward {float(rewards[bad_env])} "
                    f"at timestep {self.num_timesteps}: rewards must be finite numbers"
                )
            # new to episodic: the step is stored (and the env state recorded) *before* the callback can stop
            # training, so a stop mid-rollout loses nothing and a later learn() continues from where the envs are
            rollout_buffer.add(self._last_obs, actions, rewards, log_probs)  # type: ignore[arg-type]
            # Close finished episodes; cut those that reached the max_episode_steps guard
            cut = ~dones & (rollout_buffer.current_lengths >= self.max_episode_steps)
            if dones.any() or cut.any():
                time_limit = np.array([info.get("TimeLimit.truncated", False) for info in infos], dtype=bool)
                truncated = (dones & time_limit) | cut
                # Fragments (episodes whose start this buffer never saw) are dropped, not closed
                self._n_discarded_steps += rollout_buffer.end_episodes(
                    dones | cut, truncated=truncated, final_observations=final_observations(new_obs, infos, truncated, dones)
                )
                self._n_cut_episodes += int(cut.sum())
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
            self._update_info_buffer(infos, dones)
            n_steps += 1

            # Give access to local variables
            callback.update_locals(locals())
            if not callback.on_step():
                return False

        # The group is complete: train() uses it, and the next rollout starts by removing it
        self._group_ready = True
        self.logger.record("rollout/group_size", rollout_buffer.n_completed)
        self.logger.record("rollout/carried_over_steps", n_carried_steps)
        self.logger.record("rollout/n_cut_episodes", self._n_cut_episodes)
        self.logger.record("rollout/n_discarded_steps", self._n_discarded_steps)

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _rollout_distribution(self, obs: PyTorchObs) -> Distribution:
        """
        :return: the distribution the next actions are sampled from: the policy's, or, with held logit noise, the
            policy's perturbed by each env's episode noise (drawn here for the envs whose episode starts)
        """
        if self.logit_noise_std == 0:
            return self.policy.get_distribution(obs)
        buffer = self.rollout_buffer
        if buffer.current_noise is None:
            raise ValueError(
                f"logit_noise_std={self.logit_noise_std!r} was set after the model was built, so its buffer holds no "
                "noise: pass logit_noise_std to the constructor"
            )
        starting = np.flatnonzero(buffer.current_lengths == 0)
        if len(starting) > 0:
            buffer.set_current_noise(starting, sample_logit_noise(len(starting), logit_noise_shape(self.policy), self.device))
        noise = th.as_tensor(buffer.current_noise, device=self.device)
        envs = th.arange(len(noise), device=self.device)
        return logit_noise_distribution(self.policy, obs, noise, envs, self.logit_noise_std)

    def _prepare_actions(self, actions: th.Tensor) -> th.Tensor:
        if isinstance(self.action_space, spaces.Discrete):
            # Convert discrete action from float to long
            return actions.long().flatten()
        return actions

    def _iter_step_log_probs(
        self, policy: ActorCriticPolicy, batch: "EpisodeBatch | GroupView", batch_size: int
    ) -> Iterator[tuple[Any, th.Tensor, th.Tensor]]:
        """
        Evaluate ``log pi(a_t | s_t)`` and the policy entropy over the steps of ``batch``, ``batch_size`` steps at a time.

        Gradients flow unless the caller disables them.

        :param batch: the group: an :class:`EpisodeBatch`, or a :class:`GroupView` read in place
        :return: for each chunk, the chunk (its slice of steps for a batch, its :class:`GroupChunk` for a view), the
            log-probabilities (chunk,) and the entropies (chunk,)
        """
        if isinstance(batch, GroupView):
            for group_chunk in batch.chunks(batch_size):
                actions = batch.tensor(batch.buffer.actions, group_chunk)
                noise = None if batch.episode_noise is None else (batch.episode_noise, group_chunk.episode_index)
                yield (group_chunk, *self._chunk_log_probs(policy, batch.observations(group_chunk), actions, noise))
            return
        n_steps = len(batch.episode_index)
        for start in range(0, n_steps, batch_size):
            chunk = slice(start, min(start + batch_size, n_steps))
            noise = None if batch.episode_noise is None else (batch.episode_noise, batch.episode_index[chunk])
            # Only this chunk's observations are read (and, from the buffer's storage, gathered)
            yield (chunk, *self._chunk_log_probs(policy, step_observations(batch, chunk), batch.actions[chunk], noise))

    def _chunk_log_probs(
        self,
        policy: ActorCriticPolicy,
        observations: np.ndarray | dict[str, np.ndarray],
        actions: th.Tensor,
        noise: tuple[th.Tensor, th.Tensor] | None = None,
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        :param noise: with held logit noise, the group's episode noise, shape (M, latent_dim, n_logits), and the
            episode of each step, shape (chunk,): the log-probabilities and entropies are those of the perturbed
            distribution the steps were sampled from
        :return: ``log pi(a_t|s_t)`` and the policy entropy of some steps, shape (chunk,) each
        """
        obs = obs_as_tensor(observations, self.device)
        if noise is None:
            distribution = policy.get_distribution(obs)
        else:
            distribution = logit_noise_distribution(policy, obs, *noise, self.logit_noise_std)
        log_probs = distribution.log_prob(self._prepare_actions(actions))
        entropy = distribution.entropy()
        if entropy is None:
            # No closed form (gSDE with a squashed output): PPO's one-sample estimate -log pi(a_t|s_t)
            entropy = -log_probs
        return log_probs, entropy

    def _step_log_probs(self, policy: ActorCriticPolicy, batch: EpisodeBatch, batch_size: int) -> tuple[th.Tensor, th.Tensor]:
        """
        Without a graph (``th.no_grad()``), the chunks' results are written into two tensors of N values allocated
        once, so that nothing is kept per chunk: only the current chunk's activations and observations are held.

        :return: ``log pi(a_t | s_t)`` and entropies of all the steps of ``batch``, shape (N,) each
        """
        n_steps = len(batch.episode_index)
        chunks = self._iter_step_log_probs(policy, batch, batch_size)
        if n_steps <= batch_size:
            # One chunk: its tensors as they are (with their graph, if any)
            _, log_probs, entropies = next(chunks)
            return log_probs, entropies
        if th.is_grad_enabled():
            # A graph through every chunk
            log_probs_list, entropies_list = [], []
            for _, chunk_log_probs, chunk_entropy in chunks:
                log_probs_list.append(chunk_log_probs)
                entropies_list.append(chunk_entropy)
            return th.cat(log_probs_list), th.cat(entropies_list)
        log_probs = entropies = th.empty(0)
        for chunk, chunk_log_probs, chunk_entropy in chunks:
            if chunk.start == 0:
                log_probs = chunk_log_probs.new_empty(n_steps)
                entropies = chunk_entropy.new_empty(n_steps)
            log_probs[chunk] = chunk_log_probs
            entropies[chunk] = chunk_entropy
        return log_probs, entropies

    def _episode_scores(
        self, policy: ActorCriticPolicy, batch: "EpisodeBatch | GroupView", score: TrajectoryScore
    ) -> th.Tensor:
        """
        :return: the trajectory scores ``L_k`` of the episodes of ``batch`` under ``policy``, shape (M,), without a graph
        """
        if isinstance(batch, GroupView):
            return self._group_pass(policy, batch, score).scores
        with th.no_grad():
            log_probs, _ = self._step_log_probs(policy, batch, self.batch_size)
            return trajectory_scores(log_probs, batch.episode_index, batch.lengths, score)

    def _group_pass(
        self,
        policy: ActorCriticPolicy,
        group: GroupView,
        score: TrajectoryScore,
        kl: Literal["record", "measure"] | None = None,
        advantages: bool = False,
    ) -> GroupPass:
        """
        One pass over the steps of ``group`` without a graph, ``batch_size`` steps at a time, keeping only per-episode
        sums: pass 1 of the exact update when the group does not fit in one chunk (docs/METHOD.md section 2.2).

        :param policy: the policy evaluated
        :param group: the group, read in place
        :param score: the trajectory score
        :param kl: ``"record"``: write each step's log-probability to the ``"start_log_probs"`` slot (the first
            epoch); ``"measure"``: the approximate KL to them, each step's term written to the ``"kl_terms"`` slot and
            averaged there; None: neither
        :param advantages: also sum ``dL_k/dlog pi_t * A_{k,t} * log pi(a_t|s_t)`` per episode, from the
            ``"advantages"`` slot
        """
        n_episodes, device = len(group.lengths), self.device
        totals = th.zeros(n_episodes, device=device)
        credit_sums = th.zeros(n_episodes, device=device)
        entropy_sum = th.zeros((), device=device)
        start_log_probs, kl_terms = group.slot("start_log_probs"), group.slot("kl_terms")
        step_advantages = group.slot("advantages")
        with th.no_grad():
            for chunk, log_probs, entropy in self._iter_step_log_probs(policy, group, self.batch_size):
                totals.index_add_(0, chunk.episode_index, log_probs)
                entropy_sum += entropy.sum()
                if kl == "record":
                    start_log_probs[chunk.steps] = log_probs.cpu()
                elif kl == "measure":
                    log_ratio = log_probs.cpu() - start_log_probs[chunk.steps]
                    kl_terms[chunk.steps] = (th.exp(log_ratio) - 1) - log_ratio
                if advantages:
                    scale = score_step_scale(chunk.episode_index, group.lengths, score, log_probs.dtype)
                    chunk_advantages = step_advantages[chunk.steps].to(device)
                    credit_sums.index_add_(0, chunk.episode_index, scale * chunk_advantages * log_probs)
        return GroupPass(
            scores=scores_from_log_prob_sums(totals, group.lengths, score),
            policy_entropy=float(entropy_sum) / group.n_steps,
            # The mean over the steps as one tensor's mean (as over a batch's vector of N steps)
            approx_kl=float(kl_terms.mean()) if kl == "measure" else 0.0,
            credit_sums=credit_sums if advantages else None,
        )

    def _score_gradient_step(
        self,
        batch: "EpisodeBatch | GroupView",
        step_coef: th.Tensor | Callable[[Any], th.Tensor],
        log_probs: th.Tensor | None = None,
        entropies: th.Tensor | None = None,
        ent_coef: float = 0.0,
    ) -> float:
        """
        Pass 2 of the exact two-pass gradient (docs/METHOD.md section 2), then one optimizer step.

        The gradient of the surrogate ``sum_t step_coef_t * log pi(a_t|s_t)`` equals that of any loss ``J(L)`` when
        ``step_coef_t = dJ/dL_k(t) * dL_k/dlog pi_t``. It is accumulated over chunks of ``batch_size`` steps, so memory
        does not grow with episode length.

        :param batch: the group (a :class:`GroupView` is read in place)
        :param step_coef: the per-step coefficients, shape (N,), without a graph; or a function of a chunk (as
            :meth:`_iter_step_log_probs` yields them) that returns its steps' coefficients, so that none is held for
            the whole group
        :param log_probs: ``log pi(a_t|s_t)`` of all the steps *with* their graph, when pass 1 already computed them
            in one chunk (then no second forward pass is made)
        :param entropies: with ``log_probs``, the policy entropies of all the steps with their graph (needed when
            ``ent_coef > 0``)
        :param ent_coef: the policy-entropy bonus's coefficient (:func:`policy_entropy_loss`; 0: none), whose
            gradient is added exactly, chunk by chunk
        :return: the gradient norm before clipping
        """
        n_steps = batch.n_steps if isinstance(batch, GroupView) else len(batch.episode_index)
        self.policy.optimizer.zero_grad()
        if log_probs is not None:
            assert isinstance(step_coef, th.Tensor), "one chunk with its graph takes the coefficients as a tensor"
            surrogate = (step_coef * log_probs).sum()
            if ent_coef > 0:
                assert entropies is not None, "the entropies with their graph are needed when ent_coef > 0"
                surrogate = surrogate + policy_entropy_loss(entropies, ent_coef, n_steps)
            surrogate.backward()
        else:
            for chunk, chunk_log_probs, chunk_entropies in self._iter_step_log_probs(self.policy, batch, self.batch_size):
                chunk_coef = step_coef(chunk) if callable(step_coef) else step_coef[chunk]
                surrogate = (chunk_coef * chunk_log_probs).sum()
                if ent_coef > 0:
                    surrogate = surrogate + policy_entropy_loss(chunk_entropies, ent_coef, n_steps)
                surrogate.backward()
        return self._clip_and_step()

    def _clip_and_step(self, parameters: Iterable[th.nn.Parameter] | None = None) -> float:
        """
        Clip the accumulated gradient to ``max_grad_norm`` and take one optimizer step (the caller zeroes the
        gradients and back-propagates first).

        :param parameters: the parameters whose gradient is clipped together (None: all of the policy's)
        :return: the gradient norm before clipping
        """
        parameters = self.policy.parameters() if parameters is None else parameters
        grad_norm = th.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        self.policy.optimizer.step()
        return float(grad_norm)

    def _record_train_logs(self, logs: dict[str, list[float]], batch: "EpisodeBatch | GroupView") -> None:
        """Log the mean of each per-epoch (or per-minibatch) diagnostic under ``train/``, and the group's statistics."""
        for key, values in logs.items():
            self.logger.record(f"train/{key}", np.mean(values))
        self.logger.record("train/n_episodes", len(batch.returns))
        self.logger.record("train/mean_episode_length", float(batch.lengths.float().mean()))
        self.logger.record("train/mean_return", float(batch.returns.mean()))
        # 0: every episode of the group had the same return. In float64, so that equal float32 returns give exactly 0
        self.logger.record("train/return_std", float(batch.returns.double().std(unbiased=False)))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "ref_policy"]
