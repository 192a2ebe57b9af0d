"""`python -m websock_actors.cli`: the same command line as `websock-actors`."""

import sys

from . import main

sys.exit(main())
