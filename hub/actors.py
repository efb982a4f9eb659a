"""Who acts: the scopes and roles of the hub, the actors services are handed, and ``authorize``.

Every service takes an explicit actor and calls :func:`authorize` before it reads or changes
anything, like CKAN's ``check_access``. An actor is either a principal with the scopes it acts
under (its access token's, in a request) or a named system actor (the operator at the local
command line, a job) that its caller passes on purpose, as CKAN's ``ignore_auth`` must be set on
purpose. No missing actor ever means "allowed": :func:`authorize` refuses ``None``. Nothing here
knows HTTP, so services, jobs and the command line share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from hub.domain_errors import InvalidInput, NotAuthorized
from hub.models import Principal

#: Every scope the hub knows, with the description shown in the OpenAPI document.
SCOPES: dict[str, str] = {
    "records:write": "Upload and withdraw your organisation's case records",
    "records:read": "Read your organisation's upload receipts and validation reports",
    "queries:run": "Run differentially private queries within your allowance",
    "releases:read": "Read published releases",
    "releases:candidates:read": (
        "Read release candidates and their reports (computed from the real records: board only)"
    ),
    "releases:create": "Build release candidates (DP synthetic data) on the dataset's ledger",
    "policies:read": "Read release policies",
    "policies:write": "Draft and revise release policies",
    "policies:approve": "Approve a release policy (board quorum)",
    "releases:approve": "Approve a release candidate for publication (board quorum)",
    "admin:organisations": "Create and list organisations",
    "admin:principals": "Create, list and disable principals",
    "admin:clients": "Create, rotate, revoke and list OAuth clients; introspect any token",
    "admin:keys": "Rotate key-encryption keys",
}

#: What each role lets its principal do. A client holds a subset of its principal's scopes.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "partner": frozenset({"records:write", "records:read"}),
    "researcher": frozenset({"queries:run", "releases:read"}),
    "board": frozenset(
        {
            "policies:read",
            "policies:write",
            "policies:approve",
            "releases:read",
            "releases:candidates:read",
            "releases:create",
            "releases:approve",
        }
    ),
    "admin": frozenset({"admin:organisations", "admin:principals", "admin:clients", "admin:keys"}),
}


# --- scopes and roles -------------------------------------------------------------------------


def parse_roles(roles: Iterable[str]) -> list[str]:
    """Check role names and return them deduplicated, in the order given.

    :param roles: role names, e.g. ``["partner"]``.
    :raises hub.domain_errors.InvalidInput: if there is none or one is unknown.

    >>> parse_roles(["partner", "researcher", "partner"])
    ['partner', 'researcher']
    >>> parse_roles(["curator"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hub.domain_errors.InvalidInput: unknown role 'curator'; known roles: admin, board, partner, ...
    """
    unique = list(dict.fromkeys(r.strip() for r in roles if r.strip()))
    if not unique:
        raise InvalidInput("a principal needs at least one role; known roles: " + _known_roles())
    for role in unique:
        if role not in ROLE_SCOPES:
            raise InvalidInput(f"unknown role {role!r}; known roles: " + _known_roles())
    return unique


def _known_roles() -> str:
    return ", ".join(sorted(ROLE_SCOPES))


def scopes_for_roles(roles: Iterable[str]) -> frozenset[str]:
    """Return the scopes that the given roles grant together (unknown roles grant nothing).

    :param roles: role names, e.g. ``"partner admin".split()``.

    >>> sorted(scopes_for_roles(["partner"]))
    ['records:read', 'records:write']
    """
    granted: set[str] = set()
    for role in roles:
        granted |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(granted)


def principal_scopes(principal: Principal) -> frozenset[str]:
    """Return the scopes a principal's roles grant it."""
    return scopes_for_roles(principal.roles.split())


def parse_scopes(scopes: Iterable[str]) -> list[str]:
    """Check scope names and return them deduplicated and sorted.

    :param scopes: scope names; a space-separated string counts as several.
    :raises hub.domain_errors.InvalidInput: if a scope is unknown.

    >>> parse_scopes(["records:write records:read", "records:write"])
    ['records:read', 'records:write']
    >>> parse_scopes(["records:delete"])
    Traceback (most recent call last):
    ...
    hub.domain_errors.InvalidInput: unknown scope 'records:delete'; see hub.actors.SCOPES
    """
    names = sorted({name for item in scopes for name in item.split()})
    for name in names:
        if name not in SCOPES:
            raise InvalidInput(f"unknown scope {name!r}; see hub.actors.SCOPES")
    return names


# --- actors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrincipalActor:
    """A principal acting under some scopes: in a request, those its access token carries.

    :param principal: the principal, with its roles.
    :param scopes: the scopes it acts under; :func:`authorize` also requires its roles to grant
        each one, so a scope its roles no longer grant is worth nothing.
    """

    principal: Principal
    scopes: frozenset[str]

    @classmethod
    def with_roles(cls, principal: Principal) -> PrincipalActor:
        """Return ``principal`` acting with every scope its roles grant (no token narrows it)."""
        return cls(principal, principal_scopes(principal))

    @property
    def id(self) -> str:
        """Return the principal's id."""
        return self.principal.id

    @property
    def organisation_id(self) -> str:
        """Return the id of the organisation the principal acts for."""
        return self.principal.organisation_id

    def __str__(self) -> str:
        return f"principal {self.principal.id}"


@dataclass(frozen=True)
class SystemActor:
    """The hub acting by itself: its operator at the local command line, or a named job.

    :param name: who it is, as the audit trail records it (e.g. ``operator``).
    :param scopes: what it may do; a job names only the scopes its work needs.
    """

    name: str
    scopes: frozenset[str]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.scopes) - set(SCOPES))
        if not self.name or unknown:
            raise ValueError(f"a system actor needs a name and known scopes; unknown: {unknown}")

    def __str__(self) -> str:
        return f"system actor {self.name!r}"


Actor: TypeAlias = PrincipalActor | SystemActor

#: The hub's operator at the local admin command line: whoever can run ``ctdhub`` can already
#: read the hub's configuration and keyring, so it holds every scope. Commands pass it on purpose.
OPERATOR = SystemActor("operator", frozenset(SCOPES))


def authorize(actor: Actor | None, scope: str) -> None:
    """Check that ``actor`` may act under ``scope``; services call this before anything else.

    A principal needs a role granting the scope, an enabled account and the scope among those
    it acts under (its access token's). A system actor needs the scope among its own. ``None``,
    or anything that is not an actor, is refused: there is no default actor.

    :param actor: who acts.
    :param scope: a scope of :data:`SCOPES`.
    :raises hub.domain_errors.NotAuthorized: naming what is missing.
    :raises ValueError: for a scope the hub does not know (a programming error).

    >>> authorize(OPERATOR, "admin:keys")
    >>> authorize(None, "admin:keys")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hub.domain_errors.NotAuthorized: no actor was given: a service acts only for a principal ...
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    if actor is None:
        raise NotAuthorized(
            "no actor was given: a service acts only for a principal or a named system actor "
            "passed on purpose"
        )
    if isinstance(actor, SystemActor):
        if scope not in actor.scopes:
            raise NotAuthorized(f"{actor} does not hold scope {scope!r}")
        return
    if not isinstance(actor, PrincipalActor):
        raise NotAuthorized(f"a {type(actor).__name__} is not an actor; pass a PrincipalActor")
    principal = actor.principal
    if principal.disabled_at is not None:
        raise NotAuthorized(f"principal {principal.id} is disabled")
    if scope not in principal_scopes(principal):
        raise NotAuthorized(f"principal {principal.id} has no role granting scope {scope!r}")
    if scope not in actor.scopes:
        raise NotAuthorized(f"the access token does not carry scope {scope!r}")


def acting_principal(actor: Actor | None, scope: str) -> PrincipalActor:
    """Authorize ``actor`` and require it to be a principal (for work done in its own name).

    Uploads belong to the uploading partner's organisation and allowances to one researcher,
    so a system actor cannot upload or query.

    :raises hub.domain_errors.NotAuthorized: if it may not, or is not a principal.
    """
    authorize(actor, scope)
    if not isinstance(actor, PrincipalActor):
        raise NotAuthorized(f"{actor} cannot act under {scope!r}: it needs a principal's own name")
    return actor
