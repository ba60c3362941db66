"""``python -m chaoslib`` (with ``scripts/`` on ``sys.path``) is ``scripts/chaos``."""

import sys

from chaoslib.main import main

sys.exit(main())
