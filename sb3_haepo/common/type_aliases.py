"""Common type aliases of the episodic algorithms."""

from typing import NamedTuple

import numpy as np
import torch as th


class EpisodeBatch(NamedTuple):
    """
    A group of complete episodes, flattened step by step.

    Steps are ordered episode by episode, each episode in time order. ``N`` is the number of steps, ``M`` the number
    of episodes. Observations stay in numpy (they can be large images) and are moved to the device chunk by chunk.
    """

    observations: np.ndarray | dict[str, np.ndarray]  # (N, *obs_shape)
    actions: th.Tensor  # (N, action_dim)
    behaviour_log_probs: th.Tensor  # (N,) log-probabilities under the policy that collected each step
    rewards: th.Tensor  # (N,) reward of each step
    episode_index: th.Tensor  # (N,) episode of each step, in [0, M)
    returns: th.Tensor  # (M,) sum_t gamma^t r_t
    lengths: th.Tensor  # (M,)
    truncated: np.ndarray  # (M,) bool, ended by a time limit or by the max_episode_steps guard
    env_indices: np.ndarray  # (M,) env of each episode
