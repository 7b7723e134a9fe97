"""
Thin shim, as the zoo's ``enjoy.py``: ``python scripts/enjoy.py --algo haepo --env CartPole-v1 -f logs``.

``python -m rl_zoo3.benchmark`` runs ``python enjoy.py ...`` in its working folder: copy this file there to
benchmark HAEPO agents with the zoo's own script (or use ``python -m sb3_haepo.zoo benchmark ...``, which needs no copy).
"""

import sys

from sb3_haepo.zoo import main

if __name__ == "__main__":
    main(["enjoy", *sys.argv[1:]])
