"""Child processes of a bench and what /proc says about processes.

``Proc``: one child in its own process group (a server, a worker), its output in a log file, ended
with its whole group (TERM, then KILL). ``Processes``: children started in this process group, their
descendants remembered as seen, so orphans can be ended too. Nothing else is ever signalled.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from bench.lib.django_env import ROOT
from bench.lib.output import log
from ingestion.processes import pid_gone  # a leaf: standard library only

TICK = os.sysconf("SC_CLK_TCK")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Proc:
    """A child process in its own process group; stop() ends that group (TERM, then KILL)."""

    def __init__(self, name: str, cmd: list[str], env: dict, log_path: Path, cwd: Path = ROOT):
        self.name, self.log_path = name, log_path
        self.log_file = open(log_path, "wb")
        self.popen = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        log(f"started {name} (pid {self.pid}): {' '.join(shlex.quote(c) for c in cmd[:8])} ...")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            if re.search(pattern, self.log_path.read_text(errors="replace")):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, grace: float = 20.0) -> None:
        if self.alive():
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.pid, sig)  # our own process group: the child and its children
                except ProcessLookupError:
                    break
                try:
                    self.popen.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    log(f"{self.name} (pid {self.pid}) ignored {sig.name}")
        if not self.log_file.closed:
            self.log_file.close()
            log(f"stopped {self.name} (pid {self.pid}, exit {self.popen.returncode})")


class Processes:
    """Every process this bench starts (and their descendants, as seen), ended on ``close``; nothing
    else is ever signalled."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.popens: list[subprocess.Popen] = []
        self.seen: set[int] = set()

    def start(self, name: str, command: list[str], cwd: Path, env: dict) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.popens.append(proc)
        return proc

    def note(self) -> None:
        """Remember the current descendants of the started processes (so orphans can be ended)."""
        for proc in self.popens:
            if proc.poll() is None:
                self.seen.update(descendants(proc.pid))

    def close(self) -> list[int]:
        """TERM the started processes (their children with them), KILL what is left; returns the pids of
        leftover descendants that had to be killed."""
        self.note()
        for proc in self.popens:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 30
        for proc in self.popens:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        leftovers = []
        for pid in sorted(self.seen):
            if not pid_gone(pid):
                leftovers.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return leftovers


# --- /proc ---------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (field 3, the state, first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (its children not included); 0 when it is gone."""
    try:
        fields = _stat_fields(pid)
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_ticks(pid: int) -> int:
    """User + system CPU of one process in clock ticks; -1 when it is gone."""
    try:
        fields = _stat_fields(pid)
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return -1


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    out = []
    for p in _pids():
        try:
            if int(_stat_fields(p)[1]) == pid:
                out.append(p)
        except (OSError, IndexError, ValueError):
            continue
    return sorted(out)


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def group_pids(pgid: int) -> list[int]:
    """The processes of one process group."""
    pids = []
    for p in _pids():
        try:
            if os.getpgid(p) == pgid:
                pids.append(p)
        except OSError:
            pass
    return pids


def pids_named(*names: str) -> list[int]:
    """The processes whose command name (/proc/<pid>/comm) is one of ``names``."""
    out = []
    for p in _pids():
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() in names:
                out.append(p)
        except OSError:
            pass
    return out


def postgres_pids() -> list[int]:
    return pids_named("postgres", "postmaster")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, kB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def reset_peak_rss(pid: int) -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssMonitor(threading.Thread):
    """Samples VmRSS of ``pid`` every 0.1 s; peak() also reads VmHWM (reset at start)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.max_kb, self.stop_event = pid, 0, threading.Event()
        self.hwm_reset = reset_peak_rss(pid)
        self.start_kb = proc_status(pid).get("VmRSS", 0)

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            self.max_kb = max(self.max_kb, proc_status(self.pid).get("VmRSS", 0))

    def peak(self) -> dict:
        self.stop_event.set()
        self.join(2)
        status = proc_status(self.pid)
        hwm = status.get("VmHWM") if self.hwm_reset else None
        return {
            "rss_at_start_mb": round(self.start_kb / 1024, 1),
            "peak_rss_sampled_mb": round(self.max_kb / 1024, 1),
            "peak_rss_vmhwm_mb": round(hwm / 1024, 1) if hwm else None,
        }


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def machine_busy_pct(seconds: float = 3.0) -> float:
    """How busy the machine's cores are over the next ``seconds`` (other work before a bench starts)."""
    a = machine_busy()
    time.sleep(seconds)
    b = machine_busy()
    return round(100 * (b[0] - a[0]) / max(1, b[1] - a[1]), 1)
