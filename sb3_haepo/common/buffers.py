"""Trajectory buffer of complete, variable-length episodes."""

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape
from stable_baselines3.common.utils import get_device

from sb3_haepo.common.checks import check_int
from sb3_haepo.common.type_aliases import EpisodeBatch
from sb3_haepo.common.utils import reward_to_go_advantages_into

# The buffer's per-step values written by an update (GroupView.slot), each a float32 in the group's step order: the
# per-step advantages (credit="reward_to_go"), the log-probabilities at the update's start, and the terms of the
# approximate KL to them
UPDATE_SLOTS = ("advantages", "start_log_probs", "kl_terms")
# Rows per page of the buffer's storage (EpisodeBuffer)
PAGE_ROWS = 256


class EpisodeBuffer:
    """
    Buffer of complete episodes collected from a VecEnv, for algorithms that update on whole trajectories.

    Unlike SB3's ``RolloutBuffer`` (a fixed ``(n_steps, n_envs)`` array), steps are stored as they arrive in pages of
    ``page_rows`` rows, numpy arrays of shape ``(n_pages, page_rows, ...)`` shared by all envs (the pool of pages grows
    by doubling; there is no per-step Python object). Each env writes its steps, in order, to its own list of pages, so
    every episode is a contiguous run of its env's rows: an episode is described by its env, first row and length,
    and nothing per step says which episode a step belongs to. The memory held is the steps held plus at most about
    one page per env. An episode is *completed* when :meth:`end_episodes` closes it; episodes still running stay in
    the buffer and are carried over to the next group when :meth:`pop_completed` removes the completed ones (and
    frees the pages no episode uses any more), so every step ends up in exactly one group.

    An env whose episode was already running when the buffer first saw it (a model loaded onto, or given with
    ``set_env(..., force_reset=False)``, envs with episodes in progress) is marked with :meth:`mark_fragments`: the
    beginning of that episode was never stored, so its remaining steps are a *fragment*. They are stored like any
    other, but when the episode ends they are dropped (and counted by the caller) instead of closing a fake episode.

    Besides what a rollout stores (observation, action, reward, log-probability), the buffer has three float32 values
    per step that an update writes in place (:data:`UPDATE_SLOTS`, read through :class:`GroupView`), as SB3's
    ``RolloutBuffer`` holds its advantages and returns: an update that uses them allocates nothing per step.

    With ``episode_noise_shape``, the buffer also holds one float32 array of that shape per episode, the noise the
    episode was collected with (held logit noise, :mod:`sb3_haepo.common.exploration`): ``current_noise[i]`` is env
    ``i``'s episode in progress's, set by the caller with :meth:`set_current_noise` when the episode starts, and kept
    with the episode when :meth:`end_episodes` closes it. Nothing is stored per step.

    :param observation_space: Observation space
    :param action_space: Action space
    :param n_envs: Number of parallel environments
    :param gamma: Discount factor of the episode return ``sum_t gamma^t r_t``
    :param device: PyTorch device of the tensors returned by :meth:`get` and read through :class:`GroupView`
    :param initial_capacity: Number of steps allocated at first (at least one page per env; the pool grows as needed)
    :param page_rows: Rows per page (None: :data:`PAGE_ROWS`)
    :param episode_noise_shape: Shape of the noise held per episode (None: no noise is held)
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
        page_rows: int | None = None,
        episode_noise_shape: tuple[int, ...] | None = None,
    ):
        page_rows = check_int("page_rows", PAGE_ROWS if page_rows is None else page_rows, 1)
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_shape = get_obs_shape(observation_space)
        self.action_dim = get_action_dim(action_space)
        self.n_envs = n_envs
        self.gamma = gamma
        self.device = get_device(device)
        self.page_rows = page_rows
        self.episode_noise_shape = episode_noise_shape
        self.initial_pages = max(n_envs, -(-initial_capacity // page_rows))
        self.reset()

    def reset(self) -> None:
        """Remove every step, completed and in progress."""
        self.n_pages = self.initial_pages
        shape = (self.n_pages, self.page_rows)
        if isinstance(self.obs_shape, dict):
            assert isinstance(self.observation_space, spaces.Dict)
            self.observations = {
                key: np.zeros((*shape, *obs_shape), dtype=self.observation_space[key].dtype)
                for key, obs_shape in self.obs_shape.items()
            }
        else:
            self.observations = np.zeros((*shape, *self.obs_shape), dtype=self.observation_space.dtype)
        self.actions = np.zeros((*shape, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.log_probs = np.zeros(shape, dtype=np.float32)
        # Written by an update, in place, in the group's step order (GroupView.slot)
        self.update_slots = {name: np.zeros(shape, dtype=np.float32) for name in UPDATE_SLOTS}
        # The pool: free pages (a stack), and each env's pages in order
        self._free_pages = list(range(self.n_pages - 1, -1, -1))
        self.env_pages: list[list[int]] = [[] for _ in range(self.n_envs)]
        # Each env's rows: the first is row env_offsets[i] of its first page; env_sizes[i] rows are held (its completed
        # episodes, then its episode in progress)
        self.env_offsets = np.zeros(self.n_envs, dtype=np.int64)
        self.env_sizes = np.zeros(self.n_envs, dtype=np.int64)
        # Where each env's next step goes: its last page and the row in it (page_rows: a new page is needed)
        self._tail_pages = np.full(self.n_envs, -1, dtype=np.int64)
        self._tail_rows = np.full(self.n_envs, self.page_rows, dtype=np.int64)
        self._max_tail_row = self.page_rows
        # Episodes in progress, one per env (the last current_lengths[i] rows of env i)
        self.current_lengths = np.zeros(self.n_envs, dtype=np.int64)
        self.current_returns = np.zeros(self.n_envs, dtype=np.float64)
        self._current_discounts = np.ones(self.n_envs, dtype=np.float64)
        # Envs whose episode in progress began before the buffer saw it (see mark_fragments)
        self.fragments = np.zeros(self.n_envs, dtype=bool)
        # Completed episodes, in completion order: env, first row among the env's rows, length, return, truncation
        self._completed_envs: list[int] = []
        self._completed_starts: list[int] = []
        self._completed_lengths: list[int] = []
        self._completed_returns: list[float] = []
        self._completed_truncated: list[bool] = []
        # The observation after the last step of each completed truncated episode (None for a terminated one)
        self._completed_final_observations: list[np.ndarray | dict[str, np.ndarray] | None] = []
        # Held noise (episode_noise_shape): each env's episode in progress's, and each completed episode's
        self.current_noise: np.ndarray | None = None
        self._completed_noise: list[np.ndarray] = []
        if self.episode_noise_shape is not None:
            self.current_noise = np.zeros((self.n_envs, *self.episode_noise_shape), dtype=np.float32)

    @property
    def capacity(self) -> int:
        """Number of steps allocated (the pool's pages)."""
        return self.n_pages * self.page_rows

    @property
    def size(self) -> int:
        """Number of steps held, completed and in progress."""
        return int(self.env_sizes.sum())

    @property
    def n_completed(self) -> int:
        """Number of completed episodes held."""
        return len(self._completed_lengths)

    @property
    def n_in_progress_steps(self) -> int:
        """Number of steps held that belong to episodes still running."""
        return int(self.current_lengths.sum())

    @property
    def bytes_per_step(self) -> int:
        """
        Bytes of one stored step: the row of each per-step array (the observation in its own dtype, the action as
        float32, reward, log-probability, and the update's three float32 slots). Nothing else is kept per step.
        """
        return sum(array.nbytes // self.capacity for array in self._step_arrays())

    @property
    def nbytes(self) -> int:
        """Bytes of the per-step arrays as allocated (the pool of pages grows by doubling)."""
        return sum(array.nbytes for array in self._step_arrays())

    def _step_arrays(self) -> list[np.ndarray]:
        observations = list(self.observations.values()) if isinstance(self.observations, dict) else [self.observations]
        return [*observations, self.actions, self.rewards, self.log_probs, *self.update_slots.values()]

    def _set_step_arrays(self, arrays: list[np.ndarray]) -> None:
        """Replace the per-step arrays, in the order of :meth:`_step_arrays`."""
        if isinstance(self.observations, dict):
            n_obs = len(self.observations)
            self.observations = dict(zip(self.observations, arrays[:n_obs], strict=True))
        else:
            n_obs = 1
            self.observations = arrays[0]
        self.actions, self.rewards, self.log_probs = arrays[n_obs : n_obs + 3]
        self.update_slots = dict(zip(self.update_slots, arrays[n_obs + 3 :], strict=True))

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

    def _new_page(self) -> int:
        """:return: a free page, the pool grown (doubled, its pages kept) when none is left"""
        if not self._free_pages:
            new_n_pages = 2 * self.n_pages

            def grow(array: np.ndarray) -> np.ndarray:
                new_array = np.zeros((new_n_pages, *array.shape[1:]), dtype=array.dtype)
                new_array[: self.n_pages] = array
                return new_array

            self._set_step_arrays([grow(array) for array in self._step_arrays()])
            self._free_pages = list(range(new_n_pages - 1, self.n_pages - 1, -1))
            self.n_pages = new_n_pages
        return self._free_pages.pop()

    def _set_tail(self, env_idx: int) -> None:
        """Point env ``env_idx``'s next step after its last row (on a new page if its last page is full or it has none)."""
        end = int(self.env_offsets[env_idx] + self.env_sizes[env_idx])
        pages = self.env_pages[env_idx]
        if pages and end < len(pages) * self.page_rows:
            self._tail_pages[env_idx] = pages[end // self.page_rows]
            self._tail_rows[env_idx] = end % self.page_rows
        else:
            self._tail_pages[env_idx] = -1
            self._tail_rows[env_idx] = self.page_rows

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
        if self._max_tail_row >= self.page_rows:
            # Some envs' last page is full (or they have none): each gets a new one
            for env_idx in np.flatnonzero(self._tail_rows >= self.page_rows):
                page = self._new_page()
                self.env_pages[env_idx].append(page)
                self._tail_pages[env_idx] = page
                self._tail_rows[env_idx] = 0
            self._max_tail_row = int(self._tail_rows.max())
        # Row _tail_rows[i] of page _tail_pages[i], for each env i (with one env, a slice: numpy's faster basic indexing)
        rows: tuple[np.ndarray | slice, np.ndarray | int] = (self._tail_pages, self._tail_rows)
        if self.n_envs == 1:
            page = int(self._tail_pages[0])
            rows = (slice(page, page + 1), int(self._tail_rows[0]))
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
        self._tail_rows += 1
        self._max_tail_row += 1
        self.env_sizes += 1
        # Running discounted return of each episode: R = sum_t gamma^t r_t
        self.current_returns += self._current_discounts * rewards
        self._current_discounts *= self.gamma
        self.current_lengths += 1

    def set_current_noise(self, env_indices: np.ndarray, noise: np.ndarray | th.Tensor) -> None:
        """
        Set the held noise of some envs' episodes in progress (call it when they start, before their first step).

        :param env_indices: the envs, shape (n,)
        :param noise: their noise, shape (n, *episode_noise_shape)
        """
        if self.current_noise is None:
            raise ValueError("This buffer holds no noise: create it with episode_noise_shape")
        if isinstance(noise, th.Tensor):
            noise = noise.cpu().numpy()
        self.current_noise[env_indices] = noise

    def _start_new_episodes(self, env_indices: np.ndarray) -> None:
        self.current_lengths[env_indices] = 0
        self.current_returns[env_indices] = 0.0
        self._current_discounts[env_indices] = 1.0

    def end_episodes(
        self,
        env_mask: np.ndarray,
        truncated: np.ndarray | None = None,
        final_observations: Sequence[np.ndarray | dict[str, np.ndarray] | None] | None = None,
    ) -> int:
        """
        Close the episodes in progress of the envs in ``env_mask``; their next steps start new episodes.

        A fragment (see :meth:`mark_fragments`) is not closed as an episode: its steps are dropped.

        :param env_mask: Boolean mask of the envs whose episode ended, shape (n_envs,)
        :param truncated: Boolean mask of those that ended by truncation rather than termination, shape (n_envs,)
        :param final_observations: for each env, the observation after the last step of its episode if it was
            truncated (a value to bootstrap from, ``baseline="value"``), else None; None: none kept
        :return: Number of steps dropped because they were fragments (for the caller to count and log)
        """
        env_mask = np.asarray(env_mask, dtype=bool)
        env_indices = np.flatnonzero(env_mask & ~self.fragments)
        # Fragments that ended are dropped: their envs start a new (complete) episode
        n_dropped = self.discard_in_progress(env_mask & self.fragments)
        for env_idx in env_indices:
            length = int(self.current_lengths[env_idx])
            if length == 0:
                raise ValueError(f"Env {env_idx} has no step in its current episode: nothing to end")
            self._completed_envs.append(int(env_idx))
            self._completed_starts.append(int(self.env_sizes[env_idx]) - length)
            self._completed_lengths.append(length)
            self._completed_returns.append(float(self.current_returns[env_idx]))
            is_truncated = bool(truncated[env_idx]) if truncated is not None else False
            self._completed_truncated.append(is_truncated)
            final = final_observations[int(env_idx)] if final_observations is not None and is_truncated else None
            self._completed_final_observations.append(final)
            if self.current_noise is not None:
                self._completed_noise.append(self.current_noise[env_idx].copy())
        self._start_new_episodes(env_indices)
        return n_dropped

    def _keep_rows(self, env_idx: int, first: int, stop: int) -> None:
        """Keep only env ``env_idx``'s rows ``first`` to ``stop - 1`` (among its rows), freeing the pages outside them."""
        pages = self.env_pages[env_idx]
        begin = int(self.env_offsets[env_idx]) + first
        end = int(self.env_offsets[env_idx]) + stop
        if stop == first and begin % self.page_rows == 0:
            # Nothing kept, and no page begun: the next step starts a new page
            kept_from, kept_to = len(pages), len(pages)
        else:
            kept_from, kept_to = begin // self.page_rows, -(-end // self.page_rows)
            kept_to = max(kept_to, kept_from + 1)
        self._free_pages.extend(pages[:kept_from] + pages[kept_to:])
        self.env_pages[env_idx] = pages[kept_from:kept_to]
        self.env_offsets[env_idx] = begin - kept_from * self.page_rows if self.env_pages[env_idx] else 0
        self.env_sizes[env_idx] = stop - first
        self._set_tail(env_idx)

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
        # An episode in progress is the last rows of its env: dropping it shortens the env's rows
        n_dropped = int(self.current_lengths[env_indices].sum())
        for env_idx in env_indices:
            self._keep_rows(int(env_idx), 0, int(self.env_sizes[env_idx] - self.current_lengths[env_idx]))
        self._max_tail_row = int(self._tail_rows.max())
        self._start_new_episodes(env_indices)
        return n_dropped

    def episode_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        :return: the env, the first row among the env's rows and the length of each completed episode, in completion
            order, shape (M,) each (int64): episode ``k``'s step ``t`` is row ``starts[k] + t`` of env ``envs[k]``
            (see :meth:`row_segments`)
        """
        return (
            np.asarray(self._completed_envs, dtype=np.int64),
            np.asarray(self._completed_starts, dtype=np.int64),
            np.asarray(self._completed_lengths, dtype=np.int64),
        )

    def completed_noise(self) -> th.Tensor | None:
        """:return: the held noise of each completed episode, in completion order, shape (M, *episode_noise_shape), on
        the buffer's device (None: the buffer holds no noise)"""
        if self.episode_noise_shape is None:
            return None
        noise = np.asarray(self._completed_noise, dtype=np.float32).reshape((-1, *self.episode_noise_shape))
        return th.as_tensor(noise, device=self.device)

    def row_segments(self, env_idx: int, first: int, stop: int) -> list[tuple[int, int, int]]:
        """
        :return: where env ``env_idx``'s rows ``first`` to ``stop - 1`` are stored: ``(page, first row, one past the
            last row)`` on each page they cover, in order
        """
        pages, rows = self.env_pages[env_idx], self.page_rows
        position = int(self.env_offsets[env_idx]) + first
        end = int(self.env_offsets[env_idx]) + stop
        segments = []
        while position < end:
            row = position % rows
            n_rows = min(end - position, rows - row)
            segments.append((pages[position // rows], row, row + n_rows))
            position += n_rows
        return segments

    def _completed_step_order(self) -> tuple[np.ndarray, np.ndarray]:
        """
        :return: the flat position (``page * page_rows + row``) of each step of the completed episodes, ordered by
            episode (completion order) then time, and the episode index in ``[0, M)`` of each of them
        """
        envs, starts, lengths = self.episode_layout()
        positions = np.empty(int(lengths.sum()), dtype=np.int64)
        offset = 0
        for env_idx, start, length in zip(envs.tolist(), starts.tolist(), lengths.tolist(), strict=True):
            for page, first, stop in self.row_segments(env_idx, start, start + length):
                positions[offset : offset + stop - first] = np.arange(
                    page * self.page_rows + first, page * self.page_rows + stop
                )
                offset += stop - first
        return positions, np.repeat(np.arange(len(lengths)), lengths)

    def flat(self, array: np.ndarray) -> np.ndarray:
        """:return: a view of one per-step array, shape (capacity, ...): row ``page * page_rows + row``"""
        return array.reshape((self.capacity, *array.shape[2:]))

    def get(self, copy_observations: bool = True) -> EpisodeBatch:
        """
        :param copy_observations: True: the batch holds a copy of the group's observations, in step order.
            False: the batch refers to the buffer's own observation arrays (flattened to one row per step, a view),
            with the row of each step in ``observation_positions`` (read them with :func:`step_observations`).
            Nothing the size of the group's observations is copied; the batch is valid until the buffer changes (the
            next ``add``, ``end_episodes``, ``pop_completed``, ...).
        :return: The completed episodes, flattened (see :class:`EpisodeBatch`).
        """
        if self.n_completed == 0:
            raise ValueError("The buffer holds no completed episode")
        positions, step_episode = self._completed_step_order()
        observations: np.ndarray | dict[str, np.ndarray]
        observation_positions = None
        if not copy_observations:
            if isinstance(self.observations, dict):
                observations = {key: self.flat(obs) for key, obs in self.observations.items()}
            else:
                observations = self.flat(self.observations)
            observation_positions = positions
        elif isinstance(self.observations, dict):
            observations = {key: self.flat(obs)[positions] for key, obs in self.observations.items()}
        else:
            observations = self.flat(self.observations)[positions]
        return EpisodeBatch(
            observations=observations,
            actions=th.as_tensor(self.flat(self.actions)[positions], device=self.device),
            behaviour_log_probs=th.as_tensor(self.flat(self.log_probs)[positions], device=self.device),
            rewards=th.as_tensor(self.flat(self.rewards)[positions], device=self.device),
            episode_index=th.as_tensor(step_episode, device=self.device),
            returns=th.as_tensor(np.asarray(self._completed_returns, dtype=np.float32), device=self.device),
            lengths=th.as_tensor(np.asarray(self._completed_lengths, dtype=np.int64), device=self.device),
            truncated=np.asarray(self._completed_truncated, dtype=bool),
            final_observations=list(self._completed_final_observations),
            env_indices=np.asarray(self._completed_envs, dtype=np.int64),
            observation_positions=observation_positions,
            episode_noise=self.completed_noise(),
        )

    def pop_completed(self) -> int:
        """
        Remove the completed episodes, keeping (carrying over) the steps of the episodes in progress, and free the
        pages that held only completed steps.

        :return: Number of steps removed
        """
        n_before = self.size
        for env_idx in range(self.n_envs):
            size = int(self.env_sizes[env_idx])
            self._keep_rows(env_idx, size - int(self.current_lengths[env_idx]), size)
        self._max_tail_row = int(self._tail_rows.max())
        self._completed_envs.clear()
        self._completed_starts.clear()
        self._completed_lengths.clear()
        self._completed_returns.clear()
        self._completed_truncated.clear()
        self._completed_final_observations.clear()
        self._completed_noise.clear()
        return n_before - self.size


class GroupChunk(NamedTuple):
    """Consecutive steps of a group (episode by episode, each in time order), as :meth:`GroupView.chunks` yields them."""

    steps: slice  # their step numbers in the group
    episode_index: th.Tensor  # (chunk,) episode of each step, in [0, M), on the buffer's device
    segments: tuple[tuple[int, int, int], ...]  # (page, first row, one past the last row): its rows, in step order


class GroupView:
    """
    The completed episodes of an :class:`EpisodeBuffer`, read in place, a chunk of steps at a time: the group of an
    update whose memory does not grow with episode length (docs/METHOD.md section 2.2). Unlike :meth:`EpisodeBuffer.get`,
    it forms nothing per step of the whole group: a chunk's observations, actions, rewards and episode indices are
    gathered from the buffer's pages when the chunk is read, and per-step results are written to the buffer's update
    slots (:data:`UPDATE_SLOTS`). Valid until the buffer changes.

    :param buffer: the buffer, with at least one completed episode
    """

    def __init__(self, buffer: EpisodeBuffer):
        if buffer.n_completed == 0:
            raise ValueError("The buffer holds no completed episode")
        self.buffer = buffer
        self.envs, self.starts, self.episode_lengths = buffer.episode_layout()
        self.lengths = th.as_tensor(self.episode_lengths, device=buffer.device)
        self.returns = th.as_tensor(np.asarray(buffer._completed_returns, dtype=np.float32), device=buffer.device)
        # (M, *noise_shape): the noise each episode was collected with (held logit noise), or None
        self.episode_noise = buffer.completed_noise()
        self.n_steps = int(self.episode_lengths.sum())

    def chunks(self, chunk_steps: int) -> Iterator[GroupChunk]:
        """
        :param chunk_steps: the number of steps of each chunk (the last one may be shorter)
        :return: the group's steps in order, ``chunk_steps`` at a time
        """
        lengths = self.episode_lengths
        episode, time = 0, 0
        for start in range(0, self.n_steps, chunk_steps):
            stop = min(start + chunk_steps, self.n_steps)
            segments: list[tuple[int, int, int]] = []
            counts, episodes = [], []
            n_left = stop - start
            while n_left > 0:
                n_taken = min(n_left, int(lengths[episode]) - time)
                first_row = int(self.starts[episode]) + time
                segments += self.buffer.row_segments(int(self.envs[episode]), first_row, first_row + n_taken)
                counts.append(n_taken)
                episodes.append(episode)
                n_left -= n_taken
                time += n_taken
                if time == lengths[episode]:
                    episode, time = episode + 1, 0
            episode_index = th.as_tensor(np.repeat(episodes, counts), device=self.buffer.device)
            yield GroupChunk(slice(start, stop), episode_index, tuple(segments))

    @staticmethod
    def read(array: np.ndarray, chunk: GroupChunk) -> np.ndarray:
        """:return: the chunk's rows of one of the buffer's per-step arrays, in step order (a view for one segment)"""
        if len(chunk.segments) == 1:
            page, first, stop = chunk.segments[0]
            return array[page, first:stop]
        return np.concatenate([array[page, first:stop] for page, first, stop in chunk.segments])

    def slot(self, name: str) -> th.Tensor:
        """
        :param name: one of :data:`UPDATE_SLOTS`
        :return: that slot of the group's N steps, in step order: a CPU tensor sharing the buffer's memory (index it
            with a chunk's ``steps``)
        """
        if name not in UPDATE_SLOTS:
            raise ValueError(f"Unknown update slot {name!r}, allowed: {UPDATE_SLOTS}")
        return th.from_numpy(self.buffer.flat(self.buffer.update_slots[name])[: self.n_steps])

    def compute_advantages(self, gamma: float, chunk_steps: int, min_std: float = 0.0) -> None:
        """
        Write the per-step advantages of :func:`~sb3_haepo.common.utils.reward_to_go_advantages` to the
        ``"advantages"`` slot, with :func:`~sb3_haepo.common.utils.reward_to_go_advantages_into`: nothing per step
        is allocated.
        """
        lengths = self.episode_lengths.tolist()
        out = self.slot("advantages").numpy()
        # The rewards are copied to the slot in step order, then turned into advantages there, episode by episode
        views, offset = [], 0
        for env_idx, start, length in zip(self.envs.tolist(), self.starts.tolist(), lengths, strict=True):
            for page, first, stop in self.buffer.row_segments(env_idx, start, start + length):
                out[offset : offset + stop - first] = self.buffer.rewards[page, first:stop]
                offset += stop - first
            views.append(out[offset - length : offset])
        reward_to_go_advantages_into(views, views, gamma, chunk_steps, min_std=min_std)

    def scale_advantages(self, factors: th.Tensor) -> None:
        """
        Multiply the advantages of each episode in the ``"advantages"`` slot (written by :meth:`compute_advantages`)
        by its factor, in place.

        :param factors: one factor per episode, shape (M,)
        """
        if factors.shape != (len(self.episode_lengths),):
            raise ValueError(f"factors must have shape ({len(self.episode_lengths)},), got {tuple(factors.shape)}")
        out, offset = self.slot("advantages").numpy(), 0
        for length, factor in zip(self.episode_lengths.tolist(), factors.tolist(), strict=True):
            out[offset : offset + length] *= np.float32(factor)
            offset += length

    def observations(self, chunk: GroupChunk) -> np.ndarray | dict[str, np.ndarray]:
        """:return: the chunk's observations, in the observation space's dtype"""
        observations = self.buffer.observations
        if isinstance(observations, dict):
            return {key: self.read(obs, chunk) for key, obs in observations.items()}
        return self.read(observations, chunk)

    def tensor(self, array: np.ndarray, chunk: GroupChunk) -> th.Tensor:
        """:return: the chunk's rows of one of the buffer's per-step arrays, as a tensor on the buffer's device"""
        return th.as_tensor(self.read(array, chunk), device=self.buffer.device)


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


def final_observations(
    new_obs: np.ndarray | dict[str, np.ndarray], infos: Sequence[dict], truncated: np.ndarray, dones: np.ndarray
) -> list[np.ndarray | dict[str, np.ndarray] | None]:
    """
    The observation after the last step of each env's episode that was truncated on this vector step: a VecEnv's
    ``infos[i]["terminal_observation"]`` when the env itself ended it (a time limit; ``new_obs[i]`` is then the next
    episode's first observation), ``new_obs[i]`` when the ``max_episode_steps`` guard cut it (the env runs on).

    :param new_obs: the VecEnv's observations after the step, (n_envs, ...) or a dict of them
    :param infos: its infos, one per env
    :param truncated: which envs' episodes were truncated, shape (n_envs,)
    :param dones: which envs reported ``done``, shape (n_envs,)
    :return: for each env, its final observation if truncated (None if its info has none), else None
    """
    finals: list[np.ndarray | dict[str, np.ndarray] | None] = [None] * len(truncated)
    for env_idx in np.flatnonzero(truncated).tolist():
        if dones[env_idx]:
            # Missing only outside SB3's VecEnvs; an update that needs it says so (HAEPO with baseline="value")
            terminal = infos[env_idx].get("terminal_observation")
            if isinstance(terminal, dict):
                terminal = {key: np.array(obs, copy=True) for key, obs in terminal.items()}
            elif terminal is not None:
                terminal = np.array(terminal, copy=True)
            finals[env_idx] = terminal
        elif isinstance(new_obs, dict):
            finals[env_idx] = {key: obs[env_idx].copy() for key, obs in new_obs.items()}
        else:
            finals[env_idx] = new_obs[env_idx].copy()
    return finals


def stack_observations(observations: Sequence[np.ndarray | dict[str, np.ndarray]]) -> np.ndarray | dict[str, np.ndarray]:
    """:return: single observations stacked along a new first axis (per key for dict observations)"""
    if isinstance(observations[0], dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}  # type: ignore[index]
    return np.stack(observations)  # type: ignore[arg-type]


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
