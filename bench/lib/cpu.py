"""Where the machine's CPU went during a part of a bench, per role (server workers, Celery worker,
PostgreSQL, Redis, the bench process itself ...), and how much of it was other work on the machine."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

from bench.lib.procs import TICK, cpu_s, machine_busy


class CpuMeter:
    """CPU seconds per role over a window.

    ``roles`` maps a name to a function giving that role's pids (called at the start, at each sample
    and at the end, so processes started inside the window are found). With ``interval`` a thread
    samples every ``interval`` seconds and keeps each process's last reading, so a process that exits
    inside the window (a PostgreSQL backend Celery closes after a task) counts up to its last sample;
    without it (``interval=None``: no thread, nothing runs beside the timed code) only the processes
    alive at the end count. A process started inside the window counts in full.

        with CpuMeter({"worker": lambda: [pid]}) as cpu:
            ...
        cpu.flat()     # {"wall_s", "<role>_cpu_s"..., "machine_cpu_s", "machine_busy_pct"}
        cpu.split()    # {"wall_s", "cores", "machine_busy_pct", "cpu_s": {role..., "client", "other"}}
    """

    def __init__(self, roles: dict[str, Callable[[], Iterable[int]]], *, interval: float | None = 0.25):
        self.roles, self.interval = roles, interval
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def _sample(self) -> dict[str, dict[int, float]]:
        return {role: {p: cpu_s(p) for p in pids()} for role, pids in self.roles.items()}

    def _merge(self, sample) -> None:
        for role, values in sample.items():
            self.last.setdefault(role, {}).update({p: v for p, v in values.items() if v})

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self._merge(self._sample())

    def start(self) -> CpuMeter:
        self.t0, self.b0, self.s0 = time.perf_counter(), machine_busy(), self._sample()
        self.client0 = time.process_time()
        self.last: dict[str, dict[int, float]] = {}
        if self.interval:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def stop(self) -> CpuMeter:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(2)
        self._merge(self._sample())
        self.t1, self.b1 = time.perf_counter(), machine_busy()
        self.client1 = time.process_time()
        return self

    __enter__ = start

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- readings ------------------------------------------------------------------------------------

    @property
    def wall_s(self) -> float:
        return self.t1 - self.t0

    def role_cpu_s(self) -> dict[str, float]:
        """CPU seconds per role inside the window (unrounded), in the order of ``roles``."""
        out = {}
        for role in self.roles:
            before = self.s0.get(role, {})
            out[role] = sum(v - before.get(p, 0.0) for p, v in self.last.get(role, {}).items())
        return out

    @property
    def machine_busy_s(self) -> float:
        """Every core's busy time inside the window (/proc/stat)."""
        return (self.b1[0] - self.b0[0]) / TICK

    @property
    def machine_busy_pct(self) -> float:
        return round(100 * (self.b1[0] - self.b0[0]) / max(1, self.b1[1] - self.b0[1]), 1)

    @property
    def client_s(self) -> float:
        """CPU seconds of this process (the bench: client, sampler) inside the window."""
        return self.client1 - self.client0

    def flat(self, ndigits: int = 1) -> dict:
        """``{"wall_s", "<role>_cpu_s" per role, "machine_cpu_s", "machine_busy_pct"}``."""
        return {
            "wall_s": round(self.wall_s, 2),
            **{f"{role}_cpu_s": round(v, ndigits) for role, v in self.role_cpu_s().items()},
            "machine_cpu_s": round(self.machine_busy_s, ndigits),
            "machine_busy_pct": self.machine_busy_pct,
        }

    def split(self, requests: int | None = None, ndigits: int = 2) -> dict:
        """The machine's busy CPU split into the roles, this process (``client``) and ``other`` (everything
        else: other work on a shared machine); with ``requests``, the CPU ms per request of each."""
        cpu = {role: round(v, ndigits) for role, v in self.role_cpu_s().items()}
        cpu["client"] = round(self.client_s, ndigits)
        cpu["other"] = round(self.machine_busy_s - sum(cpu.values()), ndigits)
        out = {
            "wall_s": round(self.wall_s, 2),
            "cores": os.cpu_count(),
            "machine_busy_pct": self.machine_busy_pct,
            "cpu_s": cpu,
        }
        if requests:
            out["cpu_ms_per_request"] = {k: round(1000 * v / requests, 3) for k, v in cpu.items() if k != "other"}
        return out
