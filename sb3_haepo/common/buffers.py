"""Trajectory buffer of complete, variable-length episodes."""

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape
from stable_baselines3.common.utils import get_device

from sb3_haepo.common.type_aliases import EpisodeBatch


class EpisodeBuffer:
    """
    Buffer of complete episodes collected from a VecEnv, for algorithms that update on whole trajectories.

    Unlike SB3's ``RolloutBuffer`` (a fixed ``(n_steps, n_envs)`` array), steps are appended as they arrive into
    flat, growable numpy arrays (amortised doubling, so there is no per-step Python object and memory is
    proportional to the steps held). Each step carries the id of its episode. An episode is *completed* when
    :meth:`end_episodes` closes it; episodes still running stay in the buffer and are carried over to the next group
    when :meth:`pop_completed` removes the completed ones, so every step ends up in exactly one group.

    An env whose episode was already running when the buffer first saw it (a model loaded onto, or given with
    ``set_env(..., force_reset=False)``, envs with episodes in progress) is marked with :meth:`mark_fragments`: the
    beginning of that episode was never stored, so its remaining steps are a *fragment*. They are stored like any
    other, but when the episode ends they are dropped (and counted by the caller) instead of closing a fake episode.

    :param observation_space: Observation space
    :param action_space: Action space
    :param n_envs: Number of parallel environments
    :param gamma: Discount factor of the episode return ``sum_t gamma^t r_t``
    :param device: PyTorch device of the tensors returned by :meth:`get`
    :param initial_capacity: Number of steps allocated at first (the arrays grow as needed)
    """

    observations: np.ndarray | dict[str, np.ndarray]

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        n_envs: int = 1,
        gamma: float = 1.0,
        device: th.device | str = "auto",
        initial_capacity: int = 1024,
    ):
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_shape = get_obs_shape(observation_space)
        self.action_dim = get_action_dim(action_space)
        self.n_envs = n_envs
        self.gamma = gamma
        self.device = get_device(device)
        self.initial_capacity = max(initial_capacity, n_envs)
        self.reset()

    def reset(self) -> None:
        """Remove every step, completed and in progress."""
        self.capacity = self.initial_capacity
        if isinstance(self.obs_shape, dict):
            assert isinstance(self.observation_space, spaces.Dict)
            self.observations = {
                key: np.zeros((self.capacity, *shape), dtype=self.observation_space[key].dtype)
                for key, shape in self.obs_shape.items()
            }
        else:
            self.observations = np.zeros((self.capacity, *self.obs_shape), dtype=self.observation_space.dtype)
        self.actions = np.zeros((self.capacity, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros((self.capacity,), dtype=np.float32)
        self.log_probs = np.zeros((self.capacity,), dtype=np.float32)
        self.episode_ids = np.zeros((self.capacity,), dtype=np.int64)
        self.size = 0
        # Episodes in progress, one per env
        self._next_id = self.n_envs
        self.current_ids = np.arange(self.n_envs, dtype=np.int64)
        self.current_lengths = np.zeros(self.n_envs, dtype=np.int64)
        self.current_returns = np.zeros(self.n_envs, dtype=np.float64)
        self._current_discounts = np.ones(self.n_envs, dtype=np.float64)
        # Envs whose episode in progress began before the buffer saw it (see mark_fragments)
        self.fragments = np.zeros(self.n_envs, dtype=bool)
        # Completed episodes, in completion order
        self._completed_ids: list[int] = []
        self._completed_returns: list[float] = []
        self._completed_lengths: list[int] = []
        self._completed_truncated: list[bool] = []
        self._completed_envs: list[int] = []

    @property
    def n_completed(self) -> int:
        """Number of completed episodes held."""
        return len(self._completed_ids)

    @property
    def n_in_progress_steps(self) -> int:
        """Number of steps held that belong to episodes still running."""
        return int(self.current_lengths.sum())

    @property
    def bytes_per_step(self) -> int:
        """
        Bytes of one stored step: the row of each per-step array (the observation in its own dtype, the action as
        float32, reward, log-probability, episode id). Nothing else is kept per step.
        """
        return sum(array.nbytes // len(array) for array in self._step_arrays())

    @property
    def nbytes(self) -> int:
        """Bytes of the per-step arrays as allocated (their capacity grows by doubling, so up to twice the steps held)."""
        return sum(array.nbytes for array in self._step_arrays())

    def _step_arrays(self) -> list[np.ndarray]:
        observations = list(self.observations.values()) if isinstance(self.observations, dict) else [self.observations]
        return [*observations, self.actions, self.rewards, self.log_probs, self.episode_ids]

    @property
    def n_completed_steps(self) -> int:
        """Number of steps held that belong to completed episodes."""
        return int(sum(self._completed_lengths))

    def mark_fragments(self, env_mask: np.ndarray) -> None:
        """
        Mark the episodes in progress of some envs as fragments: their first steps were never stored (the env was
        already running when this buffer was created), so they must never form an episode of a group. Their steps
        are dropped when the episode ends (:meth:`end_episodes` returns how many).

        :param env_mask: Boolean mask of the envs, shape (n_envs,). Only envs with no stored step in their current
            episode can be marked (for the others, the buffer holds the episode from its start).
        """
        env_mask = np.asarray(env_mask, dtype=bool)
        if np.any(env_mask & (self.current_lengths > 0)):
            bad = np.flatnonzero(env_mask & (self.current_lengths > 0)).tolist()
            raise ValueError(f"Envs {bad} have stored steps in their current episode: it is not a fragment")
        self.fragments |= env_mask

    def _grow(self, min_capacity: int) -> None:
        new_capacity = max(min_capacity, 2 * self.capacity)

        def grow(array: np.ndarray) -> np.ndarray:
            new_array = np.zeros((new_capacity, *array.shape[1:]), dtype=array.dtype)
            new_array[: self.size] = array[: self.size]
            return new_array

        if isinstance(self.observations, dict):
            self.observations = {key: grow(obs) for key, obs in self.observations.items()}
        else:
            self.observations = grow(self.observations)
        self.actions = grow(self.actions)
        self.rewards = grow(self.rewards)
        self.log_probs = grow(self.log_probs)
        self.episode_ids = grow(self.episode_ids)
        self.capacity = new_capacity

    def add(
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        actions: np.ndarray,
        rewards: np.ndarray,
        log_probs: th.Tensor | np.ndarray,
    ) -> None:
        """
        Append one vectorised step (one transition per env) to the episodes in progress.

        :param obs: Observations the actions were taken in, shape (n_envs, *obs_shape)
        :param actions: Actions as sampled by the policy (before clipping), shape (n_envs, action_dim) or (n_envs,)
        :param rewards: Rewards, shape (n_envs,)
        :param log_probs: Log-probabilities of the actions under the collecting policy, shape (n_envs,)
        """
        if self.size + self.n_envs > self.capacity:
            self._grow(self.size + self.n_envs)
        rows = slice(self.size, self.size + self.n_envs)
        if isinstance(self.observations, dict):
            assert isinstance(obs, dict) and isinstance(self.obs_shape, dict)
            for key, obs_array in self.observations.items():
                obs_array[rows] = np.asarray(obs[key]).reshape((self.n_envs, *self.obs_shape[key]))
        else:
            assert isinstance(self.obs_shape, tuple)
            self.observations[rows] = np.asarray(obs).reshape((self.n_envs, *self.obs_shape))
        self.actions[rows] = np.asarray(actions).reshape((self.n_envs, self.action_dim))
        self.rewards[rows] = rewards
        if isinstance(log_probs, th.Tensor):
            log_probs = log_probs.cpu().numpy()
        self.log_probs[rows] = log_probs
        self.episode_ids[rows] = self.current_ids
        self.size += self.n_envs
        # Running discounted return of each episode: R = sum_t gamma^t r_t
        self.current_returns += self._current_discounts * rewards
        self._current_discounts *= self.gamma
        self.current_lengths += 1

    def _start_new_episodes(self, env_indices: np.ndarray) -> None:
        n_new = len(env_indices)
        self.current_ids[env_indices] = np.arange(self._next_id, self._next_id + n_new)
        self._next_id += n_new
        self.current_lengths[env_indices] = 0
        self.current_returns[env_indices] = 0.0
        self._current_discounts[env_indices] = 1.0

    def end_episodes(self, env_mask: np.ndarray, truncated: np.ndarray | None = None) -> int:
        """
        Close the episodes in progress of the envs in ``env_mask``; their next steps start new episodes.

        A fragment (see :meth:`mark_fragments`) is not closed as an episode: its steps are dropped.

        :param env_mask: Boolean mask of the envs whose episode ended, shape (n_envs,)
        :param truncated: Boolean mask of those that ended by truncation rather than termination, shape (n_envs,)
        :return: Number of steps dropped because they were fragments (for the caller to count and log)
        """
        env_mask = np.asarray(env_mask, dtype=bool)
        env_indices = np.flatnonzero(env_mask & ~self.fragments)
        # Fragments that ended are dropped: their envs start a new (complete) episode
        n_dropped = self.discard_in_progress(env_mask & self.fragments)
        for env_idx in env_indices:
            if self.current_lengths[env_idx] == 0:
                raise ValueError(f"Env {env_idx} has no step in its current episode: nothing to end")
            self._completed_ids.append(int(self.current_ids[env_idx]))
            self._completed_returns.append(float(self.current_returns[env_idx]))
            self._completed_lengths.append(int(self.current_lengths[env_idx]))
            self._completed_truncated.append(bool(truncated[env_idx]) if truncated is not None else False)
            self._completed_envs.append(int(env_idx))
        self._start_new_episodes(env_indices)
        return n_dropped

    def discard_in_progress(self, env_mask: np.ndarray) -> int:
        """
        Drop the episodes in progress of some envs, e.g. when the env was reset from outside the rollout loop
        (``learn(reset_num_timesteps=True)``, ``set_env``) and they can never be completed.

        :param env_mask: Boolean mask of the envs, shape (n_envs,)
        :return: Number of steps dropped (for the caller to count and log)
        """
        env_mask = np.asarray(env_mask, dtype=bool)
        self.fragments &= ~env_mask
        env_indices = np.flatnonzero(env_mask & (self.current_lengths > 0))
        if len(env_indices) == 0:
            return 0
        n_dropped = int(self.current_lengths[env_indices].sum())
        keep = ~np.isin(self.episode_ids[: self.size], self.current_ids[env_indices])
        self._compact(np.flatnonzero(keep))
        self._start_new_episodes(env_indices)
        return n_dropped

    def _compact(self, keep: np.ndarray) -> None:
        """Keep only the steps at positions ``keep`` (sorted), moved to the front."""
        n_keep = len(keep)
        if isinstance(self.observations, dict):
            for obs in self.observations.values():
                obs[:n_keep] = obs[keep]
        else:
            self.observations[:n_keep] = self.observations[keep]
        self.actions[:n_keep] = self.actions[keep]
        self.rewards[:n_keep] = self.rewards[keep]
        self.log_probs[:n_keep] = self.log_probs[keep]
        self.episode_ids[:n_keep] = self.episode_ids[keep]
        self.size = n_keep

    def _completed_step_order(self) -> tuple[np.ndarray, np.ndarray]:
        """
        :return: positions of the steps of completed episodes, ordered by episode (completion order) then time,
            and the episode index in ``[0, M)`` of each of them
        """
        ids = self.episode_ids[: self.size]
        # Episode ids are increasing integers: map id -> group index with a small lookup table
        base = int(ids.min()) if self.size > 0 else 0
        lookup = np.full(self._next_id - base, -1, dtype=np.int64)
        lookup[np.asarray(self._completed_ids, dtype=np.int64) - base] = np.arange(self.n_completed)
        step_episode = lookup[ids - base]
        positions = np.flatnonzero(step_episode >= 0)
        step_episode = step_episode[positions]
        # Stable sort: steps of one episode keep their time order. The positions are replaced as soon as their sorted
        # copy exists, and the episode indices are sorted in place (the same values as step_episode[order]), so that
        # at most four arrays of N integers are held at once
        order = np.argsort(step_episode, kind="stable")
        positions = positions[order]
        del order
        step_episode.sort()
        return positions, step_episode

    def get(self, copy_observations: bool = True) -> EpisodeBatch:
        """
        :param copy_observations: True: the batch holds a copy of the group's observations, in step order.
            False: the batch refers to the buffer's own observation arrays, with the row of each step in
            ``observation_positions`` (read them with :func:`step_observations`). Nothing the size of the group's
            observations is copied, so the update's memory does not grow with them; the batch is valid until the
            buffer changes (the next ``add``, ``end_episodes``, ``pop_completed``, ...).
        :return: The completed episodes, flattened (see :class:`EpisodeBatch`).
        """
        if self.n_completed == 0:
            raise ValueError("The buffer holds no completed episode")
        positions, step_episode = self._completed_step_order()
        observations: np.ndarray | dict[str, np.ndarray]
        observation_positions = None
        if not copy_observations:
            if isinstance(self.observations, dict):
                observations = {key: obs[: self.size] for key, obs in self.observations.items()}
            else:
                observations = self.observations[: self.size]
            observation_positions = positions
        elif isinstance(self.observations, dict):
            observations = {key: obs[positions] for key, obs in self.observations.items()}
        else:
            observations = self.observations[positions]
        return EpisodeBatch(
            observations=observations,
            actions=th.as_tensor(self.actions[positions], device=self.device),
            behaviour_log_probs=th.as_tensor(self.log_probs[positions], device=self.device),
            rewards=th.as_tensor(self.rewards[positions], device=self.device),
            episode_index=th.as_tensor(step_episode, device=self.device),
            returns=th.as_tensor(np.asarray(self._completed_returns, dtype=np.float32), device=self.device),
            lengths=th.as_tensor(np.asarray(self._completed_lengths, dtype=np.int64), device=self.device),
            truncated=np.asarray(self._completed_truncated, dtype=bool),
            env_indices=np.asarray(self._completed_envs, dtype=np.int64),
            observation_positions=observation_positions,
        )

    def pop_completed(self) -> int:
        """
        Remove the completed episodes, keeping (carrying over) the steps of the episodes in progress.

        :return: Number of steps removed
        """
        n_before = self.size
        keep = np.flatnonzero(np.isin(self.episode_ids[: self.size], self.current_ids[self.current_lengths > 0]))
        self._compact(keep)
        self._completed_ids.clear()
        self._completed_returns.clear()
        self._completed_lengths.clear()
        self._completed_truncated.clear()
        self._completed_envs.clear()
        return n_before - self.size


def step_observations(batch: EpisodeBatch, index: slice | np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
    """
    :param batch: a group (or a part of one)
    :param index: which of its steps: a slice or an array of step numbers
    :return: the observations of those steps, in the observation space's dtype: a view of ``batch.observations`` for
        a slice of a batch that holds its own observations, a copy of just those rows otherwise
    """
    rows = index if batch.observation_positions is None else batch.observation_positions[index]
    if isinstance(batch.observations, dict):
        return {key: obs[rows] for key, obs in batch.observations.items()}
    return batch.observations[rows]


def select_steps(batch: EpisodeBatch, indices: th.Tensor) -> EpisodeBatch:
    """
    :return: ``batch`` restricted to the steps at ``indices`` (per-step fields only; per-episode fields unchanged).
        When ``batch`` refers to the buffer's storage (``observation_positions``), so does the result: no observation
        is copied until :func:`step_observations` reads them.
    """
    numpy_indices = indices.cpu().numpy()
    if batch.observation_positions is not None:
        selected = batch._replace(observation_positions=batch.observation_positions[numpy_indices])
    else:
        selected = batch._replace(observations=step_observations(batch, numpy_indices))
    return selected._replace(
        actions=batch.actions[indices],
        behaviour_log_probs=batch.behaviour_log_probs[indices],
        rewards=batch.rewards[indices],
        episode_index=batch.episode_index[indices],
    )
