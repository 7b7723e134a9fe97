"""
Benchmark environments of the paper's experiments, registered with Gymnasium when this module is imported.

- ``sb3_haepo/Bandit-v0``: :class:`BanditEnv`, ``n_arms`` as a kwarg (default 10);
  ``sb3_haepo/Bandit10-v0``, ``Bandit20-v0``, ``Bandit30-v0``: K = 10, 20, 30.
- ``sb3_haepo/RandomWalk-v0``: :class:`RandomWalkEnv`, ``horizon`` kwarg (default 500).

Long sparse random walks (:data:`LONG_RANDOM_WALKS`): the same env with a horizon of 10^3, 10^4 and 10^5 steps, a
far goal and slipping moves, so that a uniformly random policy almost never succeeds and the optimal one (always
right) needs more than half of the horizon. The figures are exact (:func:`success_statistics`, no sampling;
``scripts/env_baselines.py`` prints them, and those of DeepSea and MiniGrid):

==============================  =======  =============  =====  ==================  ===============  ============
id                              horizon  goal_distance  slip   optimum: success    optimum: steps   random:
                                                                                   to the goal      success
==============================  =======  =============  =====  ==================  ===============  ============
``sb3_haepo/RandomWalk1k-v0``   1,000    110            0.4    0.9991              539.5 (54%)      9.4e-4
``sb3_haepo/RandomWalk10k-v0``  10,000   350            0.468  0.9992              5,350 (53.5%)    9.1e-4
``sb3_haepo/RandomWalk100k-v0`` 100,000  1,100          0.49   0.9990              53,723 (53.7%)   1.0e-3
==============================  =======  =============  =====  ==================  ===============  ============

The three are one problem at three time resolutions: the goal sits about 3.5 standard deviations of the unbiased
walk away (``goal_distance ~ 3.5 sqrt(horizon)``) and the optimal drift ``1 - 2 slip`` is about ``2 goal_distance /
horizon``, so a policy that moves right with probability q succeeds with nearly the same probability on all three
(q = 0.6: 3%; q = 0.75: 49-50%; q = 1: 99.9%) while the effect of one action on the outcome shrinks as
``1 / sqrt(horizon)``. Learnable in principle: the success rate rises smoothly with q, but a random policy sees a
success about once in 1,000 episodes (10^6, 10^7 and 10^8 steps).

Deep exploration:

- ``sb3_haepo/DeepSea-v0``: :class:`DeepSeaEnv`, bsuite's deterministic ``deep_sea``, ``size`` kwarg N (default
  10); ``sb3_haepo/DeepSea10-v0``, ``DeepSea30-v0``, ``DeepSea100-v0``: N = 10, 30, 100. Episodes last N steps;
  the treasure (+1) takes N "right" moves in a row, each costing 0.01 / N, with the meaning of the actions drawn per
  cell from ``mapping_seed`` (default 42, bsuite's sweep; fixed at construction, not by the reset seed, so training
  and evaluation envs are one MDP). Optimum: return 0.99, success rate 1. Uniformly random policy: success rate
  ``2 ** -N`` (9.8e-4, 9.3e-10, 7.9e-31), expected return ``2 ** -N - 0.005``. Dithering exploration (entropy,
  epsilon-greedy) with a per-step critic needs on the order of ``2 ** N`` episodes to see the treasure once and
  learns "always left" (return 0) meanwhile (Osband et al., bsuite, https://arxiv.org/abs/1908.03568).

Long-horizon sparse MiniGrid tasks (:mod:`sb3_haepo.envs.minigrid`, needs the ``minigrid`` extra), reward
``1 - 0.9 * steps / max_steps`` on success: ``MiniGrid-DoorKey-16x16-v0`` (2560 steps; shortest solution 33.3 steps on
average over the layouts of seeds 0-99, optimum return 0.988; uniformly random policy: 0 successes in 100 episodes)
and ``MiniGrid-KeyCorridorS6R3-v0`` (1080 steps; 41.4 steps, 0.966; 0 in 100), through :func:`make_minigrid_env`, or
registered with their observation wrapper as
``sb3_haepo/MiniGrid-DoorKey-16x16-Flat-v0``, ``sb3_haepo/MiniGrid-DoorKey-16x16-Image-v0``,
``sb3_haepo/MiniGrid-KeyCorridorS6R3-Flat-v0`` and ``sb3_haepo/MiniGrid-KeyCorridorS6R3-Image-v0``; :class:`MiniGridCNN`
is a CNN for their 7 x 7 x 3 view.

Token generation, a miniature of fine-tuning a language model (:mod:`sb3_haepo.envs.sequence`): the agent emits one
token per step after a prompt and the response is scored once, at the end. ``sb3_haepo/Summarize-v0``
(:class:`SummarizeEnv`, reward: ROUGE-like F1 against the document's key words in order) and
``sb3_haepo/ShortestPath-v0`` (:class:`ShortestPathEnv`, reward: optimality of a walk in a random graph), sizes and
``max_new_tokens`` (16-1024) as kwargs. Optimum 1; uniformly random policy 0.103 and 0.0005 with the default sizes.

Every env here is registered without a ``TimeLimit`` wrapper (bandit episodes last one step, the random walks
enforce their own horizon, DeepSea episodes last N steps).
"""

from gymnasium.envs.registration import register, registry

from sb3_haepo.envs.bandit import BanditEnv
from sb3_haepo.envs.deep_sea import DeepSeaEnv, play_actions
from sb3_haepo.envs.minigrid import (
    MINIGRID_LONG_HORIZON_TASKS,
    MINIGRID_WRAPPED_ENV_IDS,
    MiniGridCNN,
    MiniGridObsWrapper,
    make_minigrid_env,
    minigrid_cnn_policy_kwargs,
)
from sb3_haepo.envs.random_walk import RandomWalkEnv, RandomWalkStatistics, success_statistics
from sb3_haepo.envs.sequence import (
    SEQUENCE_ENV_IDS,
    SHORTEST_PATH_ENV_ID,
    SUMMARIZE_ENV_ID,
    ShortestPathEnv,
    SummarizeEnv,
    TokenSequenceEnv,
    random_policy_reward,
)

BANDIT_ENV_IDS: tuple[str, ...] = ("sb3_haepo/Bandit10-v0", "sb3_haepo/Bandit20-v0", "sb3_haepo/Bandit30-v0")
RANDOM_WALK_ENV_ID = "sb3_haepo/RandomWalk-v0"
DEEP_SEA_ENV_IDS: tuple[str, ...] = ("sb3_haepo/DeepSea10-v0", "sb3_haepo/DeepSea30-v0", "sb3_haepo/DeepSea100-v0")
# Long sparse random walks: id -> RandomWalkEnv kwargs (see the module docstring for the optimum and random figures)
LONG_RANDOM_WALKS: dict[str, dict[str, int | float]] = {
    "sb3_haepo/RandomWalk1k-v0": {"horizon": 1_000, "goal_distance": 110, "slip_prob": 0.4},
    "sb3_haepo/RandomWalk10k-v0": {"horizon": 10_000, "goal_distance": 350, "slip_prob": 0.468},
    "sb3_haepo/RandomWalk100k-v0": {"horizon": 100_000, "goal_distance": 1_100, "slip_prob": 0.49},
}


def _register(registered_id: str, entry_point: str, /, **kwargs: int | float | str) -> None:
    # Positional-only: the MiniGrid entry point takes an env_id kwarg
    if registered_id not in registry:
        register(id=registered_id, entry_point=entry_point, kwargs=kwargs)


_register("sb3_haepo/Bandit-v0", "sb3_haepo.envs.bandit:BanditEnv")
for _n_arms in (10, 20, 30):
    _register(f"sb3_haepo/Bandit{_n_arms}-v0", "sb3_haepo.envs.bandit:BanditEnv", n_arms=_n_arms)
_register(RANDOM_WALK_ENV_ID, "sb3_haepo.envs.random_walk:RandomWalkEnv")
for _env_id, _kwargs in LONG_RANDOM_WALKS.items():
    _register(_env_id, "sb3_haepo.envs.random_walk:RandomWalkEnv", **_kwargs)
_register("sb3_haepo/DeepSea-v0", "sb3_haepo.envs.deep_sea:DeepSeaEnv")
for _size in (10, 30, 100):
    _register(f"sb3_haepo/DeepSea{_size}-v0", "sb3_haepo.envs.deep_sea:DeepSeaEnv", size=_size)
_register(SUMMARIZE_ENV_ID, "sb3_haepo.envs.sequence:SummarizeEnv")
_register(SHORTEST_PATH_ENV_ID, "sb3_haepo.envs.sequence:ShortestPathEnv")
# The entry point imports minigrid only when the env is made
for _env_id, (_minigrid_id, _observation) in MINIGRID_WRAPPED_ENV_IDS.items():
    _register(_env_id, "sb3_haepo.envs.minigrid:make_minigrid_env", env_id=_minigrid_id, observation=_observation)

__all__ = [
    "BANDIT_ENV_IDS",
    "DEEP_SEA_ENV_IDS",
    "LONG_RANDOM_WALKS",
    "MINIGRID_LONG_HORIZON_TASKS",
    "MINIGRID_WRAPPED_ENV_IDS",
    "RANDOM_WALK_ENV_ID",
    "SEQUENCE_ENV_IDS",
    "SHORTEST_PATH_ENV_ID",
    "SUMMARIZE_ENV_ID",
    "BanditEnv",
    "DeepSeaEnv",
    "MiniGridCNN",
    "MiniGridObsWrapper",
    "RandomWalkEnv",
    "RandomWalkStatistics",
    "ShortestPathEnv",
    "SummarizeEnv",
    "TokenSequenceEnv",
    "make_minigrid_env",
    "minigrid_cnn_policy_kwargs",
    "play_actions",
    "random_policy_reward",
    "success_statistics",
]
