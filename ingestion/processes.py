"""Whether a local process still runs (a leaf: standard library only), for the upload take-over, the
worker-fault tests and the recovery bench."""

from __future__ import annotations

import os


def pid_gone(pid: int) -> bool:
    """Whether process ``pid`` of this host is known dead: it does not exist, or it is a zombie
    (killed, not yet reaped). A process of another user, or one whose state cannot be read, counts
    as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
