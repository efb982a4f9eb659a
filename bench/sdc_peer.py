"""Run one peer task in bench/.venv-sdc (pycanon or anjana) and print its result as JSON.

Called by bench/sdc_bench.py; it imports nothing of ctdhub, only the peer and pandas:
    python sdc_peer.py TASK DATA.csv QI1,QI2,... K SUPPRESSION HIERARCHIES.json
TASK is ``pycanon_k`` (measure k) or ``anjana`` (k-anonymise with the hierarchies, which map
each quasi-identifier to its rows: one row per original value, one column per level).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time

import pandas as pd


def main() -> None:
    """Run the task named on the command line."""
    task, path, qis_arg, k_arg, suppression_arg, hierarchies_path = sys.argv[1:7]
    qis = qis_arg.split(",")
    k, suppression = int(k_arg), float(suppression_arg)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    from pycanon import anonymity

    if task == "pycanon_k":
        start = time.perf_counter()
        measured = anonymity.k_anonymity(frame, qis)
        print(json.dumps({"seconds": time.perf_counter() - start, "k": int(measured)}))
        return
    from anjana.anonymity import k_anonymity

    with open(hierarchies_path, encoding="utf-8") as handle:
        rows = json.load(handle)
    hierarchies = {
        qi: {level: pd.Series([r[level] for r in rows[qi]]) for level in range(len(rows[qi][0]))}
        for qi in qis
    }
    start = time.perf_counter()
    # anjana prints progress; keep stdout for the JSON line.
    with contextlib.redirect_stdout(io.StringIO()):
        released = k_anonymity(frame, [], qis, k, suppression * 100, hierarchies)
    seconds = time.perf_counter() - start
    measured = anonymity.k_anonymity(released, qis) if len(released) else 0
    print(
        json.dumps(
            {
                "seconds": seconds,
                "k": int(measured),
                "suppressed": 1 - len(released) / len(frame),
            }
        )
    )


if __name__ == "__main__":
    main()
