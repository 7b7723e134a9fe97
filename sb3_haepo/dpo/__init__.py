from sb3_haepo.dpo.dpo import DPO
from sb3_haepo.dpo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["DPO", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
