"""``ctdhub serve`` with QUEUE_CONSUMER=in-process: jobs run, nothing forks from a threaded process.

Real processes: gunicorn's master, its forked workers and the job consumer, watched through
/proc. The master must stay single-threaded (a process with running threads forks children
that can inherit held locks), the consumer must be a process of its own, and one Ctrl-C must
end all of them.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import requests
from apiflask import APIFlask

from tests.conftest import MakeClient
from tests.hub_core.processes import BIN, Running, free_port, start
from tests.hub_jobs.conftest import wait_for

COLUMNS = ["gender", "ageBroad", "majorityStatus", "isForcedLabour", "isSexualExploit"]


def children(pid: int) -> list[int]:
    """Return the pids of ``pid``'s living children (from every /proc/<pid>/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended while we looked
            continue
        # The command name (in parentheses) may hold spaces; the parent pid follows it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


#: Threads of the allocator pyarrow and polars bring (jemalloc), not Python's: jemalloc
#: registers fork handlers that take and release its locks around a fork, so they are safe.
ALLOCATOR_THREAD = "jemalloc_bg_thd"


def threads(pid: int) -> int:
    """Return how many threads ``pid`` runs, leaving out the allocator's own."""
    names = [(task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()]
    return sum(name != ALLOCATOR_THREAD for name in names)


def command_line(pid: int) -> list[str]:
    """Return ``pid``'s arguments."""
    return Path(f"/proc/{pid}/cmdline").read_text().rstrip("\0").split("\0")


def alive(pid: int) -> bool:
    """Tell whether ``pid`` still exists (a zombie counts: nobody reaped it)."""
    return Path(f"/proc/{pid}").exists()


def serve(overrides: dict[str, Any], port: int) -> Running:
    """Start ``ctdhub serve`` on the test's hub with the consumer in-process, two workers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTDHUB_")}
    env.update({f"CTDHUB_{k}": str(v) for k, v in overrides.items()})
    env.update(CTDHUB_QUEUE_CONSUMER="in-process", PYTHONUNBUFFERED="1")
    command = [str(BIN / "ctdhub"), "serve", "--port", str(port), "--workers", "2"]
    return start([*command, "--threads", "2"], env)


def end(run: Running, *pids: int) -> None:
    """After a failed test, kill serve and the children it started.

    The consumer has a process group of its own: killing the master alone would leave it.
    """
    pids = (*pids, *children(run.process.pid))
    if run.process.poll() is None:
        run.process.kill()
        run.process.wait()
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def consumer_pid(run: Running) -> int:
    """Read the consumer's pid from serve's output (said before the first worker boots)."""
    run.wait_for("Booting worker")
    said = [line for line in run.lines if "job consumer started (pid " in line]
    assert len(said) == 1, run.lines
    return int(said[0].rsplit("pid ", 1)[1].rstrip(")"))


def token(base: str, client_id: str, secret: str) -> dict[str, str]:
    response = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_serve_runs_jobs_in_a_consumer_process_and_one_ctrl_c_stops_everything(
    app: APIFlask, make_client: MakeClient, accepted: int, hub_overrides: dict[str, Any]
) -> None:
    assert accepted > 0
    cid, secret, _ = make_client("Board", ["board"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = serve(hub_overrides, port)
    ours: list[int] = []
    try:
        run.wait_for("ctdhub serving on")
        master = run.process.pid
        consumer = consumer_pid(run)
        ours = [consumer]
        # The consumer and both workers are up: three children of the master.
        ours = wait_for(lambda: (found := children(master)) and len(found) == 3 and found, "3")
        assert consumer in ours
        wait_for(lambda: command_line(consumer)[-1] == "worker", "the consumer's exec")
        # The consumer's threads (Huey's worker and scheduler, the reaper) are its own; the
        # master, which forks the workers, keeps one thread once the start-up timer of the
        # command's app has ended (the old in-process consumer kept its threads there).
        wait_for(lambda: threads(consumer) > 1, "the consumer's threads")
        wait_for(lambda: threads(master) == 1, "a single-threaded master")
        # Its own process group: a terminal's Ctrl-C reaches it only through the master.
        assert os.getpgid(consumer) != os.getpgid(master)

        # A worker that dies is forked again, from the single-threaded master.
        first, second = (pid for pid in ours if pid != consumer)
        os.kill(first, signal.SIGKILL)
        ours = wait_for(
            lambda: (
                (found := children(master)) and len(found) == 3 and first not in found and found
            ),
            "a new worker",
        )
        (replacement,) = set(ours) - {consumer, second}
        web_workers = [first, second, replacement]

        headers = token(base, cid, secret)
        body = {"records": 200, "rho": 0.05, "columns": COLUMNS, "seed": 5}
        response = requests.post(
            f"{base}/v1/releases/synthetic", json=body, headers=headers, timeout=60
        )
        assert response.status_code == 202, response.text
        location = base + response.headers["Location"]

        def finished() -> dict[str, Any] | None:
            shown: dict[str, Any] = requests.get(location, headers=headers, timeout=60).json()
            return shown if shown["state"] in {"succeeded", "failed"} else None

        shown = wait_for(finished, "the job to finish")
        assert shown["state"] == "succeeded", shown
        assert shown["charged"] is True and shown["attempts"] == 1
        assert threads(master) == 1

        run.process.send_signal(signal.SIGINT)
        assert run.finish() == 0
    except BaseException:
        end(run, *ours)
        raise
    assert run.lines[-1] == "ctdhub stopped"
    assert any(f"job consumer (pid {consumer}) exited with status 0" in line for line in run.lines)
    # The master checks it runs no other thread whenever it forks a worker.
    assert not any("forking a worker while other threads run" in line for line in run.lines)
    for pid in (master, consumer, *web_workers):
        assert not alive(pid), f"pid {pid} outlived serve"


def test_a_consumer_that_dies_is_reported_and_stops_the_hub(
    app: APIFlask, hub_overrides: dict[str, Any]
) -> None:
    port = free_port()
    run = serve(hub_overrides, port)
    ours: list[int] = []
    try:
        consumer = consumer_pid(run)
        ours = [consumer]
        master = run.process.pid
        wait_for(lambda: command_line(consumer)[-1] == "worker", "the consumer's exec")
        ours = wait_for(lambda: (found := children(master)) and len(found) == 3 and found, "3")
        os.kill(consumer, signal.SIGKILL)
        assert run.finish() == 1
    except BaseException:
        end(run, *ours)
        raise
    assert any(
        f"job consumer (pid {consumer}) ended by SIGKILL; stopping the hub" in line
        for line in run.lines
    ), run.lines[-10:]
    for pid in (master, *ours):
        assert not alive(pid), f"pid {pid} outlived serve"
