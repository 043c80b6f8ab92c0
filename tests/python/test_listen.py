"""`wikiwire listen` (SPEC §6): history then live, merged by id, each event exactly once in order,
resuming from its cursor across restarts of itself and of the hub; trust; output forms."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BINARY, DOKU_TOKEN, Hub, free_port, make_certificates


def closed_port():
    """A local port nothing listens on: the hub's HTTP API as seen from behind a firewall."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Listener:
    """`wikiwire listen` writing to a file that survives its restarts."""

    def __init__(self, directory, *arguments):
        self.directory = directory
        self.output = directory / "listen.out"
        self.errors = directory / "listen.err"
        self.arguments = [str(BINARY), "listen", *arguments]
        self.process = None
        self.start()

    def start(self):
        with open(self.output, "ab") as output, open(self.errors, "ab") as errors:
            self.process = subprocess.Popen(self.arguments, stdout=output, stderr=errors)

    def stop(self, sig=signal.SIGTERM):
        self.process.send_signal(sig)
        assert self.process.wait(20) == 0, self.errors.read_text()[-2000:]

    def lines(self):
        return self.output.read_text().splitlines() if self.output.exists() else []

    def wait_subscribed(self, sessions=1, timeout=60):
        """Until it has joined its channel `sessions` times (it logs "subscribed" each time)."""
        deadline = time.monotonic() + timeout
        while self.errors.read_text().count("subscribed") < sessions:
            if time.monotonic() > deadline:
                raise AssertionError(f"not subscribed; errors:\n{self.errors.read_text()[-3000:]}")
            assert self.process.poll() is None, self.errors.read_text()[-3000:]
            time.sleep(0.05)

    def wait_for(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        while len(self.lines()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.lines())} of {count} lines; errors:\n{self.errors.read_text()[-3000:]}")
            assert self.process.poll() is None, self.errors.read_text()[-3000:]
            time.sleep(0.05)


def edit(page, **extra):
    return {"wiki": "MoinMaster", "action": "SAVE", "page": page, "user": "u", **extra}


def test_history_then_live_with_the_hub_found_in_the_topic(hub, tmp_path):
    hub.publish(edit("Old 1"), edit("Old 2"))
    listener = Listener(tmp_path, "--irc", f"irc://127.0.0.1:{hub.irc_port}/#MoinMaster.events",
                        "--state", str(tmp_path / "cursor.json"), "--since", "0", "--format", "json")
    listener.wait_for(2)
    hub.publish(edit("New", comment="é" * 400))  # too long for one packed line: fetched by id
    listener.wait_for(3)
    listener.stop()
    events = [json.loads(line) for line in listener.lines()]
    assert [event["page"] for event in events] == ["Old 1", "Old 2", "New"]
    assert events[2] == hub.event(3)
    assert json.loads((tmp_path / "cursor.json").read_text())["cursor"] == 3


@pytest.mark.parametrize("history", ["http", "irc"])
def test_every_event_exactly_once_in_order_through_restarts_of_listener_and_hub(tmp_path, history):
    """The proof of SPEC §6: 10,000 events at a steady rate while the listener is stopped and
    started again several times and the hub restarts once. With `irc`, the hub's HTTP API cannot
    be reached: the listener catches up with CHATHISTORY over the IRC connection alone."""
    ports = (free_port(), free_port())
    hub = Hub(tmp_path, ports=ports)
    total, batch = 10_000, 10
    published = []

    def publish():
        # 500 events a second, in batches of 10. While the hub is down, retry with the same
        # idempotency keys: nothing is stored twice.
        for start in range(0, total, batch):
            events = [edit(f"Page {n}", key=f"k{n}") for n in range(start, start + batch)]
            while True:
                try:
                    published.extend(hub.publish(*events))
                    break
                except Exception:
                    time.sleep(0.1)
            time.sleep(0.02)

    unreachable = ["--http", f"http://127.0.0.1:{closed_port()}"] if history == "irc" else []
    listener = Listener(tmp_path, "--irc", f"irc://127.0.0.1:{ports[1]}/#MoinMaster.events", *unreachable,
                        "--state", str(tmp_path / "cursor.json"), "--since", "0", "--format", "json")
    publisher = threading.Thread(target=publish)
    publisher.start()
    started = time.monotonic()
    schedule = [(2, "stop"), (3, "start"), (5, "interrupt"), (5.5, "start"), (8, "hub down"), (9, "hub up"),
                (12, "stop"), (13.5, "start"), (15, "stop"), (15.2, "start")]
    try:
        for moment, action in schedule:
            time.sleep(max(0.0, started + moment - time.monotonic()))
            if action == "stop":
                listener.stop(signal.SIGTERM)
            elif action == "interrupt":
                listener.stop(signal.SIGINT)
            elif action == "start":
                listener.start()
            elif action == "hub down":
                assert hub.stop() == 0
            elif action == "hub up":
                hub.start()
        publisher.join()
        listener.wait_for(total, timeout=120)
        listener.stop()
    finally:
        if hub.process.poll() is None:
            hub.stop()
    ids = [json.loads(line)["id"] for line in listener.lines()]
    assert len(published) == total
    assert ids == sorted(set(published)), "every event exactly once, in id order"
    assert len(ids) == total
    if history == "irc":
        assert "catching up over IRC" in listener.errors.read_text()


def test_the_whole_history_over_irc_when_http_cannot_be_reached(hub, tmp_path):
    """`--since 0` with the HTTP API unreachable: every event, in pages of the server's
    CHATHISTORY limit (100 here), then live; a channel's filter is the server's to apply."""
    hub.publish(*[edit(f"Old {n}") for n in range(250)])
    hub.publish({"wiki": "HelpWiki", "action": "SAVE", "page": "Elsewhere", "user": "h"})
    hub.publish(edit("Long", comment="é" * 1500))  # within the event tag, not one packed line
    listener = Listener(tmp_path, "--irc", f"irc://127.0.0.1:{hub.irc_port}/#MoinMaster.events",
                        "--http", f"http://127.0.0.1:{closed_port()}", "--since", "0", "--format", "json")
    listener.wait_for(251)
    hub.publish(edit("New"))
    listener.wait_for(252)
    listener.stop()
    events = [json.loads(line) for line in listener.lines()]
    assert [event["page"] for event in events] == [f"Old {n}" for n in range(250)] + ["Long", "New"]
    assert events[250] == hub.event(252)
    assert "catching up over IRC" in listener.errors.read_text()


def test_only_trusted_speakers_count(hub, tmp_path):
    hub.publish(edit("History"))
    untrusting = Listener(tmp_path, "--irc", f"irc://127.0.0.1:{hub.irc_port}/#MoinMaster.events",
                          "--since", "0", "--trust", "doku", "--format", "json")
    untrusting.wait_for(1)  # history comes from the hub over HTTP
    hub.publish(edit("Live"))
    time.sleep(1.5)
    assert len(untrusting.lines()) == 1, "a line from an untrusted speaker is ignored"
    untrusting.stop()
    trusting_dir = tmp_path / "trusting"
    trusting_dir.mkdir()
    trusting = Listener(trusting_dir, "--irc", f"irc://127.0.0.1:{hub.irc_port}/#MoinMaster.events",
                        "--trust", "moin", "--format", "json")
    trusting.wait_subscribed()  # it starts from now: what is published before it joined is not its
    hub.publish(edit("Trusted"))
    trusting.wait_for(1)
    assert json.loads(trusting.lines()[0])["page"] == "Trusted"
    trusting.stop()


def test_filters_text_output_and_exec(hub, tmp_path):
    hub.publish(edit("Help/Editing", comment="how"), edit("Front"),
                {"wiki": "HelpWiki", "action": "SAVE", "page": "Help/Other", "user": "h"})
    text_dir = tmp_path / "text"
    text_dir.mkdir()
    texts = Listener(text_dir, "--irc", f"irc://127.0.0.1:{hub.irc_port}/#MoinMaster", "--since", "0",
                     "--filter", "page=Help/*")
    texts.wait_for(1)
    # Delivery is in id order: once an event published now is here, "Front" (before it) cannot come.
    hub.publish(edit("Help/Sentinel"))
    texts.wait_for(2)
    texts.stop()
    assert len(texts.lines()) == 2 and "Help/Sentinel" in texts.lines()[1]
    assert texts.lines()[0].endswith("MoinMaster: [[Help/Editing]] page_changed https://master.example/Help/Editing * u * how")
    exec_dir = tmp_path / "exec"
    exec_dir.mkdir()
    record = exec_dir / "record.txt"
    command = f'printf "%s|%s|%s|" "$WIKIWIRE_ID" "$WIKIWIRE_PAGE" "$WIKIWIRE_ACTION" >> {record}; cat >> {record}'
    runner = Listener(exec_dir, "--irc", f"irc://127.0.0.1:{hub.irc_port}/#MoinMaster.events", "--since", "0",
                      "--exec", command, "--state", str(exec_dir / "cursor.json"))
    deadline = time.monotonic() + 30
    while not (record.exists() and record.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline, runner.errors.read_text()
        time.sleep(0.05)
    runner.stop()
    entries = record.read_text().splitlines()
    first_id, first_page, first_action, first_json = entries[0].split("|", 3)
    assert (first_id, first_page, first_action) == ("1", "Help/Editing", "page_changed")
    assert json.loads(first_json) == hub.event(1)
    # The cursor is the last event whose command ran (the sentinel above may be one of them).
    assert json.loads((exec_dir / "cursor.json").read_text())["cursor"] == int(entries[-1].split("|", 1)[0])


def test_a_listener_refuses_what_it_cannot_trust(hub, tmp_path):
    """A channel that does not exist, or a hub that cannot be found, is a clear error."""
    result = subprocess.run([str(BINARY), "listen", "--irc", f"irc://127.0.0.1:{hub.irc_port}/#NoSuchWiki"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "cannot join #NoSuchWiki: 403" in result.stderr
    result = subprocess.run([str(BINARY), "listen", "--irc", "http://wrong"], capture_output=True, text=True, timeout=10)
    assert result.returncode != 0 and "use irc://host" in result.stderr


def test_listen_over_tls_with_a_private_ca(tmp_path):
    ca, certificate, key = make_certificates(tmp_path)
    hub = Hub(tmp_path, irc=f'tls_listen = "127.0.0.1:0"\ntls_cert = "{certificate}"\ntls_key = "{key}"')
    try:
        hub.publish(edit("Secure"))
        listener = Listener(tmp_path, "--irc", f"ircs://127.0.0.1:{hub.ircs_port}/#MoinMaster.events",
                            "--ca", str(ca), "--since", "0", "--format", "json")
        listener.wait_for(1)
        listener.stop()
        assert json.loads(listener.lines()[0])["page"] == "Secure"
        # Without the CA the certificate is not trusted: a clear error, not a silent retry loop.
        result = subprocess.run([str(BINARY), "listen", "--irc", f"ircs://127.0.0.1:{hub.ircs_port}/#MoinMaster.events"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "TLS" in result.stderr, result.stderr
    finally:
        hub.stop()
