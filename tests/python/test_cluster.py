"""wikiwire as a cluster (SPEC §1, §8): hub nodes sharing one log in a real three-node NATS
JetStream cluster, while NATS servers and hub nodes are killed by their PIDs. What clients saw is
checked: every acknowledged event exactly once with its body, in id order, on every node's SSE
and IRC channel; refusals only as 503 with Retry-After, never a hang.

Failover times are written to target/test-artifacts/cluster-failover.txt (figures, not
assertions: the only bounds asserted are "never hangs" and "recovers")."""

import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import BINARY, MOIN_TOKEN, Hub, Raw, free_port, wait_for
import nats_cluster
from nats_cluster import nats  # noqa: F401 (a fixture)

# A publish may retry inside the hub for its publish timeout (10 s) plus one attempt (3 s).
NEVER_HANGS = 20


def report(line):
    nats_cluster.report(line, "cluster-failover.txt")


def start_hub(tmp_path, cluster, node, extra="", ports=None):
    directory = tmp_path / node
    directory.mkdir(exist_ok=True)
    return Hub(directory, extra=cluster.toml_section(node) + extra, ports=ports)


def post(hub_http, events, timeout=30):
    """(status, body, headers, seconds) of one publish."""
    request = urllib.request.Request(
        hub_http + "/api/v1/events", data=json.dumps(events).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {MOIN_TOKEN}"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            headers = {name.lower(): value for name, value in response.headers.items()}
            return response.status, json.loads(response.read()), headers, time.monotonic() - started
    except urllib.error.HTTPError as error:
        headers = {name.lower(): value for name, value in error.headers.items()}
        return error.code, json.loads(error.read() or b"{}"), headers, time.monotonic() - started


class Publisher(threading.Thread):
    """Publishes one event per request, as a wiki does; every other event has a key. A keyed
    event refused with 503 is sent again until acknowledged (that is what keys are for); a keyless
    one is not (its page name then appears at most once)."""

    def __init__(self, hub, name, pause=0.02):
        super().__init__(daemon=True)
        self.hub_http, self.name, self.pause = hub.http, name, pause
        self.acked = {}  # page -> id
        self.ack_times = []
        self.refused = 0
        self.unexpected = []
        self.slowest = 0.0
        self.stopping = threading.Event()

    def run(self):
        number = 0
        while not self.stopping.is_set():
            page = f"{self.name}-{number}"
            event = {"wiki": "MoinMaster", "action": "SAVE", "page": page, "user": self.name}
            if number % 2 == 0:
                event["key"] = page
            try:
                status, body, headers, seconds = post(self.hub_http, [event])
            except (OSError, http.client.HTTPException) as error:
                self.unexpected.append(("no answer", repr(error)))
                number += 1
                continue
            self.slowest = max(self.slowest, seconds)
            # 200 with `duplicates`: a keyed event that an earlier, refused attempt had stored.
            if status in (200, 201):
                self.acked[page] = body["ids"][0]
                self.ack_times.append(time.monotonic())
                number += 1
            elif status == 503 and "retry-after" in headers:
                self.refused += 1
                if "key" not in event:
                    number += 1
                time.sleep(0.2)
            else:
                self.unexpected.append((status, body))
                number += 1
            time.sleep(self.pause)

    def stop(self):
        self.stopping.set()
        self.join(NEVER_HANGS + 10)

    def longest_pause(self, after):
        times = [after] + [moment for moment in self.ack_times if moment >= after]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


class SseFollower(threading.Thread):
    """An SSE client that resumes with Last-Event-ID, on the first of `bases` that answers."""

    def __init__(self, bases, since=0):
        super().__init__(daemon=True)
        self.bases = list(bases)
        self.since = since
        self.ids = []
        self.gaps = []
        self.reconnects = 0
        self.stopping = threading.Event()
        self.start()

    def run(self):
        base_index = 0
        last = None
        while not self.stopping.is_set():
            base = self.bases[base_index % len(self.bases)]
            host, port = base.split("://", 1)[1].split(":")
            try:
                connection = http.client.HTTPConnection(host, int(port), timeout=5)
                headers = {"Accept": "text/event-stream"}
                if last is not None:
                    headers["Last-Event-ID"] = str(last)
                connection.request("GET", f"/api/v1/stream?since={self.since}", headers=headers)
                response = connection.getresponse()
                if response.status != 200:
                    raise OSError(f"status {response.status}")
                kind, event_id = "message", None
                while not self.stopping.is_set():
                    line = response.fp.readline()
                    if not line:
                        raise OSError("stream ended")
                    line = line.decode().rstrip("\n")
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("id:"):
                        event_id = int(line[3:].strip())
                    elif line.startswith("data:") and kind == "gap":
                        self.gaps.append(json.loads(line[5:]))
                    elif line == "":
                        if event_id is not None:
                            if kind != "gap":
                                self.ids.append(event_id)
                            last = event_id
                        kind, event_id = "message", None
            except (OSError, http.client.HTTPException, ValueError):
                if self.stopping.is_set():
                    return
                self.reconnects += 1
                base_index += 1
                time.sleep(0.2)

    def wait_for(self, last_id, timeout=60):
        wait_for(lambda: self.ids and self.ids[-1] >= last_id, timeout, f"SSE up to {last_id} (have {self.ids[-3:]})")

    def stop(self):
        self.stopping.set()


class IrcFollower(threading.Thread):
    """A listener in a node's `#MoinMaster.events`, collecting the ids of the packed lines."""

    def __init__(self, hub):
        super().__init__(daemon=True)
        self.client = Raw(hub).register(f"watch{free_port() % 10000}")
        self.client.send("JOIN #MoinMaster.events")
        self.client.expect(r" 366 ")
        self.ids = []
        self.stopping = threading.Event()
        self.start()

    def run(self):
        while not self.stopping.is_set():
            line = self.client.read_line(0.5)
            if line is None:
                if self.client.closed:
                    return
                continue
            if " PRIVMSG #MoinMaster.events :id=" in line:
                self.ids.append(int(line.split(" :id=", 1)[1].split("&", 1)[0]))

    def wait_for(self, last_id, timeout=60):
        wait_for(lambda: self.ids and self.ids[-1] >= last_id, timeout, f"IRC up to {last_id}")

    def stop(self):
        self.stopping.set()
        self.join(5)
        self.client.close()


def history(hub_http):
    """Every event a node serves, oldest first."""
    events, since = [], 0
    while True:
        with urllib.request.urlopen(f"{hub_http}/api/v1/events?since={since}&limit=1000", timeout=10) as response:
            page = json.loads(response.read())
        events.extend(page["events"])
        if page.get("next") is None:
            return events
        since = page["next"]


def health(hub):
    try:
        with urllib.request.urlopen(hub.http + "/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError as error:
        return None, {"error": repr(error)}


def check_log(hubs, publishers, followers):
    """Every acknowledged event exactly once with its body; ids contiguous; the same history on
    every node; every follower saw every id once, in order."""
    last = max(history(hubs[0].http)[-1]["id"], 0)
    for hub in hubs:
        wait_for(lambda: health(hub)[1].get("last_id", 0) >= last, 30, f"{hub.http} applied {last}")
    logs = [history(hub.http) for hub in hubs]
    for log in logs[1:]:
        assert log == logs[0], "every node serves the same history"
    log = logs[0]
    ids = [event["id"] for event in log]
    assert ids == list(range(1, len(ids) + 1)), "ids are contiguous from 1"
    by_page = {}
    for event in log:
        by_page.setdefault(event["page"], []).append(event)
    for publisher in publishers:
        assert not publisher.unexpected, publisher.unexpected[:5]
        assert publisher.slowest < NEVER_HANGS, f"a publish took {publisher.slowest:.1f}s"
        for page, event_id in publisher.acked.items():
            stored = by_page.get(page, [])
            assert len(stored) == 1, (page, stored)
            assert stored[0]["id"] == event_id and stored[0]["user"] == publisher.name
    for follower in followers:
        follower.wait_for(ids[-1])
        assert follower.ids == ids[: len(follower.ids)] and len(follower.ids) == len(ids), (
            f"{type(follower).__name__}: {len(follower.ids)} ids, expected {len(ids)}"
        )
    return log


def run_failure(tmp_path, nats, name, failure, recover, during=8.0):
    """Two hub nodes take publishes; SSE and IRC followers on both; `failure()` while they run,
    `recover()` after `during` seconds; then everything is checked."""
    hubs = [start_hub(tmp_path, nats, node) for node in ("a", "b")]
    followers = [SseFollower([hub.http]) for hub in hubs] + [IrcFollower(hub) for hub in hubs]
    publishers = [Publisher(hub, f"pub-{node}") for hub, node in zip(hubs, "ab")]
    try:
        for publisher in publishers:
            publisher.start()
        wait_for(lambda: all(len(p.acked) >= 20 for p in publishers), 30,
                   f"publishing under way: {[(len(p.acked), p.refused, p.unexpected[:2]) for p in publishers]}")
        failed_at = time.monotonic()
        failure()
        time.sleep(during)
        recover(hubs)
        wait_for(lambda: all(p.ack_times and p.ack_times[-1] > time.monotonic() - 1 for p in publishers), 60,
                   "publishing again on every node")
        time.sleep(1)
        for publisher in publishers:
            publisher.stop()
        log = check_log(hubs, publishers, followers)
        outage = max(publisher.longest_pause(failed_at) for publisher in publishers)
        refused = sum(publisher.refused for publisher in publishers)
        report(f"{name}: {len(log)} events, longest pause between acknowledgements {outage:.1f}s, "
               f"{refused} publishes refused with 503")
        return hubs, log
    finally:
        for publisher in publishers:
            publisher.stopping.set()
        for follower in followers:
            follower.stop()
        for hub in hubs:
            hub.stop()


def test_kill_9_of_the_stream_leader_loses_nothing(tmp_path, nats):
    leader = {}

    def kill():
        leader["index"] = nats.wait_stream_leader()
        nats.kill9(leader["index"])

    run_failure(tmp_path, nats, "kill -9 of the stream leader", kill, lambda hubs: nats.restart(leader["index"]))


def test_a_partitioned_nats_node_loses_nothing(tmp_path, nats):
    leader = {}

    def freeze():
        leader["index"] = nats.wait_stream_leader()
        nats.stop(leader["index"])

    run_failure(tmp_path, nats, "SIGSTOP of the stream leader for 20 s", freeze,
                lambda hubs: nats.cont(leader["index"]), during=20)


def test_all_nats_nodes_killed_and_back_hubs_recover_without_restart(tmp_path, nats):
    def kill_all():
        for index in range(3):
            nats.kill9(index)

    def restart_all(hubs):
        # The hubs stay up, and say they are not ready while NATS is gone.
        for hub in hubs:
            status, body = health(hub)
            assert status == 503, body
        for index in range(3):
            nats.start(index)
        for index in range(3):
            nats.wait_healthy(index)
        for hub in hubs:
            wait_for(lambda: health(hub)[0] == 200, 60, "the node ready again")

    run_failure(tmp_path, nats, "kill -9 of all three NATS servers, back after 5 s", kill_all, restart_all, during=5)


class Balancer(threading.Thread):
    """A TCP load balancer in front of the hub nodes (as an operator runs one): each connection
    goes to the first backend that accepts it. `cut()` resets every connection through it."""

    def __init__(self, backends):
        super().__init__(daemon=True)
        self.backends = backends
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self.lock = threading.Lock()
        self.start()

    def run(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            for port in self.backends:
                try:
                    upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
                    upstream.settimeout(None)
                    break
                except OSError:
                    continue
            else:
                client.close()
                continue
            with self.lock:
                self.connections.append((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def pipe(source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        """Resets every connection through the balancer (both ends see a reset, not a close);
        returns how many there were."""
        with self.lock:
            connections, self.connections = self.connections, []
        for pair in connections:
            for end in pair:
                try:
                    end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    end.close()
                except OSError:
                    pass
        return len(connections)

    def close(self):
        self.listener.close()


def test_clients_of_a_killed_hub_node_move_to_another_exactly_once(tmp_path, nats):
    hubs = [start_hub(tmp_path, nats, node) for node in ("a", "b")]
    irc = Balancer([hub.irc_port for hub in hubs])
    web = Balancer([int(hub.http.rsplit(":", 1)[1]) for hub in hubs])
    sse = SseFollower([f"http://127.0.0.1:{web.port}"])
    listen_dir = tmp_path / "listen"
    listen_dir.mkdir()
    output = open(listen_dir / "out", "ab")
    errors = open(listen_dir / "err", "ab")
    listener = __import__("subprocess").Popen(
        [str(BINARY), "listen", "--irc", f"irc://127.0.0.1:{irc.port}/#MoinMaster.events",
         "--http", f"http://127.0.0.1:{web.port}", "--state", str(listen_dir / "cursor"), "--since", "0",
         "--format", "json"], stdout=output, stderr=errors)
    publisher = Publisher(hubs[1], "pub-b")
    try:
        publisher.start()
        wait_for(lambda: len(publisher.acked) >= 30, 30, "publishing under way")
        wait_for(lambda: len(sse.ids) >= 20, 30, "the SSE client following node a")
        killed_at = time.monotonic()
        hubs[0].stop(signal.SIGKILL)
        wait_for(lambda: len(publisher.acked) >= 100, 60, "more events after the kill")
        publisher.stop()
        last = max(publisher.acked.values())
        sse.wait_for(last)
        moved = time.monotonic() - killed_at

        def listened():
            lines = (listen_dir / "out").read_text().splitlines()
            return [json.loads(line)["id"] for line in lines]

        wait_for(lambda: listened() and listened()[-1] >= last, 60, "wikiwire listen caught up")
        expected = list(range(1, last + 1))
        assert sse.ids == expected, "SSE: every event once, in order, across the move"
        assert listened() == expected, "wikiwire listen: every event once, in order, across the move"
        assert sse.reconnects >= 1
        report(f"kill -9 of a hub node: SSE and `wikiwire listen` moved to the other node, {last} events "
               f"each once; caught up {moved:.1f}s after the kill")
    finally:
        publisher.stopping.set()
        listener.terminate()
        listener.wait(10)
        sse.stop()
        irc.close()
        web.close()
        for hub in hubs[1:]:
            hub.stop()


def test_a_node_that_lost_its_replica_rebuilds_before_it_is_ready(tmp_path, nats):
    hubs = [start_hub(tmp_path, nats, node) for node in ("a", "b")]
    batch = [{"wiki": "MoinMaster", "action": "SAVE", "page": f"P{n}", "user": "u", "comment": "x" * 200}
             for n in range(1000)]
    for round_ in range(20):
        status, body, _, _ = post(hubs[0].http, batch)
        assert status == 201, body
    hubs[1].stop()
    (tmp_path / "b" / "data" / "replica.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        path = tmp_path / "b" / "data" / f"replica.sqlite{suffix}"
        if path.exists():
            path.unlink()
    started = time.monotonic()
    hubs[1].start()
    first_answers = []
    while True:
        status, body = health(hubs[1])
        first_answers.append(status)
        if status == 200:
            break
        assert time.monotonic() - started < 60, body
        time.sleep(0.01)
    ready_after = time.monotonic() - started
    # Ready means rebuilt: at that moment the node already serves the whole history.
    assert history(hubs[1].http) == history(hubs[0].http)
    report(f"replica rebuilt from the stream: 20,000 events, ready {ready_after:.2f}s after start "
           f"({first_answers.count(503)} unready answers before)")
    for hub in hubs:
        hub.stop()


def test_retention_gives_every_node_the_gap_and_a_remade_stream_is_refused(tmp_path, nats):
    retention = "\n[store]\nmax_events = 10\n"
    hubs = [start_hub(tmp_path, nats, node, extra=retention) for node in ("a", "b")]
    for number in range(30):
        post(hubs[number % 2].http, [{"wiki": "MoinMaster", "action": "SAVE", "page": f"P{number}", "user": "u"}])
    for hub in hubs:
        # Retention acts on the stream at once and on each node's replica within a second.
        wait_for(lambda: hub.metric("wikiwire_pruned_through_id") >= 20, 15, "the node pruned its replica")
        follower = SseFollower([hub.http], since=0)
        follower.wait_for(30)
        follower.stop()
        assert follower.gaps and follower.gaps[0]["from"] == 1 and follower.gaps[0]["to"] == 20, follower.gaps
        assert follower.ids == list(range(21, 31))
    status, body, _, _ = post(hubs[0].http, [{"wiki": "MoinMaster", "action": "SAVE", "page": "next", "user": "u"}])
    assert body["ids"] == [31], "ids are never reused"

    # Behind the hubs' back: the stream deleted and made again (ids would start at 1 once more).
    config = nats.js_api("$JS.API.STREAM.INFO.WIKIWIRE")["config"]
    assert nats.js_api("$JS.API.STREAM.DELETE.WIKIWIRE").get("success"), "stream deleted"
    config.pop("first_seq", None)
    created = nats.js_api("$JS.API.STREAM.CREATE.WIKIWIRE", json.dumps(config).encode())
    assert "error" not in created, created
    for hub in hubs:
        wait_for(lambda: health(hub)[0] == 503, 15, "the node refusing the remade stream")
        assert "made again" in health(hub)[1]["error"]
        status, body, headers, _ = post(hub.http, [{"wiki": "MoinMaster", "action": "SAVE", "page": "no", "user": "u"}])
        assert status == 503 and "retry-after" in headers, body
    for hub in hubs:
        hub.stop()


def test_migrate_moves_a_sqlite_log_into_the_stream_keeping_ids_and_keys(tmp_path, nats):
    single = tmp_path / "single"
    single.mkdir()
    hub = Hub(single)
    events = [{"wiki": "MoinMaster", "action": "SAVE", "page": f"P{n}", "user": "u", "comment": "ü" * (n % 50)}
              | ({"key": f"rev-{n}"} if n % 3 == 0 else {}) for n in range(2500)]
    for start in range(0, len(events), 1000):
        hub.publish(*events[start:start + 1000])
    before = history(hub.http)
    hub.stop()

    config = single / "wikiwire.toml"
    config.write_text(config.read_text() + "\n" + nats.toml_section("a"))
    migrate = [str(BINARY), "migrate", "--to-jetstream", "--config", str(config)]
    done = __import__("subprocess").run(migrate, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "migrated 2500 events" in done.stdout and "next id is 2501" in done.stdout
    again = __import__("subprocess").run(migrate, capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "already holds 2500 events" in again.stderr, again.stderr

    hubs = [Hub(single, started_timeout=60)]
    other = tmp_path / "b"
    other.mkdir()
    hubs.append(start_hub(tmp_path, nats, "b"))
    try:
        for node in hubs:
            wait_for(lambda: health(node)[0] == 200, 30, "node ready")
            assert history(node.http) == before, "every id and body kept, on every node"
        status, body, _, _ = post(hubs[1].http, [events[3], {"wiki": "MoinMaster", "action": "SAVE", "page": "new", "user": "u"}])
        assert status == 201 and body == {"ids": [4, 2501], "duplicates": [4]}, body
    finally:
        for node in hubs:
            node.stop()


def test_one_key_sent_to_two_nodes_at_once_is_stored_once(tmp_path, nats):
    hubs = [start_hub(tmp_path, nats, node) for node in ("a", "b")]
    answers = []
    barrier = threading.Barrier(40)

    def send(hub, number):
        event = {"wiki": "MoinMaster", "action": "SAVE", "page": f"try {number}", "user": "u", "key": "rev-77"}
        barrier.wait(10)
        answers.append(post(hub.http, [event])[:2])

    threads = [threading.Thread(target=send, args=(hubs[number % 2], number)) for number in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(NEVER_HANGS)
    try:
        assert len(answers) == 40 and all(status in (200, 201) for status, _ in answers), answers
        ids = {body["ids"][0] for _, body in answers}
        assert len(ids) == 1, f"every answer carries the one id: {ids}"
        stored = [status for status, body in answers if not body["duplicates"]]
        assert len(stored) == 1, "exactly one answer stored it; every other one says duplicate"
        for hub in hubs:
            wait_for(lambda: health(hub)[1].get("last_id") == 1, 10, "both nodes applied it")
            assert [event["page"] for event in history(hub.http)] == [history(hubs[0].http)[0]["page"]]
    finally:
        for hub in hubs:
            hub.stop()


def test_every_ingest_path_publishes_into_the_one_log(tmp_path, nats):
    """IRC, MediaWiki's RCFeed and HTTP, on different nodes: one numbering, seen alike everywhere."""
    from test_irc_publish import pack
    from test_mediawiki import change

    rcfeed = '\n[[rcfeed]]\nlisten = "127.0.0.1:0"\npublisher = "moin"\n'
    hubs = [start_hub(tmp_path, nats, "a", extra=rcfeed), start_hub(tmp_path, nats, "b")]
    followers = [IrcFollower(hub) for hub in hubs]
    publisher = Raw(hubs[0])
    try:
        publisher.send("CAP LS 302", f"PASS moin:{MOIN_TOKEN}", "NICK moin", "USER moin 0 * :moin",
                       "CAP REQ :echo-message message-tags", "CAP END")
        publisher.expect(r" 001 ")
        publisher.send("PRIVMSG #MoinMaster.events :" + pack(wiki="MoinMaster", action="SAVE", page="On IRC", user="u"))
        echo = publisher.expect(r"PRIVMSG #MoinMaster.events :")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(change(wiki="MoinMaster", title="From MediaWiki"), ("127.0.0.1", hubs[0].rcfeeds[0]))
        wait_for(lambda: len(history(hubs[1].http)) == 2, 15, "the datagram stored")
        status, body, _, _ = post(hubs[1].http, [{"wiki": "MoinMaster", "action": "SAVE", "page": "Over HTTP", "user": "u"}])
        assert status == 201 and body["ids"] == [3], body
        pages = [event["page"] for event in history(hubs[0].http)]
        assert pages == ["On IRC", "From MediaWiki", "Over HTTP"]
        assert "msgid=1" in echo, echo
        for follower in followers:
            follower.wait_for(3)
            assert follower.ids == [1, 2, 3]
    finally:
        publisher.close()
        for follower in followers:
            follower.stop()
        for hub in hubs:
            hub.stop()


class V2Follower(threading.Thread):
    """sseclient on `/v2/stream/recentchange` (EventStreams' contract) at the first of `bases`;
    when its node goes away it opens the next one with the id sseclient kept (`last_id`, the
    KafkaSSE array), as a client behind a balancer or a changed DNS name would."""

    def __init__(self, bases):
        super().__init__(daemon=True)
        self.bases = list(bases)
        self.received = []  # (base, id, body)
        self.reconnects = 0
        self.errors = []
        self.stopping = threading.Event()
        self.start()

    def run(self):
        import requests
        import sseclient

        last_id, index = None, 0
        while not self.stopping.is_set():
            base = self.bases[index % len(self.bases)]
            try:
                client = sseclient.SSEClient(base + "/v2/stream/recentchange?since=2000-01-01T00:00:00Z",
                                             last_id=last_id, retry=100, timeout=5)
                for message in client:
                    if self.stopping.is_set():
                        return
                    if message.data:  # not the `:ok` comment
                        self.received.append((base, message.id, json.loads(message.data)))
                        last_id = client.last_id
            except requests.RequestException as error:
                if self.stopping.is_set():
                    return
                self.errors.append(repr(error))
                self.reconnects += 1
                index += 1

    def offsets(self):
        return [body["meta"]["offset"] for _, _, body in self.received]

    def stop(self):
        self.stopping.set()


def test_a_v2_client_moves_to_another_node_with_its_last_event_id_exactly_once(tmp_path, nats):
    """SPEC §4's promise across nodes: a /v2 client reading node a, a killed with -9, goes on at
    node b with the Last-Event-ID it kept: every event once, in order, bodies and ids agreeing."""
    hubs = [start_hub(tmp_path, nats, node) for node in ("a", "b")]
    follower = V2Follower([hubs[0].http, hubs[1].http])
    publisher = Publisher(hubs[1], "pub-b")
    try:
        publisher.start()
        wait_for(lambda: len(follower.received) >= 20, 30, "the /v2 client reading node a")
        hubs[0].stop(signal.SIGKILL)
        after_kill = len(publisher.acked) + 40
        wait_for(lambda: len(publisher.acked) >= after_kill, 60, "more events after the kill")
        publisher.stop()
        last = max(publisher.acked.values())
        wait_for(lambda: follower.offsets() and follower.offsets()[-1] >= last, 60,
                 lambda: f"/v2 up to {last}: have {follower.offsets()[-3:]}; {follower.errors}")
        assert follower.offsets() == list(range(1, last + 1)), "every event once, in order, across the move"
        assert publisher.unexpected == []
        by_id = {number: page for page, number in publisher.acked.items()}
        assert [body["title"] for _, _, body in follower.received] == [by_id[n] for n in range(1, last + 1)]
        for _, event_id, body in follower.received:
            (assignment,) = json.loads(event_id)
            assert assignment["offset"] == body["meta"]["offset"] + 1, (event_id, body["meta"])
        sources = [base for base, _, _ in follower.received]
        assert sources[0] == hubs[0].http and sources[-1] == hubs[1].http, "read from a, then from b"
        assert follower.reconnects >= 1
        report(f"kill -9 of a hub node: a /v2 sseclient moved to the other node with its Last-Event-ID, "
               f"{last} events each once ({sources.count(hubs[0].http)} from the killed node)")
    finally:
        publisher.stopping.set()
        follower.stop()
        hubs[1].stop()


def test_migrate_carries_an_rcfeed_datagram_whole_to_v2_on_every_node(tmp_path, nats):
    """What `[[rcfeed]]` kept of MediaWiki's datagrams (log_params, notify_url, a null length,
    a categorize change, a long non-Latin comment) goes through `wikiwire migrate --to-jetstream`
    and reads back on /v2 identical, meta.id included, on a node that never saw the SQLite log."""
    import subprocess

    from test_eventstreams import CHANGES, PUBLISHERS, fill, read_sse, same_as_golden

    def bodies(base):
        return [body for _, _, body in read_sse(base + "/v2/stream/recentchange?since=0", len(CHANGES))]

    single = tmp_path / "single"
    single.mkdir()
    hub = Hub(single, publishers=PUBLISHERS)
    fill(hub)
    before = bodies(hub.http)
    hub.stop()

    config = single / "wikiwire.toml"
    config.write_text(config.read_text() + "\n" + nats.toml_section("a"))
    done = subprocess.run([str(BINARY), "migrate", "--to-jetstream", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and f"migrated {len(CHANGES)} events" in done.stdout, done.stderr

    other = tmp_path / "b"
    other.mkdir()
    node = Hub(other, extra=nats.toml_section("b"), publishers=PUBLISHERS)
    try:
        wait_for(lambda: health(node)[0] == 200, 30, "node b ready")
        after = bodies(node.http)
        assert after == before, "the same bodies, meta.id and offsets included"
        for offset, (body, packet) in enumerate(zip(after, CHANGES), 1):
            same_as_golden(body, packet, offset)
        move = next(body for body in after if body.get("log_type") == "move")
        assert move["log_params"] == {"target": "New Name", "noredir": "0"} and move["log_id"] == 13
        assert after[0]["notify_url"] == CHANGES[0]["notify_url"] and "old" not in after[1]["length"]
        assert [body["type"] for body in after].count("categorize") == 1
        assert after[-1]["comment"] == CHANGES[-1]["comment"]
    finally:
        node.stop()
