from sb3_haepo.grpo.grpo import GRPO
from sb3_haepo.grpo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["GRPO", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
