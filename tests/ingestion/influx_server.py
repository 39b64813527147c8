"""A private InfluxDB 1.x server (Debian's ``influxd``) for the backup tests and the backup bench.

It binds 127.0.0.1 on free ports, keeps its meta/data/wal in a temporary directory, is configured by
a generated file and is stopped (and its directory removed) when the context ends. Nothing here
assumes an InfluxDB already running.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.ingestion.workers import stop_worker

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"

CONFIG = """\
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false
  max-body-size = 0

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class InfluxServer:
    url: str
    root: Path
    process: subprocess.Popen | None = None
    http_port: int = 0
    rpc_port: int = 0

    def start(self) -> None:
        """(Re)start influxd on the same ports and directories; returns once /ping answers."""
        log = open(self.root / "influxd.log", "ab")
        self.process = subprocess.Popen(
            [INFLUXD, "-config", str(self.root / "influxdb.conf")], stdout=log, stderr=log, cwd=self.root
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"influxd exited with {self.process.returncode}: see {self.root / 'influxd.log'}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/ping", timeout=0.5).status_code == 204:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"influxd did not answer on {self.url} within 30 s")

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        stop_worker(process)  # TERM, then KILL after 10 s

    def query(self, q: str, *, db: str | None = None) -> list[dict]:
        """Run InfluxQL; the results' series (raises on an error answer)."""
        params = {"q": q, **({"db": db} if db else {})}
        response = requests.post(f"{self.url}/query", params=params, timeout=30)
        response.raise_for_status()
        result = response.json()["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        return result.get("series", [])

    def count(self, *, db: str, measurement: str = "market_data") -> int:
        if db not in {row[0] for s in self.query("SHOW DATABASES") for row in s.get("values", [])}:
            return 0
        series = self.query(f'SELECT count("open") FROM "{measurement}"', db=db)
        return series[0]["values"][0][1] if series else 0

    def drop_database(self, name: str) -> None:
        self.query(f'DROP DATABASE "{name}"')


@contextlib.contextmanager
def influx_server():
    """Start a private influxd; yield an ``InfluxServer``; stop it and remove its files."""
    root = Path(tempfile.mkdtemp(prefix="tsm-influxd-"))
    http_port, rpc_port = free_port(), free_port()
    (root / "influxdb.conf").write_text(CONFIG.format(root=root, http_port=http_port, rpc_port=rpc_port))
    server = InfluxServer(url=f"http://127.0.0.1:{http_port}", root=root, http_port=http_port, rpc_port=rpc_port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
