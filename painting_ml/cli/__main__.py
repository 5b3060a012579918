"""``python -m painting_ml.cli``: the same as the ``painting-ml`` command."""

import sys

from painting_ml.cli import main

sys.exit(main())
