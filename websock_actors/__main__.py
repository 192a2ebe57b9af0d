"""`python -m websock_actors run MODULE:ATTR ...`"""

import sys

from .cli import main

sys.exit(main())
