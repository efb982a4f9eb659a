"""Fixtures of the policy tests: board members, and policy documents derived from the default."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from hub.services.policies import DEFAULT_POLICY
from tests.conftest import Bearer, MakeClient


@dataclass(frozen=True)
class Member:
    """A principal with a bearer token (a board member, unless made with another role)."""

    principal_id: str
    headers: dict[str, str]


MakeMember = Callable[..., Member]


@pytest.fixture
def make_member(make_client: MakeClient, bearer: Bearer) -> MakeMember:
    """Create a principal of the given roles (the board by default), authenticated."""

    def _make(roles: tuple[str, ...] = ("board",), organisation: str = "Board") -> Member:
        client_id, secret, principal = make_client(organisation, list(roles))
        return Member(principal.id, bearer(client_id, secret))

    return _make


@pytest.fixture
def board(make_member: MakeMember) -> list[Member]:
    """Four board members: one to propose, three to vote."""
    return [make_member() for _ in range(4)]


def policy_text(version: int = 2, *, k: int = 12, cap_rho: str = "1.0") -> str:
    """Return the default policy as version ``version`` with another k and dataset cap."""
    text = DEFAULT_POLICY.read_text("utf-8")
    text, found = re.subn(r"(?m)^version: 1$", f"version: {version}", text)
    assert found == 1
    text, found = re.subn(r"(?m)^  k: 11$", f"  k: {k}", text)
    assert found == 1
    text, found = re.subn(
        r"(?m)^  dataset_cap:\n    rho: 1.0$", f"  dataset_cap:\n    rho: {cap_rho}", text
    )
    assert found == 1
    return text
