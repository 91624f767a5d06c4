from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from movielens_gnn.clock import process_seconds


def test_process_seconds_counts_from_the_process_start():
    """A fresh interpreter that sleeps 0.6 s before asking: at least that, and not much more than its own
    start-up (``/proc`` exists on the Linux machines this runs on; elsewhere the function says None)."""
    if not Path("/proc/self/stat").exists():
        assert process_seconds() is None
        return
    code = "import time; time.sleep(0.6); from movielens_gnn.clock import process_seconds; print(process_seconds())"
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - start
    assert 0.6 <= float(out) <= elapsed + 0.02

