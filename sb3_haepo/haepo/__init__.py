from sb3_haepo.haepo.haepo import EPISODE_CREDIT_PRESET, HAEPO, PAPER_PRESET
from sb3_haepo.haepo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["EPISODE_CREDIT_PRESET", "HAEPO", "PAPER_PRESET", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
