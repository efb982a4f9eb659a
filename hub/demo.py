"""``make demo``: a hub on SQLite, fed the real CTDC data through its own upload API.

Three partner organisations share the CTDC 2021 k-anonymised file (the hotline records go to
one, the case-management records are split deterministically between two); each uploads its
share with the partner toolkit's client over HTTP, exactly as a partner would. The hub then keeps
serving on 127.0.0.1 and prints where to look and the demo credentials.

The portal gets a person for each role (three board members and an admin with their TOTP
secrets, a researcher, a partner's case worker), kept in ``instance/demo-people.json`` beside the
API credentials; the demo prints the portal's address, the release's page and these people.

A re-run reuses what the first run made: the credentials and people kept in ``instance/``
(shown again, never replaced), the uploads (the hub recognises each body and stores nothing
twice), the researcher's answer (re-served free), the synthetic release candidate (no second
charge to the ledger) and the published release.

It ends with a first published release: the governance board asks for a release candidate under
the active policy through ``POST /v1/releases``, a job on the embedded queue (a Huey consumer on
threads of this process) builds and checks it, and two other board members approve it through the
API, which publishes it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pandas as pd
import requests
from apiflask import APIFlask
from sqlalchemy import make_url, select
from sqlalchemy.orm import Session

from contributors.client import HubClient
from contributors.pseudonym import pseudonymise, pseudonymise_column
from hub import create_app, crypto, migrate
from hub.db import session_factory
from hub.serving import make_server, stop_server

CTDC_FILE = (
    Path(__file__).resolve().parents[1].parent / "shared/data/ctdc/ctdc_global_kanon_2021.csv"
)
CREDENTIALS_FILE = "demo-credentials.json"

PARTNERS = {
    "Demo Hotline Partner": "Hotline",
    "Demo Case Management Partner A": "Case Management",
    "Demo Case Management Partner B": "Case Management",
}
ACCOUNTS = [(name, "partner") for name in PARTNERS] + [
    ("Demo Research Institute", "researcher"),
    ("Demo Governance Board", "board"),
    # Two more board members: a release needs two approvals besides its builder's.
    ("Demo Board Member: University", "board"),
    ("Demo Board Member: Survivors' Network", "board"),
]
# Demo-only pseudonym keys: a real partner keeps its own secret key and never shares it.
DEMO_PSEUDONYM_KEY = "demo-only pseudonym key: never use outside the demo"
# Record linkage (issue 16): the two case-management partners hold identifying fields of their
# cases' people (generated, never real names) and share a linkage secret the hub never holds.
DEMO_LINKAGE_SECRET = "demo-only linkage secret the partners share: never use outside"  # noqa: S105
LINKED_PARTNERS = ("Demo Case Management Partner A", "Demo Case Management Partner B")
#: People partner B recorded too (with the typos partners make), of partner A's.
SHARED_PEOPLE = 2000


class DemoStopped(KeyboardInterrupt):
    """Ctrl-C asked the demo to stop; raised where the demo's own code next runs."""


@dataclass(frozen=True)
class Credentials:
    """A demo principal's organisation, role and client credentials."""

    organisation: str
    role: str
    client_id: str
    client_secret: str


def partner_shares(path: Path) -> dict[str, pd.DataFrame]:
    """Split the CTDC file between the demo partners: by Datasource, then row parity."""
    frame = pd.read_csv(path, dtype="string", keep_default_na=False)
    hotline = frame[frame["Datasource"] == "Hotline"]
    case_management = frame[frame["Datasource"] != "Hotline"].reset_index(drop=True)
    return {
        "Demo Hotline Partner": hotline.reset_index(drop=True),
        "Demo Case Management Partner A": case_management.iloc[0::2].reset_index(drop=True),
        "Demo Case Management Partner B": case_management.iloc[1::2].reset_index(drop=True),
    }


def load_credentials(path: Path) -> dict[tuple[str, str], Credentials]:
    """Read the credentials an earlier run wrote, by (organisation, role); none if absent."""
    try:
        rows = json.loads(path.read_text())
        return {(row["organisation"], row["role"]): Credentials(**row) for row in rows}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, KeyError):
        print(f"demo: {path} is not a credentials file the demo wrote; making new credentials")
        return {}


def write_credentials(path: Path, accounts: list[Credentials]) -> None:
    """Write the credentials owner-only, replacing the file whole (never half-written)."""
    write_secrets(path, accounts)


def write_secrets(path: Path, rows: Sequence[Any]) -> None:
    """Write dataclass rows as JSON, owner-only, replacing the file whole (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump([asdict(row) for row in rows], out, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def accepted_by_hub(base: str, creds: Credentials) -> bool:
    """Tell whether the hub at ``base`` still issues a token for these credentials."""
    response = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(creds.client_id, creds.client_secret),
        timeout=30,
    )
    response.close()
    return response.status_code == 200


def ensure_accounts(
    session: Session, stored: Path, still_valid: Callable[[Credentials], bool]
) -> list[Credentials]:
    """Create (or reuse) the demo organisations, principals and client credentials.

    Credentials kept in ``stored`` by an earlier run are reused while ``still_valid`` says the
    hub accepts them; only missing ones are made, and the file is rewritten as each is made.
    """
    from hub.actors import OPERATOR
    from hub.domain_errors import NotFound
    from hub.services import principals

    current = load_credentials(stored)
    for org_name, role in ACCOUNTS:
        previous = current.get((org_name, role))
        if previous is not None and still_valid(previous):
            continue
        try:
            organisation = principals.get_organisation(session, OPERATOR, org_name)
        except NotFound:
            organisation = principals.create_organisation(session, OPERATOR, org_name)
        name = f"{role} system"
        existing = [
            p
            for p in principals.list_principals(session, OPERATOR, organisation.id)
            if p.name == name
        ]
        principal = (
            existing[0]
            if existing
            else principals.create_principal(session, OPERATOR, organisation.id, name, [role])
        )
        client, secret = principals.create_client(session, OPERATOR, principal.id)
        current[(org_name, role)] = Credentials(org_name, role, client.client_id, secret)
        write_credentials(stored, list(current.values()))  # kept the moment it exists
    return [current[account] for account in ACCOUNTS]


def print_credentials(accounts: list[Credentials], stored: Path) -> None:
    """Show the demo credentials (kept in ``stored``, owner-only)."""
    print(f"demo: credentials (kept in {stored}; a re-run reuses them):")
    for creds in accounts:
        line = f"{creds.role:<10} {creds.organisation:<32} {creds.client_id}  {creds.client_secret}"
        print("    " + line, flush=True)


PEOPLE_FILE = "demo-people.json"
#: The portal's demo people: (organisation, role, e-mail address, display name). The board's
#: three members sit in the organisations of the board's three API principals.
PEOPLE = [
    ("Demo Governance Board", "board", "chair@board.demo.example.org", "Demo board chair"),
    (
        "Demo Board Member: University",
        "board",
        "member@university.demo.example.org",
        "Demo board member",
    ),
    (
        "Demo Board Member: Survivors' Network",
        "board",
        "member@survivors.demo.example.org",
        "Demo board member",
    ),
    (
        "Demo Research Institute",
        "researcher",
        "researcher@research.demo.example.org",
        "Demo researcher",
    ),
    ("Demo Hotline Partner", "partner", "caseworker@hotline.demo.example.org", "Demo case worker"),
    ("Demo Hub Operations", "admin", "admin@operations.demo.example.org", "Demo administrator"),
]


@dataclass(frozen=True)
class DemoPerson:
    """A demo person of the portal: their role, sign-in address, password and TOTP secret."""

    organisation: str
    role: str
    email: str
    password: str
    totp_secret: str | None


def load_people(path: Path) -> dict[str, DemoPerson]:
    """Read the demo people an earlier run wrote, by e-mail address; none if absent."""
    try:
        return {row["email"]: DemoPerson(**row) for row in json.loads(path.read_text())}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, KeyError):
        print(f"demo: {path} is not a people file the demo wrote; making new passwords")
        return {}


def _signs_in(session: Session, email: str, password: str) -> bool:
    from hub.domain_errors import Unauthenticated
    from hub.services import people

    try:
        people.authenticate(session, email, password)
    except Unauthenticated:
        return False
    return True


def ensure_people(session: Session, stored: Path) -> list[DemoPerson]:
    """Create (or reuse) a portal person for each role; board members and the admin get TOTP.

    People kept in ``stored`` by an earlier run are reused while their password still signs
    in; a person the file lost gets a new password through a reset link (never a second
    person), and a TOTP secret already set up is kept (a new one is set up with the link).
    The file is rewritten as each is made.
    """
    from datetime import timedelta

    import pyotp

    from hub.actors import OPERATOR
    from hub.domain_errors import NotFound
    from hub.models import Person
    from hub.services import people, principals

    current = load_people(stored)
    for org_name, role, email, name in PEOPLE:
        previous = current.get(email)
        person = session.scalar(select(Person).where(Person.email == email))
        if (
            person is not None
            and previous is not None
            and _signs_in(session, email, previous.password)
        ):
            password = previous.password
        else:
            password = secrets.token_urlsafe(15)
            if person is None:
                try:
                    organisation = principals.get_organisation(session, OPERATOR, org_name)
                except NotFound:
                    organisation = principals.create_organisation(session, OPERATOR, org_name)
                link = people.create_person(
                    session,
                    OPERATOR,
                    organisation.id,
                    name,
                    email,
                    [role],
                    link_lifetime=timedelta(minutes=5),
                )
            else:
                link = people.issue_reset(
                    session, OPERATOR, email, link_lifetime=timedelta(minutes=5)
                )
            # A board member or admin sets up the second factor with the same link.
            enrol = people.new_totp_secret() if people.enrols_second_factor(link.person) else None
            person = people.redeem_link(
                session,
                link.token,
                password,
                totp_secret=enrol,
                totp_code=pyotp.TOTP(enrol).now() if enrol else "",
            )
        secret = person.totp_secret
        current[email] = DemoPerson(org_name, role, email, password, secret)
        write_secrets(stored, list(current.values()))  # kept the moment it exists
    return [current[email] for _, _, email, _ in PEOPLE]


def print_portal(base: str, found: list[DemoPerson], stored: Path, release_id: str | None) -> None:
    """Show the portal's address, the published release's page and the demo people."""
    print(f"  Portal:     {base}/   (sign in at {base}/sign-in)")
    if release_id is not None:
        print(f"  Release:    {base}/releases/{release_id}")
    print(f"  Demo people (kept in {stored}; a re-run reuses them):")
    for person in found:
        factor = f"  TOTP secret {person.totp_secret}" if person.totp_secret else ""
        print(f"    {person.role:<10} {person.email:<40} {person.password}{factor}", flush=True)


def demo_query(base: str, creds: Credentials) -> None:
    """Ask one differentially private question as the demo researcher, over HTTP."""
    token = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(creds.client_id, creds.client_secret),
        timeout=30,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    spec = {"measure": {"kind": "count"}, "group_by": ["gender"], "spend": {"rho": 0.005}}
    response = requests.post(
        f"{base}/v1/queries?nonnegative_counts=true", json=spec, headers=headers, timeout=120
    )
    if response.status_code not in (200, 201):
        print(f"demo: the researcher's query was refused: {response.json().get('detail')}")
        return
    print("demo: researcher's DP count of case records by gender (rho 0.005):")
    for cell in response.json()["cells"]:
        low, high = cell["interval"]
        gender = cell["key"]["gender"] or "(not recorded)"
        print(f"    {gender:<28} {cell['value']:>8}   95% [{low:.0f}, {high:.0f}]")
    budget = requests.get(f"{base}/v1/budget", headers=headers, timeout=30).json()
    left = budget["researcher"]["remaining"]
    print(
        f"demo: the researcher has rho {left['rho']:.4f} left "
        f"(epsilon {left['epsilon']:.2f} at delta {left['delta']:.0e})"
    )


def _token(base: str, creds: Credentials) -> dict[str, str]:
    response = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(creds.client_id, creds.client_secret),
        timeout=30,
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def demo_published_release(
    app: APIFlask, base: str, accounts: list[Credentials], stop: Stopper
) -> str | None:
    """Build a release candidate as a job and have two board members approve it, over HTTP.

    A release published, or a candidate built, by an earlier run is reused (a new one would
    charge the ledger again).

    :returns: the published release's id, or ``None`` if the candidate was blocked or refused.
    """
    from hub.models import ReleaseCandidate
    from hub.services.releases import RELEASE
    from hub.services.snapshot import live_snapshot_id

    published = requests.get(f"{base}/v1/releases", timeout=30).json()
    if published:
        print(f"demo: reusing published release {published[0]['version']} (no new spend)")
        return str(published[0]["id"])
    builder, *approvers = [c for c in accounts if c.role == "board"]
    with session_factory(app)() as session:
        # A candidate of the same records built by an earlier run: a new one would spend again.
        candidate_id = session.scalar(
            select(ReleaseCandidate.id)
            .where(
                ReleaseCandidate.kind == RELEASE,
                ReleaseCandidate.snapshot_id == live_snapshot_id(session),
                ReleaseCandidate.status.in_(("candidate", "blocked")),
            )
            .order_by(ReleaseCandidate.created_at)
        )
    if candidate_id is not None:
        print(f"demo: reusing release candidate {candidate_id} (no new spend)")
    else:
        print("demo: the board asks for a release candidate under the active policy (a job):")
        job = _build_as_job(app, base, builder, stop)
        if job["state"] != "succeeded":
            print(f"demo: the release build failed: {job['error']}")
            return None
        candidate_id = job["result"]["release_candidate"]
    # A fresh token: on a loaded machine the build outlasts the one taken before it.
    candidate = requests.get(
        f"{base}/v1/releases/candidates/{candidate_id}", headers=_token(base, builder), timeout=30
    ).json()
    if candidate["status"] != "candidate":
        print(f"demo: candidate {candidate_id} is {candidate['status']}; failed checks:")
        for result in candidate["checks"]["results"]:
            if not result["passed"]:
                print(f"    {result['check']} ({result['subject']}): {result['reason']}")
        return None
    print(
        f"demo: candidate {candidate_id} passed every check of policy {candidate['policy_version']}"
    )
    release_id = None
    for member in approvers:
        body = {"decision": "approve", "reason_code": "meets_policy", "remark": "demo approval"}
        answer = requests.post(
            f"{base}/v1/releases/candidates/{candidate_id}/votes",
            json=body,
            headers=_token(base, member),
            timeout=300,
        ).json()
        print(f"demo: {member.organisation} approves: {answer.get('state', answer.get('detail'))}")
        release_id = answer.get("release") or release_id
    return release_id


def _build_as_job(app: APIFlask, base: str, builder: Credentials, stop: Stopper) -> dict[str, Any]:
    """Ask for a release over the API and follow its job, run by the embedded queue's consumer."""
    from tqdm import tqdm

    from hub import jobs

    consumer = jobs.InProcessConsumer(app).start()  # Huey's consumer on threads of this process
    try:
        response = requests.post(
            f"{base}/v1/releases", json={"seed": 2021}, headers=_token(base, builder), timeout=60
        )
        if response.status_code != 202:
            return {"state": "failed", "error": response.json().get("detail")}
        location = base + response.headers["Location"]
        with tqdm(unit="step") as bar:
            while True:
                stop.check()
                job: dict[str, Any] = requests.get(
                    location, headers=_token(base, builder), timeout=30
                ).json()
                if job["stage"]:
                    bar.set_description(job["stage"])
                    bar.total = job["progress"]["total"]
                    bar.update(job["progress"]["done"] - bar.n)
                if job["state"] in ("succeeded", "failed"):
                    return job
                stop.requested.wait(1.0)
    finally:
        consumer.stop()


def print_release(app: APIFlask, base: str, release_id: str) -> None:
    """Say where the published release, its files and its data package are."""
    shown = requests.get(f"{base}/v1/releases/{release_id}", timeout=30).json()
    directory = Path(app.instance_path) / app.config["RELEASE_DIRECTORY"] / "published"
    print(
        f"demo: published release {shown['version']} ({release_id}), {len(shown['files'])} files:"
    )
    print(f"    {base}/v1/releases/{release_id}")
    print(f"    {base}/v1/releases/{release_id}/datapackage.json")
    print(f"    on disk: {directory / release_id}")


def demo_synthetic_release(app: APIFlask, records: int, stop: Stopper) -> None:
    """Build a DP synthetic release candidate as the demo board, charged to the ledger once.

    A candidate the demo board built before is reused: a second would charge the ledger again.
    """
    from tqdm import tqdm

    from hub.actors import PrincipalActor
    from hub.models import Organisation, Principal, ReleaseCandidate
    from hub.services import ledger, policies, releases

    directory = Path(app.instance_path) / app.config["RELEASE_DIRECTORY"]
    with session_factory(app)() as session:
        board = (
            session.execute(
                select(Principal)
                .join(Organisation, Organisation.id == Principal.organisation_id)
                .where(
                    Principal.name == "board system", Organisation.name == "Demo Governance Board"
                )
            )
            .scalars()
            .first()
        )
        if board is None:
            raise RuntimeError("the demo makes the board's principal before the release")
        built = session.scalar(
            select(ReleaseCandidate)
            .where(
                ReleaseCandidate.created_by == board.id,
                ReleaseCandidate.kind == releases.SYNTHETIC,
                ReleaseCandidate.status == "candidate",
            )
            .order_by(ReleaseCandidate.created_at)
        )
        if built is not None:
            print(f"demo: reusing the synthetic release candidate {built.id} (no new spend)")
            print(f"demo: its files are in {directory / built.id}")
            return
        request = releases.SyntheticRequest(records=records, epsilon=1.0, delta=1e-6, seed=2021)
        print("demo: the board builds a DP synthetic release candidate (epsilon 1, delta 1e-6):")
        ring = crypto.load_keyring(app)
        if ring is None:
            raise RuntimeError("the demo makes the keyring before loading the data")
        with tqdm(unit="measurement") as bar, stop.deferred():

            def progress(stage: str, done: int, total: int) -> None:
                stop.check()  # between measurements: never inside an OpenDP callback
                bar.total = total
                bar.update(done - bar.n)

            try:
                row = releases.build_synthetic(
                    session,
                    PrincipalActor.with_roles(board),
                    request,
                    keyring=ring,
                    snapshots=app.extensions["ctdhub.snapshots"],
                    policy=policies.budget_policy(
                        policies.active_policy(session, app.config), app.config
                    ),
                    directory=directory,
                    progress=progress,
                )
            except ledger.BudgetExceeded as refusal:
                print(f"demo: the synthetic release was refused: {refusal}")
                return
        candidate_id, report = row.id, row.report or {}
    tvd = report.get("utility", {}).get("tvd", [])
    means = ", ".join(f"{i + 1}-way {part['mean']:.3f}" for i, part in enumerate(tvd))
    print(f"demo: candidate {candidate_id}: mean total-variation distance {means}")
    print(f"demo: its files (table, model, report.html and .md) are in {directory / candidate_id}")


class Stopper:
    """Turn the first Ctrl-C (SIGINT) or SIGTERM into a clean stop, wherever the demo is.

    Normally the signal raises :class:`DemoStopped` in the main thread at once. Inside
    :meth:`deferred` it only sets :attr:`requested`: synthesis runs OpenDP, which calls back into
    Python, and an exception raised inside such a callback is swallowed there and then crashes
    the process (seen: "free(): invalid pointer", exit 134). The synthesis checks
    :meth:`check` between measurements instead.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._raising = True

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: note the stop, and raise unless deferred or already stopping."""
        if self.requested.is_set():
            return  # already stopping: a second Ctrl-C must not break the clean-up
        self.requested.set()
        if self._raising:
            raise DemoStopped

    def check(self) -> None:
        """Raise :class:`DemoStopped` if a stop was asked for."""
        if self.requested.is_set():
            raise DemoStopped

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Inside, a signal only asks for a stop; :meth:`check` acts on it."""
        self._raising = False
        try:
            yield
        finally:
            self._raising = True
        self.check()

    @contextmanager
    def installed(self) -> Iterator[Stopper]:
        """Handle SIGINT and SIGTERM while inside; restore the previous handlers after."""
        previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def load_partner_data(base: str, data: Path, accounts: list[Credentials], stop: Stopper) -> None:
    """Upload each demo partner's share over HTTP; a re-sent share is recognised, not stored."""
    shares = partner_shares(data)
    for creds in accounts:
        if creds.role != "partner":
            continue
        stop.check()
        share = shares[creds.organisation].copy()
        body = linked_upload(creds.organisation, shares)
        if body is None:
            share["caseNo"] = pseudonymise_column(share["caseNo"], DEMO_PSEUDONYM_KEY)
            body = share.to_csv(index=False).encode()
        client = HubClient(base, creds.client_id, creds.client_secret)
        receipt = client.upload(body, media_type="text/csv", progress=True)
        state = "already stored" if receipt.replayed else "stored"
        print(
            f"demo: {creds.organisation}: {receipt.rows_accepted} of {receipt.rows_total} "
            f"records {state} (upload {receipt.id})"
        )


def demo_people(shares: dict[str, pd.DataFrame]) -> dict[str, list[Any]]:
    """Give each case of the linked partners a generated person; B recorded some of A's too.

    Partner B's first :data:`SHARED_PEOPLE` cases are people partner A recorded, written again
    as another partner would (typos, a missing or mistyped birth date); the rest are strangers.
    """
    # The checkout's generator of people (random syllables, never real names); the demo runs
    # from a checkout, as make demo does.
    from bench.linkage_people import duplicates, people

    first, second = (len(shares[name]) for name in LINKED_PARTNERS)
    ours = people(first, seed=16)
    shared = min(SHARED_PEOPLE, first, second)
    theirs = duplicates(ours[:shared], seed=17) + people(second - shared, seed=18)
    return dict(zip(LINKED_PARTNERS, (ours, theirs), strict=True))


def linked_upload(organisation: str, shares: dict[str, pd.DataFrame]) -> bytes | None:
    """Prepare a linked partner's share as its toolkit would, with a linkage encoding per case.

    The share gets its people's names and birth dates (HTCDS person fields); the toolkit's own
    preparation (``ctdhub-contribute prepare --linkage-secret-file``) encodes them under the
    shared linkage secret, drops them and pseudonymises the case numbers. ``None`` for a
    partner that does not link.
    """
    from contributors.cli import prepare_upload

    if organisation not in LINKED_PARTNERS:
        return None
    share = shares[organisation].copy()
    persons = demo_people(shares)[organisation]
    share["prs_FirstName"] = [p.given_name or "" for p in persons]
    share["prs_SecondName"] = [p.family_name or "" for p in persons]
    share["prs_Birthdate"] = [p.birth_date or "" for p in persons]
    prepared = prepare_upload(
        share.to_csv(index=False).encode(),
        filename="cases.csv",
        htcds=False,
        pseudonym_key=DEMO_PSEUDONYM_KEY.encode(),
        linkage_secret=DEMO_LINKAGE_SECRET.encode(),
    )
    encoded = sum(e is not None for e in prepared.encodings or ())
    print(f"demo: {organisation}: {encoded} linkage encodings made on the partner's side")
    return prepared.to_csv()


def demo_forget(base: str, accounts: list[Credentials], data: Path) -> None:
    """Partner A forgets one case (a survivor withdrew consent), one A and B both recorded."""
    creds = next(c for c in accounts if c.organisation == LINKED_PARTNERS[0])
    case = str(partner_shares(data)[creds.organisation]["caseNo"].iloc[0])
    with HubClient(base, creds.client_id, creds.client_secret) as client:
        outcome = client.forget(pseudonymise(case, DEMO_PSEUDONYM_KEY))
    if outcome.repeated:
        print(f"demo: {creds.organisation} forgot one case before: nothing of it is held")
    else:
        print(
            f"demo: {creds.organisation} forgets one case on a survivor's request: "
            f"{outcome.records_removed} record(s) and their linkage encoding removed"
        )


def print_linkage_count(base: str, release_id: str) -> None:
    """Show the release's DP count of people recorded by more than one partner, with its note."""
    stem = "dp/people_in_several_sources"
    package = requests.get(f"{base}/v1/releases/{release_id}/datapackage.json", timeout=30).json()
    note = next(
        (r.get("ctdhub:privacy", {}) for r in package["resources"] if r["path"] == f"{stem}.csv"),
        None,
    )
    if note is None:
        print("demo: the release does not count people across partners (its policy has no count)")
        return
    response = requests.get(f"{base}/v1/releases/{release_id}/files/{stem}.csv", timeout=30)
    row = pd.read_csv(io.StringIO(response.text)).iloc[0]
    print(
        f"demo: people recorded by more than one partner: {row['count']} "
        f"(95% [{row['lower_95']}, {row['upper_95']}]); {note['stated_as']}, "
        f"privacy unit {note['privacy_unit']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the demo; serve until interrupted. Exit 0, 2 on a bad start, 130 on Ctrl-C."""
    from hub.settings import SettingsError

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="set with make demo HOST=...")
    parser.add_argument("--port", type=int, default=5000, help="set with make demo PORT=...")
    parser.add_argument("--data", type=Path, default=CTDC_FILE, help="a CTDC-format CSV file")
    parser.add_argument(
        "--synthetic-records", type=int, default=100_000, help="0 skips the synthetic release"
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        help=f"where the demo keeps its credentials (default: instance/{CREDENTIALS_FILE})",
    )
    parser.add_argument("--no-serve", action="store_true", help="stop after loading the data")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"demo: error: the CTDC file is missing at {args.data}", file=sys.stderr)
        return 2
    try:
        app = create_app()
    except SettingsError as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 2
    # Bind the port before anything is made, so a taken port costs nothing and says what to do.
    try:
        server = make_server(app, args.host, args.port)
    except OSError as error:
        print(
            f"demo: error: cannot serve on {args.host}:{args.port} ({error.strerror}); "
            f"choose a free port with PORT=, e.g. make demo PORT={args.port + 1}",
            file=sys.stderr,
        )
        return 2
    base = f"http://{args.host}:{server.effective_port}"
    stored = args.credentials or Path(app.instance_path) / CREDENTIALS_FILE
    thread = threading.Thread(target=server.run, daemon=True)
    with Stopper().installed() as stop:
        try:
            thread.start()
            prepare_hub(app)
            with session_factory(app)() as session:
                accounts = ensure_accounts(session, stored, lambda c: accepted_by_hub(base, c))
                demo_people = ensure_people(session, stored.parent / PEOPLE_FILE)
            print_credentials(accounts, stored)
            load_partner_data(base, args.data, accounts, stop)
            demo_forget(base, accounts, args.data)
            researcher = next(c for c in accounts if c.role == "researcher")
            demo_query(base, researcher)
            if args.synthetic_records:
                demo_synthetic_release(app, args.synthetic_records, stop)
            release_id = demo_published_release(app, base, accounts, stop)
            print(f"\nctdhub is serving on {base}")
            if release_id is not None:
                print_release(app, base, release_id)
                print_linkage_count(base, release_id)
            print_portal(base, demo_people, stored.parent / PEOPLE_FILE, release_id)
            print(f"  API docs:   {base}/docs   (OpenAPI: {base}/openapi.json)")
            print(f"  Demo credentials: {stored}")
            print(
                f"  Try: curl -u <client_id>:<secret> -d grant_type=client_credentials "
                f"{base}/oauth/token"
            )
            if args.no_serve:
                return 0
            print("  Press Ctrl-C to stop.", flush=True)
            stop.requested.wait()
            raise DemoStopped  # the handler set the flag but its exception was lost
        except DemoStopped:
            print("\ndemo: stopped", file=sys.stderr)
            return 130
        finally:
            stop_server(server)
            thread.join(timeout=10)


def prepare_hub(app: APIFlask) -> None:
    """Migrate the database and make the keyring if there is none."""
    url = app.config["DATABASE_URL"]
    print(f"demo: database {make_url(url).render_as_string(hide_password=True)}")
    migrate.upgrade(url)
    with app.app_context():
        if crypto.load_keyring(app) is None:
            crypto.write_keyring(app, crypto.Keyring.generate())
            print(f"demo: created keyring {crypto.keyring_path(app)}")


if __name__ == "__main__":
    sys.exit(main())
