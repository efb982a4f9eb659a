"""``make demo``: a hub on SQLite, fed the real CTDC data through its own upload API.

Three partner organisations share the CTDC 2021 k-anonymised file (the hotline records go to
one, the case-management records are split deterministically between two); each uploads its
share with the partner toolkit's client over HTTP, exactly as a partner would. The hub then keeps
serving on 127.0.0.1 and prints where to look and the demo credentials.
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import requests
from apiflask import APIFlask
from sqlalchemy import select
from sqlalchemy.orm import Session

from contributors.client import HubClient
from contributors.pseudonym import pseudonymise_column
from hub import create_app, crypto, migrate
from hub.db import session_factory
from hub.serving import make_server, stop_server

CTDC_FILE = (
    Path(__file__).resolve().parents[1].parent / "shared/data/ctdc/ctdc_global_kanon_2021.csv"
)

PARTNERS = {
    "Demo Hotline Partner": "Hotline",
    "Demo Case Management Partner A": "Case Management",
    "Demo Case Management Partner B": "Case Management",
}
# Demo-only pseudonym keys: a real partner keeps its own secret key and never shares it.
DEMO_PSEUDONYM_KEY = "demo-only pseudonym key: never use outside the demo"


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


def ensure_accounts(session: Session) -> list[Credentials]:
    """Create (or reuse) the demo organisations and principals, with fresh client secrets."""
    from hub.actors import OPERATOR
    from hub.errors import NotFound
    from hub.services import principals

    wanted = [(name, "partner") for name in PARTNERS]
    wanted += [("Demo Research Institute", "researcher"), ("Demo Governance Board", "board")]
    made = []
    for org_name, role in wanted:
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
        made.append(Credentials(org_name, role, client.client_id, secret))
    return made


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


def demo_synthetic_release(app: APIFlask) -> None:
    """Build a DP synthetic release candidate as the demo board, charged to the ledger."""
    from tqdm import tqdm

    from hub.actors import PrincipalActor
    from hub.models import Principal
    from hub.services import ledger, releases

    request = releases.SyntheticRequest(records=100_000, epsilon=1.0, delta=1e-6, seed=2021)
    directory = Path(app.instance_path) / app.config["RELEASE_DIRECTORY"]
    print("demo: the board builds a DP synthetic release candidate (epsilon 1, delta 1e-6):")
    with session_factory(app)() as session, tqdm(unit="measurement") as bar:

        def progress(stage: str, done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        board = (
            session.execute(
                select(Principal).where(Principal.name == "board system").order_by(Principal.id)
            )
            .scalars()
            .first()
        )
        ring = crypto.load_keyring(app)
        if ring is None or board is None:
            raise RuntimeError("the demo makes the keyring and board before loading the data")
        try:
            row = releases.build_synthetic(
                session,
                PrincipalActor.with_roles(board),
                request,
                keyring=ring,
                snapshots=app.extensions["ctdhub.snapshots"],
                policy=ledger.BudgetPolicy.from_settings(app.config),
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


def main(argv: list[str] | None = None) -> int:
    """Run the demo; serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--no-serve", action="store_true", help="stop after loading the data")
    args = parser.parse_args(argv)
    if not CTDC_FILE.exists():
        print(f"demo: the CTDC file is missing at {CTDC_FILE}", file=sys.stderr)
        return 2

    app = create_app()
    url = app.config["DATABASE_URL"]
    print(f"demo: database {url}")
    migrate.upgrade(url)
    with app.app_context():
        if crypto.load_keyring(app) is None:
            crypto.write_keyring(app, crypto.Keyring.generate())
            print(f"demo: created keyring {crypto.keyring_path(app)}")
    with session_factory(app)() as session:
        accounts = ensure_accounts(session)

    server = make_server(app, args.host, args.port)
    base = f"http://{args.host}:{args.port}"
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    shares = partner_shares(CTDC_FILE)
    for creds in accounts:
        if creds.role != "partner":
            continue
        share = shares[creds.organisation].copy()
        share["caseNo"] = pseudonymise_column(share["caseNo"], DEMO_PSEUDONYM_KEY)
        body = share.to_csv(index=False).encode()
        client = HubClient(base, creds.client_id, creds.client_secret)
        receipt = client.upload(body, media_type="text/csv", progress=True)
        state = "already stored" if receipt.replayed else "stored"
        print(
            f"demo: {creds.organisation}: {receipt.rows_accepted} of {receipt.rows_total} "
            f"records {state} (upload {receipt.id})"
        )

    researcher = next(c for c in accounts if c.role == "researcher")
    demo_query(base, researcher)
    demo_synthetic_release(app)

    print(f"\nctdhub is serving on {base}")
    print(f"  API docs:   {base}/docs   (OpenAPI: {base}/openapi.json)")
    print("  Demo credentials (client secrets are shown once; a new pair each demo run):")
    for creds in accounts:
        line = f"{creds.role:<10} {creds.organisation:<32} {creds.client_id}  {creds.client_secret}"
        print("    " + line)
    print(
        f"  Try: curl -u <client_id>:<secret> -d grant_type=client_credentials {base}/oauth/token"
    )
    if args.no_serve:
        stop_server(server)
        return 0
    try:
        thread.join()
    except KeyboardInterrupt:
        stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
