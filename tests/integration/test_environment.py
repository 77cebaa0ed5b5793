"""Where CI requires the integration tests to run, every framework they need is there."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

FRAMEWORKS = ["gunicorn", "gevent", "eventlet", "uvicorn", "celery", "redis", "django"]


@pytest.mark.skipif(
    not os.environ.get("BATCHLOG_REQUIRE_INTEGRATION"),
    reason="BATCHLOG_REQUIRE_INTEGRATION is not set: a missing framework skips its tests",
)
def test_every_framework_and_redis_server_is_installed():
    """With BATCHLOG_REQUIRE_INTEGRATION set (CI), a missing framework fails, not skips."""
    missing = [name for name in FRAMEWORKS if importlib.util.find_spec(name) is None]
    if shutil.which("redis-server") is None:
        missing.append("redis-server (Debian's redis-server package)")
    assert missing == [], "pip install -e '.[integration]' (and apt-get install redis-server)"
