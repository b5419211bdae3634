"""`python -m bench`: the benchmarks' own entry point (bench/cli.py)."""

import sys

from bench.cli import main

sys.exit(main())
