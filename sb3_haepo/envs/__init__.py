"""
Benchmark environments of the paper's experiments, registered with Gymnasium when this module is imported.

- ``sb3_haepo/Bandit-v0``: :class:`BanditEnv`, ``n_arms`` as a kwarg (default 10);
  ``sb3_haepo/Bandit10-v0``, ``Bandit20-v0``, ``Bandit30-v0``: K = 10, 20, 30.
- ``sb3_haepo/RandomWalk-v0``: :class:`RandomWalkEnv`, ``horizon`` kwarg (default 500).

Both are registered without a ``TimeLimit`` wrapper (bandit episodes last one step, the random walk enforces its
own horizon).
"""

from gymnasium.envs.registration import register, registry

from sb3_haepo.envs.bandit import BanditEnv
from sb3_haepo.envs.random_walk import RandomWalkEnv

BANDIT_ENV_IDS: tuple[str, ...] = ("sb3_haepo/Bandit10-v0", "sb3_haepo/Bandit20-v0", "sb3_haepo/Bandit30-v0")
RANDOM_WALK_ENV_ID = "sb3_haepo/RandomWalk-v0"


def _register(env_id: str, entry_point: str, **kwargs: int) -> None:
    if env_id not in registry:
        register(id=env_id, entry_point=entry_point, kwargs=kwargs)


_register("sb3_haepo/Bandit-v0", "sb3_haepo.envs.bandit:BanditEnv")
for _n_arms in (10, 20, 30):
    _register(f"sb3_haepo/Bandit{_n_arms}-v0", "sb3_haepo.envs.bandit:BanditEnv", n_arms=_n_arms)
_register(RANDOM_WALK_ENV_ID, "sb3_haepo.envs.random_walk:RandomWalkEnv")

__all__ = ["BANDIT_ENV_IDS", "RANDOM_WALK_ENV_ID", "BanditEnv", "RandomWalkEnv"]
