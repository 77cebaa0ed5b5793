"""Records per second through the ready-made sinks, against a handler that writes per record.

Run as ``python benchmarks/bench_sinks.py [--quick]``. What it measures, and how, is
described in ``batchlog.cli.bench.sinks``, which ``python -m batchlog bench`` runs too.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from batchlog.cli.bench import sinks
except ImportError:  # run from a checkout that is not installed: use the repo's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from batchlog.cli.bench import sinks
from batchlog.cli.bench import run_script

if __name__ == "__main__":
    sys.exit(run_script(sinks))
