"""Common type aliases of the episodic algorithms."""

from typing import NamedTuple

import numpy as np
import torch as th


class EpisodeBatch(NamedTuple):
    """
    A group of complete episodes, flattened step by step.

    Steps are ordered episode by episode, each episode in time order. ``N`` is the number of steps, ``M`` the number
    of episodes. Observations stay in numpy, in their own dtype (they can be large images), and are moved to the device
    chunk by chunk: read them with :func:`sb3_haepo.common.buffers.step_observations`.

    When ``observation_positions`` is None, ``observations`` holds the N steps' observations in order. Otherwise
    ``observations`` is the buffer's own storage, not copied, and step ``i``'s observation is
    ``observations[observation_positions[i]]`` (``EpisodeBuffer.get(copy_observations=False)``, which the updates use
    so that a group's observations are never copied whole; such a batch is valid until the buffer changes).
    """

    observations: np.ndarray | dict[str, np.ndarray]  # (N, *obs_shape), or the buffer's storage
    actions: th.Tensor  # (N, action_dim)
    behaviour_log_probs: th.Tensor  # (N,) log-probabilities under the policy that collected each step
    rewards: th.Tensor  # (N,) reward of each step
    episode_index: th.Tensor  # (N,) episode of each step, in [0, M)
    returns: th.Tensor  # (M,) sum_t gamma^t r_t
    lengths: th.Tensor  # (M,)
    truncated: np.ndarray  # (M,) bool, ended by a time limit or by the max_episode_steps guard
    env_indices: np.ndarray  # (M,) env of each episode
    observation_positions: np.ndarray | None = None  # (N,) row of each step in ``observations``, None: row i
    # (M, latent_dim, n_logits) the held logit noise each episode was collected with, None: no held noise
    episode_noise: th.Tensor | None = None
    # (M,) the observation after the last step of each truncated episode, None for a terminated one (or not kept)
    final_observations: list[np.ndarray | dict[str, np.ndarray] | None] | None = None
