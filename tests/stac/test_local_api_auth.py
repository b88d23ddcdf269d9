"""The local STAC API's PostgreSQL lets in no one but its owner: a password on every connection, a private socket."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from local_stac import LOOPBACK

from mlm_export.stac.local_api import LocalAPIError, LocalSTACAPI, start_local_api

pytestmark = LOOPBACK
Completed = subprocess.CompletedProcess[str]
RUNUSER = shutil.which("runuser") or "runuser"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _psql(
    api: LocalSTACAPI, host: str, password: str | None, *, user: str | None = None
) -> subprocess.CompletedProcess:
    """``psql -w`` as the superuser over ``host`` (127.0.0.1 or the socket directory), as OS ``user`` when given."""
    env = {"PATH": "/usr/bin:/bin", "PGPASSFILE": "/nonexistent", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    if password is not None:
        env["PGPASSWORD"] = password
    port = str(urlsplit(api.dsn).port)
    sql = "COPY (SELECT 1) TO PROGRAM 'cat >/dev/null'"  # what a superuser session could run as the database's OS user
    command = [str(api.pg_bin / "psql"), "-w", "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-c", sql]
    if user is not None:
        command = [RUNUSER, "-u", user, "--", "env", *(f"{k}={v}" for k, v in env.items()), *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False, cwd="/")


def test_the_superuser_needs_the_password_over_tcp_and_the_socket(stac_api: LocalSTACAPI) -> None:
    password = stac_api.password_file.read_text().strip()
    assert stat.S_IMODE(stac_api.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(stac_api.directory.stat().st_mode) == 0o700
    for host in ("127.0.0.1", str(stac_api.directory)):
        refused = _psql(stac_api, host, None)
        assert refused.returncode == 2 and "no password supplied" in refused.stderr, refused.stderr
        wrong = _psql(stac_api, host, "guess")
        assert wrong.returncode == 2 and "password authentication failed" in wrong.stderr, wrong.stderr
    allowed = _psql(stac_api, "127.0.0.1", password)  # the owner, with the file's password
    assert allowed.returncode == 0, allowed.stderr
    assert password not in stac_api.dsn and password not in " ".join(map(str, stac_api.env.get("PATH", "")))


@pytest.mark.skipif(not AS_ROOT, reason="switching to another OS user needs root")
def test_another_os_user_is_refused(stac_api: LocalSTACAPI) -> None:
    tcp = _psql(stac_api, "127.0.0.1", None, user="nobody")
    assert tcp.returncode == 2 and "no password supplied" in tcp.stderr, tcp.stderr
    socket = _psql(stac_api, str(stac_api.directory), None, user="nobody")
    assert socket.returncode == 2 and "Permission denied" in socket.stderr, socket.stderr
    assert not os.access(stac_api.password_file, os.R_OK) or AS_ROOT  # root reads it; nobody cannot:
    peek = subprocess.run([RUNUSER, "-u", "nobody", "--", "cat", str(stac_api.password_file)], capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert peek.returncode != 0 and "Permission denied" in peek.stderr


def test_the_api_server_listens_on_loopback_only(stac_api: LocalSTACAPI) -> None:
    assert urlsplit(stac_api.url).hostname == "127.0.0.1" and urlsplit(stac_api.dsn).hostname == "127.0.0.1"
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]
    ports = {urlsplit(stac_api.url).port, urlsplit(stac_api.dsn).port}
    for line in listening:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) in ports:  # LISTEN on one of ours
            assert local.split(":")[0] in ("0100007F", "00000000000000000000000001000000"), line  # 127.0.0.1, ::1


def test_a_cluster_made_with_trust_auth_is_refused_not_reopened() -> None:
    data = Path(tempfile.mkdtemp(prefix="mlm-old-api-test-"))  # under /tmp: as root, postgres must reach it
    try:
        (data / "pgdata").mkdir()
        (data / "pgdata" / "PG_VERSION").write_text("15\n")  # a cluster of an older mlm-export: no password file
        with pytest.raises(LocalAPIError, match="no password file.*'trust'") as caught:
            start_local_api(data)
        assert "Remove the data directory" in (caught.value.hint or "")
        assert (data / "pgdata" / "PG_VERSION").is_file()  # the user's data directory is kept
    finally:
        shutil.rmtree(data, ignore_errors=True)
