"""Run a command and write its resource usage as JSON: ``measure.py OUT.json -- COMMAND...``.

Why a separate launcher: on Linux a child inherits its parent's RSS high-water mark at fork
(the forked copy counts the parent's pages, and exec keeps the maximum), so a command started
straight from the benchmark process, which may hold hundreds of MB, would report at least that
much as its peak RSS. Started from this small process instead, the command's ``ru_maxrss`` is
its own. The command inherits stdin/stdout/stderr; the exit code is passed on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out, command = argv[0], argv[2:]
    began = time.monotonic()
    proc = subprocess.Popen(command)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - began
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    with open(out, "w") as f:
        json.dump({"returncode": proc.returncode, "wall_s": wall, "user_s": usage.ru_utime,
                   "sys_s": usage.ru_stime, "max_rss_kib": usage.ru_maxrss}, f)
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
