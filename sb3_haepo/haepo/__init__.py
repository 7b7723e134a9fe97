from sb3_haepo.haepo.haepo import HAEPO
from sb3_haepo.haepo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["HAEPO", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
