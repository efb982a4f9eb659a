"""Differentially private aggregate queries over case records, on OpenDP 0.16 and Polars.

Privacy unit
    One case record: one victim as reported by one partner. Two snapshots are neighbours when
    one holds a single extra case record (symmetric distance 1, the "add or remove one record"
    model). Each record falls in exactly one cell of a grouped table, and sums clip each value
    to the field's declared bounds, so one case moves a count by at most 1 and a sum by at most
    max(|lower|, |upper|) (a mean's centred sum by upper - lower). A person reported in k case
    records (two partners, two registrations) is protected by group privacy only: k**2 times
    the rho. The record schema's domains and bounds are public; the records are not.

Accounting
    Every spend is zero-concentrated DP, ``rho``; sequential releases add their rhos. DP key
    selection (grouping on a field with no declared domain) also spends an additive ``delta``,
    which adds up likewise; public keys cost none. Epsilon is shown beside rho by OpenDP's own
    zCDP -> (epsilon, delta) conversion (``make_zCDP_to_approxDP``) at a stated delta (1e-6 by
    default), which is tighter than rho + 2 sqrt(rho ln(1/delta)); the delta shown is that
    delta plus key selection's. A spend asked as (epsilon, delta) buys the largest rho whose
    conversion stays within it. :func:`check_charge` decides, with exact rational arithmetic on
    the stored floats, whether a charge fits under a cap; the hub calls it against its own
    persisted ledger before any release, because OpenDP's budget state lives only in one
    process. This package never opens an OpenDP privacy filter: it builds each measurement
    with ``make_private_lazyframe`` and reads its cost from the measurement's privacy map.

Floating-point and other caveats OpenDP names
    OpenDP's documentation warns that mechanisms which assume real arithmetic can lose their
    guarantee once run on floating point numbers (the porous low-order bits Mironov showed in
    2012, and sensitivities underestimated by float rounding in sums, Casacuberta et al. 2022),
    and marks such components behind a ``"floating-point"`` feature flag. This package never
    enables that flag: counts and sums are integer, noised with the discrete Gaussian sampled
    exactly; means are integer sums divided by integer counts after release (post-processing);
    quantiles use OpenDP's exponential mechanism on integer candidates. Privacy maps are
    rounded up, never down, and calibration keeps the scale OpenDP's own map accepts.
    OpenDP also states that it is not hardened against side channels (timing, caches), and
    that the ``"contrib"`` components enabled here have proofs still under vetting.

Speed
    OpenDP's ``Context`` calibrates by bisection, rebuilding the measurement about a thousand
    times per release; :func:`plan_query` instead derives the scale from the inverse-square
    law rho(scale) = rho(1) / scale**2, checks it with OpenDP's map, and caches the plan by
    query shape and spend. :class:`Snapshot` keeps the records in memory, typed once.

>>> import polars as pl
>>> schema = schema_of([Field("gender", "string", ("Female", "Male"))])
>>> spec = QuerySpec(Measure("count"), SpendRequest(rho=0.5), group_by=("gender",))
>>> plan = plan_query(spec, schema)
>>> check_charge(plan.preview.spend, PrivacySpend(0.6), PrivacySpend(1.0)).fits
False
>>> with Snapshot(pl.DataFrame({"gender": ["Male"] * 40 + ["Female"] * 60}), schema) as data:
...     answer = release(plan, data, nonnegative_counts=True)
>>> [cell.key for cell in answer.cells]
[('Female',), ('Male',), (None,)]
>>> answer.spend, all(isinstance(cell.value, int) and cell.value >= 0 for cell in answer.cells)
(PrivacySpend(rho=0.5, delta=0.0), True)
"""

from disclosure_control.dp.accounting import (
    AccountingError,
    BudgetCheck,
    ItemisedSpend,
    PrivacySpend,
    check_charge,
    compose,
    epsilon_delta_to_rho,
    rho_to_epsilon,
    to_epsilon_delta,
)
from disclosure_control.dp.plan import (
    DISPLAY_DELTA,
    MAX_RECORDS,
    RECORD_DISTANCE,
    Preview,
    QueryPlan,
    Statistic,
    plan_query,
)
from disclosure_control.dp.postprocess import nonnegative_integer_counts
from disclosure_control.dp.release import Cell, Release, mean_interval, release
from disclosure_control.dp.snapshot import (
    Snapshot,
    SnapshotError,
    prepare_records,
    remove_stale_images,
)
from disclosure_control.dp.spec import (
    Field,
    Filter,
    Measure,
    QuerySpec,
    QuerySpecError,
    SpendOutOfRange,
    SpendRequest,
    canonical_json,
    parse_spec,
    schema_of,
    validate_spec,
)

__all__ = [
    "DISPLAY_DELTA",
    "MAX_RECORDS",
    "RECORD_DISTANCE",
    "AccountingError",
    "BudgetCheck",
    "Cell",
    "Field",
    "Filter",
    "ItemisedSpend",
    "Measure",
    "PrivacySpend",
    "Preview",
    "QueryPlan",
    "QuerySpec",
    "QuerySpecError",
    "Release",
    "Snapshot",
    "SnapshotError",
    "SpendOutOfRange",
    "SpendRequest",
    "Statistic",
    "canonical_json",
    "check_charge",
    "compose",
    "epsilon_delta_to_rho",
    "mean_interval",
    "nonnegative_integer_counts",
    "parse_spec",
    "plan_query",
    "prepare_records",
    "release",
    "remove_stale_images",
    "rho_to_epsilon",
    "schema_of",
    "to_epsilon_delta",
    "validate_spec",
]
