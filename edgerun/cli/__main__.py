"""``python -m edgerun.cli``."""

import sys

from edgerun.cli.main import main

sys.exit(main())
