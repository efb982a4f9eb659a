"""End-to-end latency of a DP researcher query over HTTP, against plain Polars, same run.

Run: ``.venv/bin/python -m bench.query_bench`` (``--help`` for options). A hub is served by
waitress on a loopback port (in this process, on a fresh SQLite database in a temporary
folder); every timed request is a real HTTP ``POST /v1/queries`` for a 2-way count (gender x
ageBroad, public keys) that goes through the bearer token check, the ledger's lock and exact
cap check, the OpenDP release, the stored answer and the audit event. Each timed fresh query
comes from a different researcher, so none is re-served; the repeated query is the same
researcher asking again, answered from the store. The floor is plain Polars grouping the same
decrypted records in memory.

Two data sets: 1,000,000 generated records, put into the hub's snapshot cache directly as the
decrypted analysis snapshot (uploading a million rows would benchmark ingest, not queries),
and the CTDC file, uploaded through ``POST /v1/uploads`` and decrypted by the hub itself.
The DP snapshot is the hub's default: one Arrow image on tmpfs (``DP_SNAPSHOT_SPILL``), in RAM,
which OpenDP scans by path; never a file on a disk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import requests

from bench.dp_bench import generated_records
from bench.upload_bench import ctdc_upload_body

ROOT = Path(__file__).resolve().parents[1]
SPEC: dict[str, Any] = {
    "measure": {"kind": "count"},
    "group_by": ["gender", "ageBroad"],
    "spend": {"rho": 0.005},
}


def full_records(size: int, seed: int = 5) -> pd.DataFrame:
    """Return ``size`` generated records with every column of the record schema.

    gender and ageBroad follow ``bench.dp_bench``'s CTDC-like mix; the other columns are
    random codes, years and indicators (fillers the query does not read, kept as pandas
    categoricals and booleans so a million rows fit in little memory).
    """
    from hub.services.queries import query_schema

    rng = np.random.default_rng(seed)
    pair = generated_records(size, seed).to_pandas()
    columns: dict[str, Any] = {}
    for name, item in query_schema().items():
        if name in pair.columns:
            # Strings, as the hub holds decrypted upload batches (pandas "string" dtype).
            columns[name] = pair[name].astype("string")
        elif item.kind == "string":
            codes = [str(code) for code in item.domain or ("AAA", "BBB", "CCC")]
            columns[name] = pd.Categorical.from_codes(
                rng.integers(0, len(codes), size), dtype=pd.CategoricalDtype(codes)
            )
        elif item.kind == "integer":
            low, high = item.bounds or (0, 10)
            columns[name] = pd.array(rng.integers(low, high + 1, size), dtype="Int64")
        else:
            columns[name] = pd.array(rng.random(size) < 0.1, dtype="boolean")
    return pd.DataFrame(columns)


class Hub:
    """A hub served over HTTP on a fresh SQLite database, with helpers to make principals."""

    def __init__(self, folder: Path) -> None:
        from hub import create_app, migrate
        from hub.crypto import Keyring
        from hub.serving import make_server

        url = f"sqlite:///{folder / 'hub.sqlite3'}"
        migrate.upgrade(url)
        self.app = create_app(
            {
                "DATABASE_URL": url,
                "KEYRING": Keyring.generate("bench").to_json(),
                "DP_DATASET_RHO_CAP": "100",
                "DP_RESEARCHER_RHO_ALLOWANCE": "1",
            }
        )
        self.server = make_server(self.app, "127.0.0.1", 0, threads=4)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.http = requests.Session()
        self.serial = 0

    def headers(self, roles: list[str]) -> dict[str, str]:
        """Create a principal with ``roles`` and return its bearer header."""
        from hub.actors import OPERATOR
        from hub.db import session_factory
        from hub.services import principals

        self.serial += 1
        with session_factory(self.app)() as session:
            organisation = principals.create_organisation(session, OPERATOR, f"Org {self.serial}")
            principal = principals.create_principal(
                session, OPERATOR, organisation.id, f"system {self.serial}", roles
            )
            client, secret = principals.create_client(session, OPERATOR, principal.id)
            client_id = client.client_id
        token = self.http.post(
            f"{self.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            timeout=30,
        )
        token.raise_for_status()
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def query(self, headers: dict[str, str], expected: int) -> dict[str, Any]:
        """POST the benchmark query and check the status."""
        response = self.http.post(f"{self.url}/v1/queries", json=SPEC, headers=headers, timeout=300)
        if response.status_code != expected:
            raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
        body: dict[str, Any] = response.json()
        return body

    def close(self) -> None:
        """Stop the server and release the database."""
        from hub.serving import stop_server

        stop_server(self.server)
        self.thread.join(timeout=10)
        self.app.extensions["ctdhub.engine"].dispose()


def timed(action: Callable[[], object]) -> float:
    """Return the wall time of one call."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(label: str, hub: Hub, records: pd.DataFrame, repeats: int) -> None:
    """Print medians of the floor, a fresh DP query and a re-served one, with ratios."""
    plain = pl.from_pandas(records[["gender", "ageBroad"]])
    floor = [
        timed(lambda: plain.lazy().group_by("gender", "ageBroad").len().collect())
        for _ in range(repeats + 1)
    ][1:]
    enums = plain.with_columns(
        pl.col(name).cast(pl.Enum(sorted(set(plain[name].drop_nulls()))))
        for name in ("gender", "ageBroad")
    )
    typed = [
        timed(lambda: enums.lazy().group_by("gender", "ageBroad").len().collect())
        for _ in range(repeats + 1)
    ][1:]
    researchers = [hub.headers(["researcher"]) for _ in range(repeats + 1)]
    cold = timed(lambda: hub.query(researchers[0], 201))  # types the snapshot, calibrates
    fresh = [timed(lambda h=h: hub.query(h, 201)) for h in researchers[1:]]  # type: ignore[misc]
    again = [timed(lambda: hub.query(researchers[0], 200)) for _ in range(repeats)]
    floor_median = statistics.median(floor)
    fresh_median = statistics.median(fresh)
    print(
        f"\n{label}: {len(records):,} records, 2-way count gender x ageBroad, median of {repeats}"
    )
    print(
        f"  plain Polars group_by, decrypted string frame   {floor_median * 1000:9.1f} ms  (floor)"
    )
    print(
        f"  plain Polars on the same columns typed as Enum   "
        f"{statistics.median(typed) * 1000:9.1f} ms  x{statistics.median(typed) / floor_median:.2f}"
    )
    print(f"  first query (types snapshot, calibrates) HTTP   {cold * 1000:9.1f} ms")
    print(
        f"  fresh DP query over HTTP, ledger included       {fresh_median * 1000:9.1f} ms  "
        f"x{fresh_median / floor_median:.2f}"
    )
    print(
        f"  repeated query, re-served from the store        "
        f"{statistics.median(again) * 1000:9.1f} ms  (target < 20 ms)"
    )


def main() -> None:
    """Parse options and run the benchmark."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="generated records")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per path")
    parser.add_argument("--no-ctdc", action="store_true", help="skip the CTDC file")
    options = parser.parse_args()

    from hub.services.snapshot import Snapshot, snapshot_id

    with tempfile.TemporaryDirectory(prefix="ctdhub-query-bench-") as folder:
        hub = Hub(Path(folder))
        try:
            records = full_records(options.records)
            # No batch is stored, so the hub's live snapshot is the empty batch set's: seed it.
            hub.app.extensions["ctdhub.snapshots"].put(
                Snapshot(snapshot_id=snapshot_id(()), batch_ids=(), records=records)
            )
            measure("generated", hub, records, options.repeats)
        finally:
            hub.close()
    if options.no_ctdc:
        return
    with tempfile.TemporaryDirectory(prefix="ctdhub-query-bench-") as folder:
        hub = Hub(Path(folder))
        try:
            partner = hub.headers(["partner"])
            start = time.perf_counter()
            upload = hub.http.post(
                f"{hub.url}/v1/uploads",
                data=ctdc_upload_body(),
                headers={**partner, "Content-Type": "text/csv"},
                timeout=600,
            )
            upload.raise_for_status()
            print(f"\nCTDC uploaded through the API in {time.perf_counter() - start:.1f} s")
            from hub.crypto import keyring
            from hub.db import session_factory
            from hub.services.snapshot import analysis_snapshot

            with hub.app.app_context(), session_factory(hub.app)() as session:
                decrypted = analysis_snapshot(
                    session, keyring(hub.app), hub.app.extensions["ctdhub.snapshots"]
                ).records
            measure("CTDC 2021", hub, decrypted, options.repeats)
        finally:
            hub.close()


if __name__ == "__main__":
    main()
