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

import socket
import time
import xmlrpc.client

import pytest

from conftest import BINARY, MOIN_TOKEN, Hub, Raw, free_port, parse

PAGE = 4096


def events(count, marker=None):
    return [
        {"wiki": "MoinMaster", "action": "page_changed", "page": f"Page {n}", "user": "Alice",
         "comment": f"{marker}-{n:05}" if marker else f"edit {n}"}
        for n in range(1, count + 1)
    ]


def filled_hub(tmp_path, count=600, marker=None, extra=""):
    """A hub with `count` events, stopped cleanly (so the log is folded into events.sqlite)."""
    hub = Hub(tmp_path, extra=extra)
    batch = events(count, marker)
    for start in range(0, count, 100):
        hub.publish(*batch[start:start + 100])
    assert hub.stop() == 0
    return hub, tmp_path / "data" / "events.sqlite"


def refused_start(hub):
    with pytest.raises(AssertionError) as refused:
        hub.start()
    assert hub.process.wait(10) != 0
    log = str(refused.value)
    assert "wikiwire repair" in log and ".recover" not in log, log
    return log


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


# An XML-RPC listener for wikis (its bot's XMPP server is down: the API stores all the same) and a
# MediaWiki RCFeed for the publisher `moin`: every way in beside HTTP and IRC.
WRITE_PATHS = f"""
[xmpp]
jid = "bot@xmpp.test.example"
password = "bot-password"
server = "127.0.0.1"
port = {{xmpp_port}}

[xmlrpc]
listen = "127.0.0.1:0"
secret = "xmlrpc-secret-for-damage-tests"

[[rcfeed]]
listen = "127.0.0.1:0"
publisher = "moin"
"""


NOTE = {"action": "page_changed", "subject": "Page changed", "text": "FrontPage was changed", "url_list": []}


def datagram(title):
    return json.dumps({
        "type": "edit", "namespace": 0, "title": title, "comment": "via rcfeed", "timestamp": 1764000000,
        "user": "Alice", "bot": False, "minor": False, "length": {"old": 1, "new": 2},
        "revision": {"old": 1, "new": 2}, "server_url": "https://master.example", "server_name": "master.example",
        "server_script_path": "/w", "wiki": "MoinMaster",
    }).encode()


def irc_publish(hub, comment):
    """Publishes one packed event over IRC as `moin`; returns the first answer naming PRIVMSG."""
    raw = Raw(hub).register("moin", caps=("echo-message",), sasl=("moin", MOIN_TOKEN))
    raw.send(f"PRIVMSG #MoinMaster :wiki=MoinMaster&action=page_changed&page=Irc&user=Bob&comment={comment}")
    line = raw.expect(r"^(@\S+ )?:\S+ (PRIVMSG|FAIL) ")
    raw.close()
    return line


def test_a_damaged_store_refuses_every_write_until_repaired(tmp_path):
    extra = WRITE_PATHS.format(xmpp_port=free_port())
    hub, database = filled_hub(tmp_path, count=600, marker="MID", extra=extra)
    hub.start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)
    # Every way in works while the store is sound.
    assert hub.publish(*events(1)) == [601]
    assert " PRIVMSG " in irc_publish(hub, "sound")
    assert rpc.send_notification("xmlrpc-secret-for-damage-tests", ["alice@xmpp.test.example"], NOTE) is True
    udp.sendto(datagram("Sound"), ("127.0.0.1", hub.rcfeeds[0]))
    deadline = time.monotonic() + 10
    while hub.last_id() < 603 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.last_id() == 603

    # A page goes bad under the hub, and a reader finds it.
    zero_page(database, page_holding(database, "MID-00300"))
    status, _ = hub.request("GET", "/api/v1/events?since=0&limit=1000")
    assert status == 500
    assert hub.request("GET", "/healthz")[0] == 503

    # From now on nothing is acknowledged into the damaged file, by any way in.
    status, body = hub.request("POST", "/api/v1/events", events(1), token=MOIN_TOKEN)
    assert status >= 500 and b"damaged" in body and b"wikiwire repair" in body, (status, body)
    answer = irc_publish(hub, "damaged")
    assert parse(answer)[2] == "FAIL" and "damaged" in answer, answer
    with pytest.raises(xmlrpc.client.Fault) as refused:
        rpc.send_notification("xmlrpc-secret-for-damage-tests", ["alice@xmpp.test.example"], NOTE)
    assert "damaged" in refused.value.faultString, refused.value
    refused_before = hub.metric('wikiwire_rcfeed_datagrams_total{result="refused"}')
    udp.sendto(datagram("Damaged"), ("127.0.0.1", hub.rcfeeds[0]))
    deadline = time.monotonic() + 10
    while hub.metric('wikiwire_rcfeed_datagrams_total{result="refused"}') == refused_before:
        assert time.monotonic() < deadline, "the datagram was neither stored nor refused"
        time.sleep(0.05)
    assert hub.request("GET", "/healthz")[0] == 503
    started = time.monotonic()
    assert hub.stop() == 0
    # Its XMPP server is down: shutdown does not wait out the bot's grace for a session it never had.
    assert time.monotonic() - started < 8

    # Repaired, the hub takes events again after the last acknowledged one.
    refused_start(hub)
    lost, report = repair(hub)
    assert 300 in lost and len(lost) < 20, report
    hub.start()
    assert hub.publish(*events(1)) == [604]
    assert hub.stop() == 0
