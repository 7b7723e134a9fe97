import os

from sb3_haepo.common.buffers import EpisodeBuffer
from sb3_haepo.dpo import DPO
from sb3_haepo.grpo import GRPO
from sb3_haepo.haepo import EPISODE_CREDIT_PRESET, HAEPO, PAPER_PRESET

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = ["DPO", "EPISODE_CREDIT_PRESET", "GRPO", "HAEPO", "PAPER_PRESET", "EpisodeBuffer", "__version__"]
