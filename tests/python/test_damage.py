"""A damaged database is said plainly and loses nothing that can still be read (issue 15, item 1).

The file is damaged the ways disks and crashes do it: a page zeroed, the end torn off, one byte of
one stored event flipped, and a page zeroed while the hub runs. The hub must refuse to start on a
damaged file, report damage found while running on /healthz, and pass over one unreadable event
with a gap at its id instead of stalling every reader."""

import http.client
import json
import os
import re
import signal
import subprocess

import pytest

from conftest import BINARY, Hub

PAGE = 4096


def events(count, marker=None):
    return [
        {"wiki": "MoinMaster", "action": "page_changed", "page": f"Page {n}", "user": "Alice",
         "comment": f"{marker}-{n:05}" if marker else f"edit {n}"}
        for n in range(1, count + 1)
    ]


def filled_hub(tmp_path, count=600, marker=None):
    """A hub with `count` events, stopped cleanly (so the log is folded into events.sqlite)."""
    hub = Hub(tmp_path)
    batch = events(count, marker)
    for start in range(0, count, 100):
        hub.publish(*batch[start:start + 100])
    assert hub.stop() == 0
    return hub, tmp_path / "data" / "events.sqlite"


def refused_start(hub):
    with pytest.raises(AssertionError) as refused:
        hub.start()
    assert hub.process.wait(10) != 0
    return str(refused.value)


def zero_page(path, offset):
    with open(path, "r+b") as file:
        file.seek(offset - offset % PAGE)
        file.write(b"\0" * PAGE)


def page_holding(path, text):
    data = path.read_bytes()
    at = data.find(text.encode())
    assert at > 0, f"{text} not found in {path}"
    return at


def repair(hub):
    """Runs `wikiwire repair`; returns the ids it reports lost."""
    done = subprocess.run([str(BINARY), "repair", "--config", str(hub.config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lost = []
    match = re.search(r"LOST \d+ events, ids ([\d, -]+):", done.stdout)
    for part in (match.group(1).split(", ") if match else []):
        first, _, last = part.partition("-")
        lost.extend(range(int(first), int(last or first) + 1))
    return lost, done.stdout


def assert_repaired(hub, count, lost):
    """The repaired hub serves every event but the lost ones, names those, and ids go on."""
    hub.start()
    page = hub.get("/api/v1/events?since=0&limit=1000")
    assert [event["id"] for event in page["events"]] == [n for n in range(1, count + 1) if n not in lost]
    assert page.get("unreadable", []) == lost
    assert hub.publish(*events(1)) == [count + 1], "no id is handed out twice"
    assert hub.get("/healthz")["status"] == "ok"
    assert hub.stop() == 0


def test_a_zeroed_last_page_is_refused_at_start_and_repaired(tmp_path):
    hub, database = filled_hub(tmp_path)
    zero_page(database, database.stat().st_size - 1)
    log = refused_start(hub)
    assert "damaged" in log and str(database) in log and "Repairing a damaged store" in log, log
    lost, report = repair(hub)
    assert len(lost) < 20, report
    assert any(path.name.startswith("events.sqlite.damaged-") for path in database.parent.iterdir())
    assert_repaired(hub, 600, lost)


def test_a_torn_end_is_refused_at_start_and_repaired(tmp_path):
    hub, database = filled_hub(tmp_path)
    os.truncate(database, database.stat().st_size - 2048)
    log = refused_start(hub)
    assert "damaged" in log and str(database) in log, log
    lost, report = repair(hub)
    assert len(lost) < 20, report
    assert_repaired(hub, 600, lost)


def sse(hub, since, until_id, timeout=20):
    """Reads the SSE stream from `since` until the event with id `until_id`; returns (kind, id, data)."""
    host, port = hub.http.split("://")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    connection.request("GET", f"/api/v1/stream?since={since}")
    response = connection.getresponse()
    assert response.status == 200
    received, kind, ident, data = [], "message", None, None
    while True:
        line = response.readline().decode().rstrip("\n")
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("id:"):
            ident = int(line[3:].strip())
        elif line.startswith("data:"):
            data = json.loads(line[5:].strip())
        elif line == "" and data is not None:
            received.append((kind, ident, data))
            if kind == "message" and ident == until_id:
                connection.close()
                return received
            kind, ident, data = "message", None, None


def test_one_unreadable_event_is_passed_over_with_a_gap(tmp_path):
    hub, database = filled_hub(tmp_path, count=300, marker="ROT")
    # Bit rot inside one stored body: the row stays a valid SQLite record, its JSON does not.
    at = page_holding(database, '"comment":"ROT-00150"')
    with open(database, "r+b") as file:
        file.seek(at + len('"comment"'))
        file.write(b";")
    hub.start()

    page = hub.get("/api/v1/events?since=0&limit=1000")
    assert [event["id"] for event in page["events"]] == [n for n in range(1, 301) if n != 150]
    assert page["unreadable"] == [150]
    status, body = hub.request("GET", "/api/v1/events/150")
    assert status == 500 and b"cannot be read" in body and b"operator" in body, (status, body)
    assert "unreadable" not in hub.get("/api/v1/events?since=150&limit=10")

    seen = sse(hub, since=140, until_id=160)
    assert [(kind, ident) for kind, ident, _ in seen] == (
        [("message", n) for n in range(141, 150)] + [("gap", 150)] + [("message", n) for n in range(151, 161)]
    )
    assert seen[9][2] == {"from": 150, "to": 150}

    # The rest of the store works: the hub is healthy, and new events are stored after it.
    assert hub.get("/healthz")["status"] == "ok"
    assert hub.publish(*events(1)) == [301]
    assert hub.stop() == 0
    assert (tmp_path / "hub.log").read_text().count("a stored event cannot be read") == 1


def test_damage_found_while_running_is_reported_and_said_plainly(tmp_path):
    hub, database = filled_hub(tmp_path, count=600, marker="MID")
    hub.start()
    # No reader has opened the file yet; a page in the middle of the events goes bad under the hub.
    zero_page(database, page_holding(database, "MID-00300"))
    status, body = hub.request("GET", "/api/v1/events?since=0&limit=1000")
    assert status == 500, (status, body)
    error = json.loads(body)["error"]
    assert "damaged" in error and "try again" not in error, error
    status, body = hub.request("GET", "/healthz")
    assert status == 503 and json.loads(body)["status"] == "damaged", (status, body)
    hub.stop(signal.SIGKILL)
    log = refused_start(hub)
    assert "damaged" in log, log
    lost, report = repair(hub)
    assert 300 in lost and 1 <= len(lost) < 20, report
    assert lost == list(range(lost[0], lost[-1] + 1)), "one page: one run of ids"
    assert_repaired(hub, 600, lost)


def test_repair_leaves_a_sound_log_alone(tmp_path):
    hub, database = filled_hub(tmp_path, count=10)
    _, report = repair(hub)
    assert "no damage found" in report
    assert_repaired(hub, 10, [])
