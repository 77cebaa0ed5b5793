"""Every example runs to completion in a child interpreter and says what it delivered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"

# (script, a line its output must contain)
CASES = [
    ("threads_to_sink.py", "40000 records in"),
    ("logging_in_code.py", "delivered 100 of 100 records"),
    ("dictconfig_dict.py", "delivered 30 of 30 records (sink saw 30)"),
    ("dictconfig_json.py", "delivered 25 of 25 records (sink saw 25)"),
    ("structlog_processor.py", "delivered 12 of 12 events"),
    ("structlog_via_stdlib.py", "delivered 10 of 10 records"),
    ("asyncio_app.py", "logging: 1000 of 1000 records"),
]


@pytest.mark.subprocess
@pytest.mark.parametrize(("script", "expected"), CASES, ids=[case[0] for case in CASES])
def test_example_runs(script, expected):
    """The example exits 0 and prints its delivery count."""
    if "structlog" in script or script == "asyncio_app.py":
        pytest.importorskip("structlog")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert expected in result.stdout
    assert "Traceback" not in result.stderr
