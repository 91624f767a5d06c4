"""The process's own clock, without heavy imports (``benchmarks/startup.py`` reads it before torch loads)."""

from __future__ import annotations

import os


def process_seconds() -> float | None:
    """Seconds since this process started, from Linux's ``/proc`` (10 ms resolution); None elsewhere."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            # Field 22 is the start time in clock ticks after boot; the command name before it, in
            # parentheses, may hold spaces, so count from the last ")".
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            booted_s = float(uptime.read().split()[0])
        return booted_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
