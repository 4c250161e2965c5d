"""What the system says of another process by its ID: alive, and since when (Linux /proc).

Used by the service manager (is a pidfile's process still a server?) and by the storage
add-in (is a spool file's writer still running?). A process ID is only a number: it is reused,
so "alive" alone cannot say the process is the one that wrote a pidfile or a file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["process_alive", "process_start"]


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (wall clock, seconds), or None where /proc cannot tell.

    From the time since boot (``/proc/uptime``, to 10 ms) rather than the boot time
    ``/proc/stat`` gives in whole seconds: a container restarted at once after a kill hands
    the killed process's ID out again within a second.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        now = time.time()
        # Field 22, counted after the command name, which may hold spaces and parentheses.
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return now - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
