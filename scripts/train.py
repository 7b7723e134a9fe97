"""
Thin shim, as the zoo's ``train.py``: ``python scripts/train.py --algo haepo --env CartPole-v1``.

Same as ``python -m sb3_haepo.zoo train ...``.
"""

import sys

from sb3_haepo.zoo import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
