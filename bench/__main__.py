"""Run the benchmarks:
``python -m bench [upload|sdc|dp|query|synth|anon|differencing|toolkit|scale|linkage|release ...]``
(default: all but synth, anon, differencing, toolkit, scale, linkage and release).

Each benchmark measures against its floor or peer in the same run and prints the ratios. The
synthesizer benchmark runs for minutes and wants its peer environment
(``bench/peers_synth.sh``), so it runs only when named; so does the Anonymeter cross-check of
the privacy attacks (``bench/peers_anon.sh``), the scale benchmark (millions of records,
minutes) and the linkage benchmark (``bench/peers_linkage.sh``).
"""

from __future__ import annotations

import subprocess
import sys

BENCHES = {
    "upload": "bench.upload_bench",
    "sdc": "bench.sdc_bench",
    "dp": "bench.dp_bench",
    "query": "bench.query_bench",
    "synth": "bench.synth_bench",
    "anon": "bench.anon_check",
    "toolkit": "bench.toolkit_bench",
    "differencing": "bench.differencing_bench",
    "scale": "bench.scale_bench",
    "linkage": "bench.linkage_bench",
    "release": "bench.release_bench",
}
DEFAULT = ("upload", "sdc", "dp", "query")


def main(argv: list[str]) -> int:
    """Run the named benchmarks one after another, each in its own process."""
    names = argv or list(DEFAULT)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHES)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        # A fresh process per benchmark, so one's memory and caches do not colour the next.
        status |= subprocess.call([sys.executable, "-m", BENCHES[name]])  # noqa: S603
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
