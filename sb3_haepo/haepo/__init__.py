from sb3_haepo.haepo.haepo import HAEPO, PAPER_PRESET
from sb3_haepo.haepo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["HAEPO", "PAPER_PRESET", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
