"""The order of a release carries nothing about the input (issue 10, item 1).

CTDC's file is sorted by year. A release that kept the input's order gave the year back by
position: in a full-domain release with the year generalised to "*", anyone who knows how many
released records each year has (one published table, or one DP count) fills the years in by
position and gets every record right; in a local-suppression release a withheld year is read
from the records next to it. Both attacks run here on the CTDC file, and must do no better than
guessing without the order.

The bounds: the release's order is a uniformly random permutation, so the number of records an
attack gets right is a function of a random permutation that a transposition changes by at most
2. By the bounded-differences inequality for random permutations (the Doob martingale revealing
the permutation one place at a time has differences of range at most 2, so Azuma-Hoeffding
applies), it exceeds its expectation by ``t`` with probability at most ``exp(-2 t^2 / (4 n))``.
With ``t = sqrt(2 n ln(1 / DELTA))`` that is ``DELTA``: a correct release fails these tests with
probability below 1e-9. The order comes from the OS's CSPRNG, which takes no seed.
"""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pandas as pd
import pytest

from disclosure_control.sdc import WITHHELD, PrivacyModel, anonymise
from disclosure_control.sdc.generalise import shuffle_records, unlinked_order
from disclosure_control.sdc.hierarchies import Hierarchy
from tests.sdc.test_generalise import ROW, tagged

#: Probability that a correct release fails one bound below.
DELTA = 1e-9
#: The release the outside test attacked: l = 2 on isSexualExploit generalises the year to "*"
#: (full domain, 93,209 of 97,750 records kept) or to 2-year periods with 31,451 years withheld
#: (local suppression).
MODEL = PrivacyModel(k=11, sensitive="isSexualExploit", l=2)


def slack(n: int) -> float:
    """Return ``t / n``: how far above its expected share an attack may land by chance."""
    return math.sqrt(2.0 * n * math.log(1.0 / DELTA)) / n


def input_order_key(years: pd.Series | pd.Index) -> pd.Series | pd.Index:
    """Return the key CTDC's file is sorted by: the year, missing years last."""
    return years.where(years != "", "9999")


def fill_by_counts(released: pd.DataFrame, year_counts: pd.Series) -> pd.Series:
    """Guess every released record's year from its position and the per-year counts.

    The intruder assumes the release kept the input's order (sorted by year, missing last) and
    cuts it into runs of the published sizes.
    """
    ordered = year_counts.sort_index(key=input_order_key)
    guesses = np.repeat(ordered.index.to_numpy(dtype=object), ordered.to_numpy())
    return pd.Series(guesses, index=released.index, dtype="string")


def read_from_neighbours(released: pd.Series) -> pd.Series:
    """Guess each withheld value as the nearest value before it that is not withheld."""
    visible = released.mask(released.eq(WITHHELD))
    guesses = visible.ffill().bfill()
    return guesses[released.eq(WITHHELD)]


@pytest.mark.slow
def test_fill_by_counts_attack_on_a_full_domain_release_is_at_base_rate(
    ctdc_records: pd.DataFrame, quasi_identifiers: list[str], hierarchies: dict[str, Hierarchy]
) -> None:
    records = tagged(ctdc_records)
    assert records["yearOfRegistration"].pipe(input_order_key).is_monotonic_increasing
    result = anonymise(records, quasi_identifiers, hierarchies, MODEL, strategy="full_domain")
    assert (
        result.report.level_indices["yearOfRegistration"]
        == hierarchies["yearOfRegistration"].height
    )
    released = result.data
    assert released["yearOfRegistration"].eq("*").all()
    truth = records["yearOfRegistration"].to_numpy()[released[ROW].astype(int).to_numpy()]
    truth_series = pd.Series(truth, index=released.index, dtype="string")
    # The intruder's knowledge: the exact number of released records of each year.
    counts = truth_series.value_counts()
    guesses = fill_by_counts(released, counts)
    accuracy = float(guesses.eq(truth_series).mean())
    n = len(released)
    shares = counts / n
    # In a random order, the record in a run of year y is of year y with chance c_y / n.
    chance = float((shares**2).sum())
    base_rate = float(shares.max())
    assert accuracy <= chance + slack(n)
    assert accuracy <= base_rate
    # Kept input order gave every year back (the outside test's finding: 100 %).
    assert chance + slack(n) < 0.2 < base_rate


@pytest.mark.slow
def test_neighbour_attack_on_a_local_suppression_release_is_at_base_rate(
    ctdc_records: pd.DataFrame, quasi_identifiers: list[str], hierarchies: dict[str, Hierarchy]
) -> None:
    records = tagged(ctdc_records)
    result = anonymise(records, quasi_identifiers, hierarchies, MODEL, strategy="local")
    released = result.data
    year = hierarchies["yearOfRegistration"]
    level = result.report.level_indices["yearOfRegistration"]
    withheld = released["yearOfRegistration"].eq(WITHHELD)
    n_withheld = int(withheld.sum())
    assert n_withheld > 10_000
    # The value the release would have shown at its level, had it not been withheld.
    original = records["yearOfRegistration"].iloc[released[ROW].astype(int).to_numpy()]
    truth = year.generalise(original, level).reset_index(drop=True)[withheld]
    guesses = read_from_neighbours(released["yearOfRegistration"])
    accuracy = float(guesses.eq(truth).mean())
    # Given where the withheld records sit and what their neighbours show, which withheld
    # record sits where is a uniform permutation: the expected hits are sum_y a_y m_y / n.
    truth_share = truth.value_counts(normalize=True)
    guess_share = guesses.value_counts(normalize=True)
    chance = float(truth_share.mul(guess_share, fill_value=0.0).sum())
    base_rate = float(truth_share.max())
    assert accuracy <= chance + slack(n_withheld)
    assert accuracy <= base_rate + slack(n_withheld)
    # Kept input order read 85.7 % of withheld years from their neighbours.
    assert base_rate + slack(n_withheld) < 0.5


def test_the_release_index_and_order_carry_nothing(
    ctdc_sample: pd.DataFrame, quasi_identifiers: list[str], hierarchies: dict[str, Hierarchy]
) -> None:
    records = tagged(ctdc_sample)
    for strategy in ("full_domain", "local"):
        result = anonymise(records, quasi_identifiers, hierarchies, MODEL, strategy=strategy)
        released = result.data
        assert isinstance(released.index, pd.RangeIndex)
        assert released.index.equals(pd.RangeIndex(len(released)))
        # Position in the release and position in the input are unrelated. Spearman's rho of a
        # random permutation has mean 0, and a transposition moves it by at most 12 / n, so
        # (bounded differences, as above) |rho| > 12 sqrt(ln(2 / DELTA) / (2 n)) has
        # probability below DELTA. Kept input order has rho = 1.
        source = released[ROW].astype(int).to_numpy()
        n = len(source)
        rho = float(np.corrcoef(np.arange(n), np.argsort(np.argsort(source)))[0, 1])
        assert abs(rho) <= 12.0 * math.sqrt(math.log(2.0 / DELTA) / (2.0 * n)) < 0.5


def test_unlinked_order_is_a_uniform_permutation() -> None:
    # Each of the 6 orders of 3 records is drawn n / 6 times on average, sd sqrt(n 5/36);
    # 7 sd either side fails with probability below 6 * 3e-12.
    n = 6000
    drawn = pd.Series([tuple(unlinked_order(3).tolist()) for _ in range(n)]).value_counts()
    assert set(drawn.index) == set(permutations(range(3)))
    sd = math.sqrt(n * (1 / 6) * (5 / 6))
    assert (drawn - n / 6).abs().max() <= 7 * sd


def test_shuffle_records_keeps_every_record_and_drops_the_index() -> None:
    frame = pd.DataFrame({"a": list("abcdef")}, index=[10, 3, 7, 1, 2, 99])
    out = shuffle_records(frame)
    assert out.index.equals(pd.RangeIndex(6))
    assert sorted(out["a"]) == list("abcdef")
    assert shuffle_records(frame.iloc[:0]).empty
