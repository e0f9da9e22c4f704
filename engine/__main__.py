"""`python -m engine` is the `contactpoint` command."""

import sys

from engine.cli import main

sys.exit(main())
