"""The policies package stays pure: it imports disclosure_control, never the hub's layers."""

from __future__ import annotations

import subprocess
import sys


def test_importing_policies_loads_no_web_database_or_contributor_code() -> None:
    script = (
        "import sys, policies, policies.board, policies.checks, policies.diff;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    assert "disclosure_control" in loaded
    assert not loaded & {"flask", "apiflask", "sqlalchemy", "hub", "contributors", "werkzeug"}
