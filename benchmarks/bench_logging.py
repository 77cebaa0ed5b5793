"""What ``logger.info(...)`` costs the caller through BatchingHandler, against stdlib handlers.

Run as ``python benchmarks/bench_logging.py [--quick]``. What it measures, and how, is
described in ``batchlog.cli.bench.logging_``, which ``python -m batchlog bench`` runs too.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from batchlog.cli.bench import logging_
except ImportError:  # run from a checkout that is not installed: use the repo's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from batchlog.cli.bench import logging_
from batchlog.cli.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script(logging_))
