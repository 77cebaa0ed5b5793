"""A throwaway PostgreSQL server for the sink tests, started from the local binaries.

:class:`PostgresServer` runs ``initdb`` into a fresh temporary directory, starts the
server on a free loopback port with its Unix socket inside that directory and trust
authentication, and removes everything on :meth:`~PostgresServer.stop`. ``initdb`` refuses
to run as root, so under root the server runs as an unprivileged system user
(:data:`SERVER_USER`, created if missing, else ``nobody``).

Any step that fails raises :class:`PostgresUnavailableError` with the reason (and the tail of
the server's log), so the fixture can skip, or fail when PostgreSQL is required.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

#: ``BATCHLOG_REQUIRE_POSTGRES=1``: a server that cannot start fails the tests, never skips them.
REQUIRED = os.environ.get("BATCHLOG_REQUIRE_POSTGRES") == "1"
#: The unprivileged user the server runs as when the tests run as root.
SERVER_USER = "batchlog-pg"
#: The database the tests use; the superuser is ``postgres``.
DATABASE = "batchlog_test"
SUPERUSER = "postgres"
#: Seconds ``initdb`` and ``pg_ctl`` may take before the server counts as unavailable.
STEP_TIMEOUT = 60

# The settings appended to postgresql.conf: loopback only, durability off (test data).
_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 40
"""
_PG_HBA = """\
local all all trust
host all all 127.0.0.1/32 trust
"""


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL could not be found or started; the message says why."""


def _version_key(bindir: str) -> tuple[int, ...]:
    match = re.search(r"/(\d+(?:\.\d+)*)/bin$", bindir)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def find_bindir() -> str:
    """Return a directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Looked for with ``pg_config --bindir``, then in ``/usr/lib/postgresql/*/bin`` (newest
    first), then next to ``initdb`` on ``PATH``.
    """
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            result = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(result.stdout.strip())
    candidates.extend(
        sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
        candidates.append(str(Path(initdb).parent))
    for bindir in candidates:
        if all(os.access(Path(bindir, name), os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    msg = f"no PostgreSQL binaries (initdb, pg_ctl, postgres) found; looked in {candidates}"
    raise PostgresUnavailableError(msg)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_user() -> str | None:
    """Return the user to run the server as: None for the current (non-root) user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd:
            subprocess.run(
                [
                    useradd,
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVER_USER,
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
    for name in (SERVER_USER, "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    msg = f"running as root, and neither user {SERVER_USER!r} (useradd failed) nor 'nobody' exists"
    raise PostgresUnavailableError(msg)


def _as_user(user: str | None, command: list[str]) -> list[str]:
    """Return ``command`` run as ``user`` (root only) via runuser, setpriv or su."""
    if user is None:
        return command
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user, "--", *command]
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *command]
    return ["su", "-s", "/bin/sh", user, "-c", subprocess.list2cmdline(command)]


class PostgresServer:
    """One PostgreSQL server in a temporary directory; :meth:`start` it, :meth:`stop` it.

    After :meth:`start`, :attr:`port` and :meth:`conninfo` tell how to reach it.
    """

    def __init__(self) -> None:
        self.bindir = ""
        self.user: str | None = None
        self.base_dir: Path | None = None
        self.port = 0
        self._running = False

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "server.log"

    def conninfo(self, dbname: str = DATABASE) -> str:
        """A libpq connection string for ``dbname`` over TCP on the loopback."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={SUPERUSER}"

    def _run(self, *args: str, timeout: float = STEP_TIMEOUT) -> None:
        command = _as_user(self.user, [str(Path(self.bindir, args[0])), *args[1:]])
        environment = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        environment.update(LC_ALL="C", LANG="C")
        try:
            result = subprocess.run(
                command,
                cwd=self.base_dir,  # the server user may not be able to read the caller's cwd
                env=environment,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            msg = f"{args[0]} could not run: {exc}"
            raise PostgresUnavailableError(msg) from exc
        if result.returncode != 0:
            msg = (
                f"{' '.join(command)} exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{self._log_tail()}"
            )
            raise PostgresUnavailableError(msg)

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(lines)

    def start(self, attempts: int = 3) -> None:
        """Create the cluster, start the server and create :data:`DATABASE`.

        Raises:
            PostgresUnavailableError: a step failed; the message says which and why.
        """
        self.bindir = find_bindir()
        self.user = _server_user()
        # Under /tmp (world-searchable) so the server user can reach it whatever TMPDIR is.
        parent = "/tmp" if self.user is not None and Path("/tmp").is_dir() else None  # noqa: S108 -- a private mkdtemp directory
        self.base_dir = Path(tempfile.mkdtemp(prefix="batchlog-pg-", dir=parent))
        self.base_dir.chmod(0o755)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base_dir, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # test data: no need to wait for the disk
        )
        (self.data_dir / "pg_hba.conf").write_text(_PG_HBA)
        original_conf = (self.data_dir / "postgresql.conf").read_text()
        for attempt in range(attempts):
            self.port = free_port()  # another process may take it first: then try another
            (self.data_dir / "postgresql.conf").write_text(
                original_conf + _CONF.format(port=self.port, socket_dir=self.base_dir)
            )
            try:
                self._run(
                    "pg_ctl",
                    f"--pgdata={self.data_dir}",
                    f"--log={self.log_file}",
                    "-w",
                    f"-t{STEP_TIMEOUT}",
                    "start",
                    timeout=STEP_TIMEOUT + 10,
                )
                break
            except PostgresUnavailableError:
                if attempt == attempts - 1:
                    raise
        self._running = True
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.conninfo("postgres"), autocommit=True) as connection:
                connection.execute(f"CREATE DATABASE {DATABASE}")
        except psycopg.Error as exc:
            msg = f"CREATE DATABASE failed: {exc}{self._log_tail()}"
            raise PostgresUnavailableError(msg) from exc

    def stop(self) -> None:
        """Stop the server at once (no checkpoint: the data is thrown away) and remove it."""
        if self.base_dir is None:
            return
        try:
            if self._running:
                try:
                    self._run("pg_ctl", f"--pgdata={self.data_dir}", "-m", "immediate", "stop")
                except PostgresUnavailableError:
                    self._kill_postmaster()
                self._running = False
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def _kill_postmaster(self) -> None:
        """Last resort when ``pg_ctl stop`` failed: SIGQUIT the postmaster from its pid file."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)


_shared: PostgresServer | None = None
_shared_failure: PostgresUnavailableError | None = None


def shared_server() -> PostgresServer:
    """Return the one server of this test process, started on first use, stopped at exit.

    Every PostgreSQL test module uses it, so a session starts one server, not one per module.

    Raises:
        PostgresUnavailableError: it could not be started (raised again on every call).
    """
    global _shared, _shared_failure  # noqa: PLW0603 -- one server per test process
    if _shared_failure is not None:
        raise _shared_failure
    if _shared is None:
        server = PostgresServer()
        try:
            server.start()
        except PostgresUnavailableError as exc:
            server.stop()
            _shared_failure = exc
            raise
        atexit.register(server.stop)
        _shared = server
    return _shared
