"""`python -m services.cli.main`: the same as the `orchestrator` command."""

import sys

from services.cli.main import main

sys.exit(main())
