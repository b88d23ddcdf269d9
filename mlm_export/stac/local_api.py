"""A local STAC API for users and tests: PostgreSQL 15 + PostGIS, migrated by pypgstac, served by stac-fastapi-pgstac.

:func:`start_local_api` starts, in this order and each step bounded in time:

1. a PostgreSQL cluster in a directory of its own (``initdb`` then ``pg_ctl start``) listening on a free
   127.0.0.1 port and on a Unix socket in that directory (mode 0700). It accepts no one but its owner: every
   connection, socket or TCP, needs the password of the ``postgres`` superuser (``scram-sha-256``), generated
   at ``initdb`` and kept in :attr:`LocalSTACAPI.password_file` (mode 0600); the children get it as
   ``PGPASSWORD``, never on a command line. PostgreSQL refuses to run as root, so as root every PostgreSQL command
   runs through ``runuser -u postgres --`` on a directory owned by ``postgres``;
2. ``pypgstac migrate`` (creates PostGIS and the pgstac schema), then ``pypgstac load_queryables`` of
   :data:`QUERYABLES_FILE` (the model-level ``mlm:*`` fields, for every collection, with indexes on
   :data:`INDEXED_QUERYABLES`), so ``/queryables`` lists them with their types (STAC Browser and pystac-client offer
   them) and a filter compares ``mlm:total_parameters`` as a number. stac-fastapi-pgstac has no HTTP endpoint that
   registers queryables, so :func:`~mlm_export.stac.publish.publish` cannot do it on another server: there, run
   ``pypgstac load_queryables <QUERYABLES_FILE> --dsn <DSN>`` once; then the computed queryables of
   :mod:`mlm_export.stac.api_index` (band names, channel counts, frameworks: SQL functions of the Item with GIN
   indexes) unless ``computed_queryables=False``; and the loading speed-up of :mod:`mlm_export.stac.pgstac_tuning`
   (PostgreSQL runs with its :func:`~mlm_export.stac.pgstac_tuning.server_options`: ``synchronous_commit=off``,
   ``fsync=off`` only for a temporary directory);
3. ``uvicorn stac_fastapi.pgstac.app:create_app --factory`` with the Transactions extension on another free
   127.0.0.1 port, polled until ``GET /`` answers.

:meth:`LocalSTACAPI.stop` (or leaving the ``with`` block) stops the server, then PostgreSQL
(``pg_ctl -m fast stop`` for a kept ``data_dir``, ``-m immediate`` for a temporary one), and removes the temporary
directory. Every child process gets its own temporary
working directory and an explicit environment, so a stray ``.env`` file cannot change its settings.

The server runs under ``python=`` (default: this interpreter; the ``api`` extra installs stac-fastapi-pgstac,
uvicorn and pypgstac without touching the torch stack). Measured on a 2-core machine: initdb + start 0.7 s,
migrate 1 s, queryables 0.5 s, server ready 1.5 s.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from mlm_export.errors import MissingDependencyError, MLMExportError
from mlm_export.stac.api_index import index_sql
from mlm_export.stac.pgstac_tuning import server_options, tuning_sql

#: Seconds each start-up step may take before it is reported as failed.
STEP_TIMEOUT_S = 60.0
#: Seconds for registering the computed filters: a kept database indexed by an older mlm-export builds its index of
#: ``mlm_export_tokens`` once, about 0.5 ms per Item (100,000 Items: about a minute).
INDEX_TIMEOUT_S = 900.0
_PG_USER = "postgres"
_DATABASE = "postgres"
#: The superuser's password, in the working directory (0600; owned by postgres when run as root).
PASSWORD_FILE = "postgres-password"
#: pgstac queryables of the model-level MLM fields (a JSON schema; package data).
QUERYABLES_FILE = Path(__file__).resolve().with_name("mlm_queryables.json")
#: Runs the SQL read from stdin on the database argv[1] (pypgstac's psycopg; PGPASSWORD from the environment).
_EXECUTE_SQL = "import sys, psycopg; psycopg.connect(sys.argv[1], autocommit=True).execute(sys.stdin.read())"
#: Queryables pgstac indexes (BTREE, GIN for the tasks array): the fields model searches filter on most.
INDEXED_QUERYABLES = ("mlm:framework", "mlm:tasks", "mlm:architecture")


class LocalAPIError(MLMExportError):
    """The local STAC API (PostgreSQL, pypgstac or stac-fastapi-pgstac) could not be started."""


def _free_port(taken: int | None = None) -> int:
    """A port free on 127.0.0.1 now (another than ``taken``); someone may still take it before it is bound."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            found = int(probe.getsockname()[1])
        if found != taken:
            return found


def postgres_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (``$MLM_EXPORT_PG_BIN``, then Debian's PostgreSQL 15+).

    Raises:
        MissingDependencyError: PostgreSQL is not installed.
    """
    candidates = [os.environ.get("MLM_EXPORT_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("initdb")
    candidates.append(str(Path(which).parent) if which else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    raise MissingDependencyError(
        "PostgreSQL is not installed: no initdb/pg_ctl in $MLM_EXPORT_PG_BIN, /usr/lib/postgresql/*/bin or PATH.",
        hint="Install it: apt-get install postgresql-15 postgresql-15-postgis-3 (make test does this when root).",
    )


def _as_postgres(command: list[str]) -> list[str]:
    """``command`` run as the ``postgres`` user when we are root (PostgreSQL refuses to run as root)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ["runuser", "-u", _PG_USER, "--", *command]
    return command


def _run(
    command: list[str], what: str, env: dict[str, str], cwd: Path, stdin: str | None = None,
    timeout: float = STEP_TIMEOUT_S,
) -> None:  # fmt: skip
    try:
        done = subprocess.run(  # fixed argument lists, no shell
            command,
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=stdin,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalAPIError(f"{what} failed: {exc}.", hint="See the PostgreSQL log in the data directory.") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise LocalAPIError(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}", hint=f"Command: {command}")


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # our own loopback URL
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class LocalSTACAPI:
    """A running local STAC API; stop it with :meth:`stop` or use it as a context manager.

    Attributes:
        url: root URL of the STAC API (``http://127.0.0.1:PORT``).
        dsn: PostgreSQL connection string of the pgstac database (without the password: see ``password_file``).
        directory: the working directory (PostgreSQL cluster in ``pgdata``, logs, the password file; mode 0700).
        keep: keep ``directory`` on stop (a user-given data directory).
    """

    url: str
    dsn: str
    directory: Path
    pg_bin: Path
    env: dict[str, str] = field(repr=False)
    keep: bool = False
    server: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    postgres_running: bool = False

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL data directory."""
        return self.directory / "pgdata"

    @property
    def password_file(self) -> Path:
        """The file holding the ``postgres`` superuser's password (mode 0600)."""
        return self.directory / PASSWORD_FILE

    def stop(self) -> None:
        """Stop the server and PostgreSQL; remove the working directory unless ``keep``. Safe to call twice."""
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(timeout=10)
            self.server = None
        if self.postgres_running:
            mode = "fast" if self.keep else "immediate"  # fast: a checkpoint writes what synchronous_commit=off held
            stop = [str(self.pg_bin / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"]
            with contextlib.suppress(LocalAPIError):
                _run(_as_postgres(stop), "pg_ctl stop", self.env, self.directory)
            self.postgres_running = False
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalSTACAPI:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _password(api: LocalSTACAPI, *, create: bool) -> str:
    """The superuser's password: read from :attr:`LocalSTACAPI.password_file`, or generated into it (0600).

    Raises:
        LocalAPIError: a cluster exists without the file (made by an older mlm-export with ``trust`` auth).
    """
    path = api.password_file
    if not create:
        if not path.is_file():
            raise LocalAPIError(
                f"The database in '{api.pgdata}' has no password file '{path}': it was made with 'trust' "
                "authentication, which lets any local user in as superuser.",
                hint="Remove the data directory (its Items are lost) or choose another --data-dir.",
            )
        return path.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(32)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        shutil.chown(path, _PG_USER, _PG_USER)  # initdb reads it as postgres
    return password


def _start_postgres(api: LocalSTACAPI, port: int) -> None:
    pgdata = api.pgdata
    fresh = not (pgdata / "PG_VERSION").is_file()
    api.env["PGPASSWORD"] = _password(api, create=fresh)
    if fresh:
        initdb = [str(api.pg_bin / "initdb"), "-D", str(pgdata), "-U", _PG_USER, "-E", "UTF8"]
        initdb += ["--auth=scram-sha-256", f"--pwfile={api.password_file}"]  # socket and TCP: password only
        _run(_as_postgres([*initdb, "--no-sync"]), "initdb", api.env, api.directory)
    options = " ".join([f"-p {port} -c listen_addresses=127.0.0.1 -k {api.directory}",
                        *server_options(temporary=not api.keep)])  # fmt: skip
    start = [str(api.pg_bin / "pg_ctl"), "-D", str(pgdata), "-l", str(api.directory / "postgres.log")]
    _run(_as_postgres([*start, "-o", options, "-w", "-t", str(int(STEP_TIMEOUT_S)), "start"]), "pg_ctl start",
         api.env, api.directory)  # fmt: skip
    api.postgres_running = True


def _start_server(api: LocalSTACAPI, python: str, port: int) -> None:
    command = [python, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    log = (api.directory / "server.log").open("wb")
    with log:
        api.server = subprocess.Popen(  # fixed argument list, no shell
            command, env=api.env, cwd=api.directory, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        if api.server.poll() is not None:
            tail = (api.directory / "server.log").read_text(errors="replace").strip().splitlines()[-5:]
            taken = any("address already in use" in line for line in tail)
            raise LocalAPIError(
                f"stac-fastapi-pgstac exited with {api.server.returncode}: {' | '.join(tail)}",
                hint="Pass another port (--port)."
                if taken
                else "Install the server: pip install 'mlm-export[api]' (or pass python= a venv that has it).",
            )
        if _http_ready(api.url + "/"):
            return
        time.sleep(0.1)
    raise LocalAPIError(f"stac-fastapi-pgstac did not answer at {api.url} within {STEP_TIMEOUT_S:.0f} s.")


def start_local_api(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    port: int | None = None,
    python: str | None = None,
    computed_queryables: bool = True,
) -> LocalSTACAPI:
    """Start PostgreSQL + pgstac + stac-fastapi-pgstac on 127.0.0.1 and return the running :class:`LocalSTACAPI`.

    Args:
        data_dir: keep the database here (reused when it exists); default: a temporary directory removed on stop.
        port: the API port; default: a free port.
        python: the interpreter that has stac-fastapi-pgstac, uvicorn and pypgstac; default: this one.
        computed_queryables: register the computed queryables of :mod:`mlm_export.stac.api_index` (band names,
            channel counts and frameworks of the models, GIN-indexed) so searches filter them in the server;
            ``False`` gives a plain pgstac server, like a foreign STAC API.

    Raises:
        MissingDependencyError: PostgreSQL or the server packages are not installed.
        LocalAPIError: a step failed (its output is quoted); everything already started is stopped.

    .. versionadded:: 0.2
    """
    python = python or sys.executable
    _check_server_packages(python)
    pg_bin = postgres_bin_dir()
    keep = data_dir is not None
    directory = Path(data_dir).resolve() if data_dir is not None else Path(tempfile.mkdtemp(prefix="mlm-stac-api-"))
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # the socket, the password file and the logs: the owner's only
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        _hand_to_postgres(directory, remove=not keep)
    pg_port = _free_port()
    api_port = port or _free_port(taken=pg_port)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(directory),
        "PGUSER": _PG_USER,
        "PGPASSWORD": "",  # set from the password file before anything connects
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_port),
        "PGDATABASE": _DATABASE,
        "ENABLE_TRANSACTIONS_EXTENSIONS": "TRUE",
    }
    dsn = f"postgresql://{_PG_USER}@127.0.0.1:{pg_port}/{_DATABASE}"
    api = LocalSTACAPI(f"http://127.0.0.1:{api_port}", dsn, directory, pg_bin, env, keep)
    try:
        _start_postgres(api, pg_port)
        migrate = [python, "-m", "pypgstac.pypgstac", "migrate", "--dsn", dsn]
        _run(migrate, "pypgstac migrate", env, directory)
        queryables = [python, "-m", "pypgstac.pypgstac", "load_queryables", str(QUERYABLES_FILE), "--dsn", dsn]
        _run([*queryables, f"--index_fields={list(INDEXED_QUERYABLES)!r}"], "pypgstac load_queryables", env, directory)
        _run([python, "-c", _EXECUTE_SQL, dsn], "pgstac tuning (mlm_export.stac.pgstac_tuning)", env, directory,
             stdin=tuning_sql())  # fmt: skip
        if computed_queryables:
            _run([python, "-c", _EXECUTE_SQL, dsn], "computed queryables (mlm_export.stac.api_index)", env, directory,
                 stdin=index_sql(), timeout=INDEX_TIMEOUT_S)  # fmt: skip
        for attempt in range(3):  # a free port found earlier may have been taken meanwhile by another process
            try:
                _start_server(api, python, api_port)
                break
            except LocalAPIError as exc:
                if port is not None or attempt == 2 or "address already in use" not in exc.message:
                    raise
                api_port = _free_port(taken=pg_port)
                api.url = f"http://127.0.0.1:{api_port}"
    except BaseException:
        api.stop()
        raise
    return api


def _hand_to_postgres(directory: Path, *, remove: bool) -> None:
    """As root: give ``directory`` to the postgres user, and check that it can reach it through the parents."""
    shutil.chown(directory, _PG_USER, _PG_USER)
    reachable = subprocess.run(["runuser", "-u", _PG_USER, "--", "test", "-w", str(directory)], check=False)
    if reachable.returncode != 0:
        if remove:
            shutil.rmtree(directory, ignore_errors=True)
        raise LocalAPIError(
            f"The postgres user cannot write in '{directory}' (a parent directory is closed to it); PostgreSQL "
            "refuses to run as root, so it runs as postgres.",
            hint="Choose a data directory under a world-traversable parent, e.g. /var/tmp/mlm-stac-api.",
        )


def _check_server_packages(python: str) -> None:
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))"
    modules = ["uvicorn", "stac_fastapi.pgstac", "pypgstac"]
    try:
        missing = subprocess.run([python, "-c", probe, *modules], capture_output=True, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingDependencyError(f"Cannot run the server interpreter {python!r}: {exc}.") from exc
    if missing:
        raise MissingDependencyError(
            f"{python} lacks stac-fastapi-pgstac, uvicorn or pypgstac.",
            hint="pip install 'mlm-export[api]' in that environment.",
        )
