"""How fast producers hand records to a BatchWriter, against a floor and queue.Queue.

Run as ``python benchmarks/bench_writer.py [--quick]``. What it measures, and how, is
described in ``batchlog.cli.bench.writer``, which ``python -m batchlog bench`` runs too.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from batchlog.cli.bench import writer
except ImportError:  # run from a checkout that is not installed: use the repo's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from batchlog.cli.bench import writer
from batchlog.cli.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script(writer))
