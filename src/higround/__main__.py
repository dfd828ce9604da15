"""``python -m higround`` runs the command line, as the ``higround`` console script does."""

import sys

from higround.cli.main import main

sys.exit(main())
