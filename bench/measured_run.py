"""Run one command and write its wall time, CPU time, exit status and peak memory as JSON.

Run: ``python -m bench.measured_run REPORT.json COMMAND [ARG ...]``. A benchmark cannot read a
child's peak memory from its own ``RUSAGE_CHILDREN``: Linux carries the high-water mark of the
process a child was forked from into the child at ``exec`` (and Python's ``subprocess`` spawns
with ``vfork``, sharing the parent's memory until then), so a child of a benchmark that holds a
few hundred megabytes is charged those too, however little it uses itself. Started from this
small launcher, the command is charged its own peak (the most this launcher's own ~10 MiB could
add is that floor: the high-water mark is a maximum, not a sum).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time


def main(argv: list[str]) -> int:
    """Run ``argv[1:]``, write the report to ``argv[0]`` and exit with the command's status."""
    report, *command = argv
    program = shutil.which(command[0])
    if program is None:
        raise SystemExit(f"measured_run: no such program {command[0]!r}")
    start = time.perf_counter()
    pid = os.posix_spawn(program, command, os.environ)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    with open(report, "w", encoding="utf-8") as out:
        # ru_maxrss is in KiB on Linux
        json.dump(
            {
                "seconds": seconds,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "exit": code,
                "peak_mib": usage.ru_maxrss / 1024,
            },
            out,
        )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
