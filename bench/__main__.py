"""``python -m bench --lines 1M [--lines 10M] --repeat 3 --targets sqlite,postgresql --out bench/results``."""

import sys

from bench.harness import main

sys.exit(main())
