"""The privacy ledger: one per dataset, in zero-concentrated DP, charged atomically.

Every charge locks the dataset's ledger row and then the researcher's allowance row (always in
that order, so two charges cannot deadlock), compares the exact rational sums with the caps,
and either adds the charge or refuses it having changed nothing. The lock is taken by a write
(``UPDATE``/``INSERT``), so it holds on SQLite, which has no ``SELECT ... FOR UPDATE`` but
serialises writers, as on PostgreSQL, where concurrent charges from several worker processes
queue on the row lock. Spends are kept as exact fractions of the charged floats, so a cap can
never be crossed by rounding, not even by one unit in the last place.

One protocol for queries and releases alike: lock (:func:`lock`, or :func:`lock_dataset` for a
release), :func:`admit` (check and charge), write what the charge pays for with its audit event,
commit, and only then measure, holding no lock. A measurement that fails after the commit
leaves the charge: the records may have been read, and a free second try would measure again.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from disclosure_control.dp import PrivacySpend, to_epsilon_delta
from disclosure_control.dp.plan import RHO_RANGE
from disclosure_control.person import CASE_RECORD, PrivacyUnit
from hub.actors import Actor, authorize
from hub.domain_errors import HubError
from hub.models import PrivacyLedger, ResearcherAllowance, utcnow

DATASET = "ctdc"
"""The one dataset for now: every accepted, not withdrawn case record."""


class BudgetExceeded(HubError):
    """A charge would take a ledger past its cap; nothing was charged."""

    status, slug, title = 409, "privacy-budget-exceeded", "Privacy budget exceeded"


def exact(text: str) -> Fraction:
    """Read an exact spend stored as ``"numerator/denominator"`` (or a decimal).

    :param text: the stored text

    >>> exact("3/4") + exact("0.25")
    Fraction(1, 1)
    """
    return Fraction(text)


def as_text(value: Fraction) -> str:
    """Write an exact spend as ``"numerator/denominator"``.

    :param value: the exact spend

    >>> as_text(Fraction(3, 4))
    '3/4'
    >>> exact(as_text(Fraction(0.1) + Fraction(0.2))) > Fraction(3, 10)
    True
    """
    return f"{value.numerator}/{value.denominator}"


def decimal_text(value: Fraction) -> str:
    """Write an exact amount as the decimal it is, every digit kept.

    Every amount the ledger holds has one: it is a sum of charged floats (binary fractions) and
    settings written as decimals, so its denominator has no prime factor but 2 and 5.

    :param value: the exact amount
    :raises ValueError: for an amount with no finite decimal expansion (e.g. 1/3)

    >>> decimal_text(Fraction("1e-6") + Fraction("1e-8"))
    '0.00000101'
    >>> decimal_text(Fraction(0.5)), decimal_text(Fraction(-3)), decimal_text(Fraction(0))
    ('0.5', '-3', '0')
    >>> decimal_text(Fraction(0.1))
    '0.1000000000000000055511151231257827021181583404541015625'
    """
    rest, places = value.denominator, 0
    twos = fives = 0
    while rest % 2 == 0:
        rest //= 2
        twos += 1
    while rest % 5 == 0:
        rest //= 5
        fives += 1
    if rest != 1:
        raise ValueError(f"{value} has no finite decimal expansion")
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    digits = str(scaled).rjust(places + 1, "0")
    whole, fraction = digits[: len(digits) - places], digits[len(digits) - places :].rstrip("0")
    sign = "-" if value < 0 else ""
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


def amount_json(rho: Fraction, key_delta: Fraction, display_delta: float) -> dict[str, Any]:
    """Serialise an amount of privacy loss: exact decimals, with readable numbers beside them.

    ``rho``, ``key_selection_delta`` and ``delta`` are the doubles nearest the exact amounts
    (so 0.01 reads ``0.01``); the ``*_exact`` strings are the amounts themselves, as the ledger
    compares them. ``delta`` is the display delta plus the key-selection delta, added exactly:
    the display delta is a setting written as a decimal, read back from its shortest spelling.

    :param rho: the amount in rho
    :param key_delta: its key-selection delta
    :param display_delta: the delta at which epsilon is shown

    >>> shown = amount_json(Fraction(1, 4), Fraction("1e-8"), 1e-6)
    >>> shown["delta"], shown["delta_exact"], shown["key_selection_delta"]
    (1.01e-06, '0.00000101', 1e-08)
    """
    delta = Fraction(repr(display_delta)) + key_delta
    epsilon, _ = to_epsilon_delta(PrivacySpend(float(rho), float(key_delta)), display_delta)
    return {
        "rho": float(rho),
        "rho_exact": decimal_text(rho),
        "key_selection_delta": float(key_delta),
        "key_selection_delta_exact": decimal_text(key_delta),
        "epsilon": epsilon,
        "delta": float(delta),
        "delta_exact": decimal_text(delta),
    }


@dataclass(frozen=True)
class BudgetPolicy:
    """The caps of the active release policy (:func:`hub.services.policies.budget_policy`).

    :param dataset_rho: the dataset's total cap in rho
    :param dataset_delta: the dataset's cap on key-selection delta
    :param researcher_rho: each researcher's allowance in rho, within the dataset's cap
    :param researcher_delta: each researcher's allowance of key-selection delta
    :param display_delta: the delta at which epsilon is shown beside rho
    :param query_rho_range: the smallest and largest rho one query may spend
    :param policy_version: the release policy version the caps are from (``None``: settings)
    :param unit: the privacy unit every spend under these caps protects
    """

    dataset_rho: Fraction
    dataset_delta: Fraction
    researcher_rho: Fraction
    researcher_delta: Fraction
    display_delta: float
    query_rho_range: tuple[float, float] = RHO_RANGE
    policy_version: int | None = None
    unit: PrivacyUnit = CASE_RECORD

    @classmethod
    def from_settings(cls, config: Any) -> BudgetPolicy:
        """Build the caps from the hub's (already validated) settings.

        Once a release policy is active its caps govern (:func:`hub.services.policies.
        budget_policy`); the settings' are the defaults of the first policy.

        :param config: a mapping with the ``DP_*`` settings

        >>> policy = BudgetPolicy.from_settings({"DP_DATASET_RHO_CAP": "1.0",
        ...     "DP_DATASET_DELTA_CAP": "1e-7", "DP_RESEARCHER_RHO_ALLOWANCE": "0.1",
        ...     "DP_RESEARCHER_DELTA_ALLOWANCE": "1e-8", "DP_DISPLAY_DELTA": "1e-6"})
        >>> policy.researcher_rho
        Fraction(1, 10)
        """
        return cls(
            dataset_rho=Fraction(config["DP_DATASET_RHO_CAP"]),
            dataset_delta=Fraction(config["DP_DATASET_DELTA_CAP"]),
            researcher_rho=Fraction(config["DP_RESEARCHER_RHO_ALLOWANCE"]),
            researcher_delta=Fraction(config["DP_RESEARCHER_DELTA_ALLOWANCE"]),
            display_delta=float(Fraction(config["DP_DISPLAY_DELTA"])),
            query_rho_range=(
                float(Fraction(config.get("DP_QUERY_RHO_MIN", RHO_RANGE[0]))),
                float(Fraction(config.get("DP_QUERY_RHO_MAX", RHO_RANGE[1]))),
            ),
        )


@dataclass(frozen=True)
class Balance:
    """One ledger's state: its cap, what it has spent (exact) and what is left.

    :param cap_rho: the cap in rho
    :param cap_delta: the cap on key-selection delta
    :param spent_rho: charged so far, in rho
    :param spent_delta: key-selection delta charged so far
    :param charges: how many charges it holds
    """

    cap_rho: Fraction
    cap_delta: Fraction
    spent_rho: Fraction
    spent_delta: Fraction
    charges: int

    @property
    def remaining_rho(self) -> Fraction:
        """Return the rho left (never negative)."""
        return max(self.cap_rho - self.spent_rho, Fraction(0))

    @property
    def remaining_delta(self) -> Fraction:
        """Return the key-selection delta left (never negative)."""
        return max(self.cap_delta - self.spent_delta, Fraction(0))

    def fits(self, charge: PrivacySpend) -> bool:
        """Return True when ``charge`` stays within both caps, compared exactly.

        :param charge: the spend of one query

        >>> Balance(Fraction(3, 10), Fraction(0), Fraction(0.2), Fraction(0), 1).fits(
        ...     PrivacySpend(0.1))
        False
        """
        return (
            self.spent_rho + Fraction(charge.rho) <= self.cap_rho
            and self.spent_delta + Fraction(charge.delta) <= self.cap_delta
        )

    def as_json(self, display_delta: float) -> dict[str, Any]:
        """Serialise the balance with :func:`amount_json`: exact decimals, numbers beside them.

        >>> balance = Balance(Fraction(1), Fraction("1e-7"), Fraction(0), Fraction("1e-9"), 1)
        >>> balance.as_json(1e-6)["remaining"]["delta_exact"]
        '0.000001099'
        """
        shown: dict[str, Any] = {
            name: amount_json(amount, key_delta, display_delta)
            for name, amount, key_delta in (
                ("allowance", self.cap_rho, self.cap_delta),
                ("spent", self.spent_rho, self.spent_delta),
                ("remaining", self.remaining_rho, self.remaining_delta),
            )
        }
        shown["charges"] = self.charges
        return shown


def _insert_missing(session: Session, model: Any, values: dict[str, Any], keys: list[str]) -> None:
    """Insert a row unless one with the same ``keys`` exists (no error, no race)."""
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    session.execute(
        module.insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
    )


def _new_row(**extra: Any) -> dict[str, Any]:
    return {"spent_rho": "0", "spent_delta": "0", "charges": 0, "updated_at": utcnow(), **extra}


def lock_dataset(session: Session, dataset: str = DATASET) -> None:
    """Create the dataset's ledger if new, and lock its row until the transaction ends.

    :param dataset: the dataset's ledger
    """
    _insert_missing(session, PrivacyLedger, _new_row(dataset=dataset), ["dataset"])
    # A write takes the row lock (and SQLite's write lock) whatever the database.
    session.execute(
        update(PrivacyLedger)
        .where(PrivacyLedger.dataset == dataset)
        .values(charges=PrivacyLedger.charges)
    )


def lock(session: Session, principal_id: str, dataset: str = DATASET) -> None:
    """Create the dataset's ledger and the researcher's allowance if new, and lock both rows.

    Holds until the caller's transaction ends. Call it before reading balances for a charge.

    :param principal_id: the researcher
    :param dataset: the dataset's ledger
    """
    lock_dataset(session, dataset)
    _insert_missing(
        session,
        ResearcherAllowance,
        _new_row(dataset=dataset, principal_id=principal_id),
        ["dataset", "principal_id"],
    )
    session.execute(
        update(ResearcherAllowance)
        .where(
            ResearcherAllowance.dataset == dataset,
            ResearcherAllowance.principal_id == principal_id,
        )
        .values(charges=ResearcherAllowance.charges)
    )


def _balance(row: Any, cap_rho: Fraction, cap_delta: Fraction) -> Balance:
    if row is None:
        return Balance(cap_rho, cap_delta, Fraction(0), Fraction(0), 0)
    return Balance(cap_rho, cap_delta, exact(row.spent_rho), exact(row.spent_delta), row.charges)


def dataset_balance(session: Session, policy: BudgetPolicy, dataset: str = DATASET) -> Balance:
    """Return the dataset's balance as stored (zero for a ledger not yet made).

    :param policy: the caps
    :param dataset: the dataset's ledger
    """
    row = session.execute(
        select(PrivacyLedger)
        .where(PrivacyLedger.dataset == dataset)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    return _balance(row, policy.dataset_rho, policy.dataset_delta)


def dataset_spent(session: Session, dataset: str = DATASET) -> tuple[Fraction, Fraction]:
    """Return what the dataset's ledger has charged so far: (rho, key-selection delta), exact.

    :param dataset: the dataset's ledger
    """
    row = session.execute(
        select(PrivacyLedger)
        .where(PrivacyLedger.dataset == dataset)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if row is None:
        return Fraction(0), Fraction(0)
    return exact(row.spent_rho), exact(row.spent_delta)


def balances(
    session: Session, principal_id: str, policy: BudgetPolicy, dataset: str = DATASET
) -> tuple[Balance, Balance]:
    """Return the (dataset, researcher) balances as stored (zero for a ledger not yet made).

    :param principal_id: the researcher
    :param policy: the caps
    :param dataset: the dataset's ledger
    """
    allowance = session.execute(
        select(ResearcherAllowance)
        .where(
            ResearcherAllowance.dataset == dataset,
            ResearcherAllowance.principal_id == principal_id,
        )
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    return (
        dataset_balance(session, policy, dataset),
        _balance(allowance, policy.researcher_rho, policy.researcher_delta),
    )


def refuse_unless_fits(
    charge: PrivacySpend,
    dataset: Balance,
    researcher: Balance | None,
    display_delta: float,
    what: str = "this query",
) -> None:
    """Raise :class:`BudgetExceeded`, saying what is left, if ``charge`` fits either balance not.

    :param charge: what the query costs
    :param dataset: the dataset's balance
    :param researcher: the researcher's balance, or ``None`` for a release (dataset only)
    :param display_delta: the delta at which epsilon is shown
    :param what: what is being charged, as the message names it
    """
    checks = [("the dataset's cap", dataset)]
    if researcher is not None:
        checks.insert(0, ("your allowance", researcher))
    for name, balance in checks:
        if balance.fits(charge):
            continue
        left = amount_json(balance.remaining_rho, balance.remaining_delta, display_delta)
        raise BudgetExceeded(
            f"{what} costs rho={charge.rho!r} (key-selection delta={charge.delta!r}) but "
            f"{name} has only rho={left['rho_exact']} (key-selection delta="
            f"{left['key_selection_delta_exact']}) left, epsilon={left['epsilon']:.4g} at "
            f"delta={left['delta_exact']}; nothing was charged",
            ledger="researcher" if balance is researcher else "dataset",
            requested=amount_json(Fraction(charge.rho), Fraction(charge.delta), display_delta),
            remaining=left,
        )


def admit(
    session: Session,
    principal_id: str | None,
    spend: PrivacySpend,
    policy: BudgetPolicy,
    what: str = "this query",
    dataset: str = DATASET,
) -> None:
    """Check ``spend`` against the locked balances and charge it, or refuse having charged nothing.

    The caller holds the lock (:func:`lock`, or :func:`lock_dataset` for a release) and commits.

    :param principal_id: the researcher, or ``None`` for a release charged to the dataset only
    :param spend: the charge
    :param policy: the caps
    :param what: what is being charged, as a refusal names it
    :param dataset: the dataset's ledger
    :raises BudgetExceeded: if it fits either balance not
    """
    if principal_id is None:
        dataset_left, researcher_left = dataset_balance(session, policy, dataset), None
    else:
        dataset_left, researcher_left = balances(session, principal_id, policy, dataset)
    refuse_unless_fits(spend, dataset_left, researcher_left, policy.display_delta, what)
    charge(session, principal_id, spend, dataset)


def charge(
    session: Session, principal_id: str | None, spend: PrivacySpend, dataset: str = DATASET
) -> None:
    """Add ``spend`` to the (locked) dataset ledger and researcher allowance, exactly.

    The caller has called :func:`lock` (or :func:`lock_dataset` for a release, which charges
    the dataset's ledger alone) and :func:`refuse_unless_fits` in this transaction.

    :param principal_id: the researcher, or ``None`` for a release charged to the dataset only
    :param spend: the charge
    :param dataset: the dataset's ledger
    """
    now = utcnow()
    rows: list[PrivacyLedger | ResearcherAllowance] = [
        session.execute(
            select(PrivacyLedger)
            .where(PrivacyLedger.dataset == dataset)
            .execution_options(populate_existing=True)
        ).scalar_one()
    ]
    if principal_id is not None:
        rows.append(
            session.execute(
                select(ResearcherAllowance)
                .where(
                    ResearcherAllowance.dataset == dataset,
                    ResearcherAllowance.principal_id == principal_id,
                )
                .execution_options(populate_existing=True)
            ).scalar_one()
        )
    for row in rows:
        row.spent_rho = as_text(exact(row.spent_rho) + Fraction(spend.rho))
        row.spent_delta = as_text(exact(row.spent_delta) + Fraction(spend.delta))
        row.charges += 1
        row.updated_at = now
    session.flush()


def dataset_budget(
    session: Session, actor: Actor, policy: BudgetPolicy, dataset: str = DATASET
) -> dict[str, Any]:
    """Return the dataset's ledger: cap, spent and remaining, in exact decimals.

    Those who spend it on releases (``releases:create``: the board, the operator) may read it.

    :param actor: who asks
    :param policy: the caps
    :param dataset: the dataset's ledger
    """
    authorize(actor, "releases:create")
    balance = dataset_balance(session, policy, dataset)
    session.rollback()  # read only
    return {
        "dataset": dataset,
        "unit": "zero-concentrated DP (rho); epsilon shown at delta",
        "display_delta": policy.display_delta,
        "dataset_ledger": balance.as_json(policy.display_delta),
    }
