"""``python -m fastgan train | sample | eval`` (the ``fastgan`` console script)."""

import sys

from fastgan.train.cli import main

sys.exit(main())
