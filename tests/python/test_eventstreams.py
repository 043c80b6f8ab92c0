"""`/v2/stream/{streams}`: Wikimedia's EventStreams contract (SPEC §4), driven by the clients
people point at stream.wikimedia.org — pywikibot (its EventStreams class and site_rc_listener),
requests-sse, sseclient and Node's `eventsource` — with only the base URL changed. A hub with an
`[[rcfeed]]` receives MediaWiki `JSONRCFeedFormatter` datagrams; each body must be the
`mediawiki/recentchange` event EventBus makes of the same change (the datagram, nulls removed,
with `$schema` and `meta`). Resuming with the id a client kept, or across a restart of the hub,
delivers every event exactly once, in order.

pywikibot runs in a subprocess with its own user-config and a family whose EventStreams host is
the hub; its APISite logs in to the wiki's api.php when made, so the tests use a BaseSite (all
EventStreams needs), and every proxy variable points at a dead port: a request to anywhere but
the hub fails the test."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid

import requests
import requests_sse
import sseclient

from conftest import Hub, free_port, wait_for

MW_TOKEN = "wwt_mediawiki-publisher-token-for-tests"
OTHER_TOKEN = "wwt_another-publisher-token-0123456789"
NODE_DIR = pathlib.Path(__file__).resolve().parent.parent / "node"

PUBLISHERS = f"""
[[publisher]]
name = "mw"
token = "{MW_TOKEN}"
wikis = ["examplewiki"]
engine = "mediawiki"
base_url = "https://wiki.example/w/"

[[publisher]]
name = "other"
token = "{OTHER_TOKEN}"
wikis = ["MoinFarm"]
engine = "moin"
base_url = "https://moin.example/"

[[rcfeed]]
listen = "127.0.0.1:0"
publisher = "mw"
"""

BASE = {
    "$schema": "/mediawiki/recentchange/1.0.0",
    "meta": {"uri": "https://wiki.example/wiki/Main_Page", "domain": "wiki.example", "stream": "mediawiki.recentchange"},
    "id": 1234, "type": "edit", "namespace": 0, "title": "Main Page",
    "title_url": "https://wiki.example/wiki/Main_Page", "comment": "fix typo", "timestamp": 1764000000,
    "user": "Alice", "bot": False, "notify_url": "https://wiki.example/w/index.php?diff=42&oldid=41",
    "minor": True, "patrolled": True, "length": {"old": 120, "new": 118}, "revision": {"old": 41, "new": 42},
    "server_url": "https://wiki.example", "server_name": "wiki.example", "server_script_path": "/w",
    "wiki": "examplewiki", "parsedcomment": "fix typo",
}


def datagram(**fields):
    packet = json.loads(json.dumps(BASE))
    packet.update(fields)
    if packet["type"] in ("log", "categorize"):
        for name in ("length", "revision", "minor", "notify_url", "patrolled"):
            packet.pop(name, None)
    return packet


LONG = "\u05e9\u05dc\u05d5\u05dd \u4e16\u754c " * 75  # 600 characters, Hebrew and CJK

CHANGES = [
    datagram(),
    datagram(id=77, type="new", namespace=1, title="Talk:Hello", comment="new section", user="192.0.2.4",
             minor=False, patrolled=False, length={"old": None, "new": 900}, revision={"old": None, "new": 50},
             notify_url="https://wiki.example/w/index.php?oldid=50&rcid=77", timestamp=1764000100),
    datagram(id=90, type="log", title="Spam Page", comment="spam", user="Admin", log_id=12, log_type="delete",
             log_action="delete", log_params=[], log_action_comment='deleted "[[Spam Page]]": spam',
             timestamp=1764000200),
    datagram(id=91, type="log", title="Old Name", comment="better", user="Mover", log_id=13, log_type="move",
             log_action="move", log_params={"target": "New Name", "noredir": "0"},
             log_action_comment="moved [[Old Name]] to [[New Name]]: better", timestamp=1764000300),
    datagram(id=92, type="log", title="User:Spammer", comment="spam", user="Admin", log_id=14, log_type="block",
             log_action="block", log_params={"duration": "infinite", "flags": "nocreate", "sitewide": True},
             log_action_comment="blocked [[User:Spammer]] with an expiration time of indefinite", timestamp=1764000400),
    datagram(id=93, type="categorize", namespace=14, title="Category:Greetings", user="Alice",
             comment="[[:Talk:Hello]] added to category", timestamp=1764000500),
    datagram(id=94, title="\u05e9\u05dc\u05d5\u05dd", comment=LONG, parsedcomment=LONG, timestamp=1764000600,
             revision={"old": 51, "new": 52}, notify_url="https://wiki.example/w/index.php?diff=52&oldid=51"),
]


def strip_nulls(value):
    if isinstance(value, dict):
        return {key: strip_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [strip_nulls(item) for item in value if item is not None]
    return value


def golden(packet, offset):
    """The recentchange event EventBus makes of a change: the change without nulls, `$schema`,
    and `meta` naming the stream (its `id` is checked apart: a UUID of the change)."""
    event = strip_nulls(packet)
    meta = dict(event.get("meta", {}))
    meta.update({
        "domain": packet["server_name"], "stream": "mediawiki.recentchange",
        "dt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(packet["timestamp"])),
        "topic": "wikiwire.mediawiki.recentchange", "partition": 0, "offset": offset,
    })
    meta.setdefault("uri", packet.get("title_url"))
    event["meta"] = meta
    return event


def same_as_golden(body, packet, offset):
    body = json.loads(json.dumps(body))
    assert uuid.UUID(body["meta"].pop("id")).version == 8
    assert body == golden(packet, offset), body["meta"]


def send(hub, packets):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for packet in packets:
        udp.sendto(json.dumps(packet, ensure_ascii=False).encode(), ("127.0.0.1", hub.rcfeeds[0]))
    udp.close()


def start_hub(tmp_path):
    return Hub(tmp_path, publishers=PUBLISHERS, ports=(free_port(), free_port()))


def fill(hub):
    send(hub, CHANGES)
    wait_for(lambda: hub.last_id() == len(CHANGES), what=lambda: hub.read_log())


def read_sse(url, count, headers=None):
    """`count` events from one sseclient connection: (id, event type, data)."""
    got = []
    for message in sseclient.SSEClient(url, headers=headers or {}, timeout=10):
        if message.data:
            got.append((message.id, message.event, json.loads(message.data)))
        if len(got) == count:
            return got


def test_bodies_are_eventbus_recentchange_events_and_ids_resume_exactly(tmp_path):
    hub = start_hub(tmp_path)
    try:
        fill(hub)
        url = hub.http + "/v2/stream/recentchange?since=2025-01-01T00:00:00Z"
        first = read_sse(url, 3)
        assert [kind for _, kind, _ in first] == ["message"] * 3
        for (_, _, body), (offset, packet) in zip(first, enumerate(CHANGES, 1)):
            same_as_golden(body, packet, offset)
        assert json.loads(first[2][0]) == [{
            "topic": "wikiwire.mediawiki.recentchange", "partition": 0, "offset": 4,
            "timestamp": CHANGES[2]["timestamp"] * 1000 + 1}]
        # sseclient resumes with the id it kept: the rest, nothing twice.
        rest = []
        for message in sseclient.SSEClient(url, last_id=first[2][0], timeout=10):
            if not message.data:  # sseclient yields the `:ok` comment as an empty message, as on Wikimedia
                continue
            rest.append(json.loads(message.data))
            if len(rest) == len(CHANGES) - 3:
                break
        for body, (offset, packet) in zip(rest, enumerate(CHANGES[3:], 4)):
            same_as_golden(body, packet, offset)
        # The same id from the other stream name, the bare id, and milliseconds all agree; the
        # UUID is the change's.
        again = read_sse(hub.http + "/v2/stream/mediawiki.recentchange", 1, {"Last-Event-ID": "3"})
        assert again[0][2]["meta"] == rest[0]["meta"] | {"offset": 4} and again[0][2]["meta"]["id"] == rest[0]["meta"]["id"]
        by_ms = read_sse(hub.http + f"/v2/stream/recentchange?since={CHANGES[5]['timestamp'] * 1000}", 1)
        assert by_ms[0][2]["meta"]["offset"] == 6 and by_ms[0][2]["type"] == "categorize"

        # The 400s, as EventStreams answers them.
        for path, headers, kind in [
            ("/v2/stream/recentchange,nosuchstream", {}, "not_found"),
            ("/v2/stream/recentchange?since=yesterday", {}, "invalid_timestamp"),
            ("/v2/stream/recentchange", {"Last-Event-ID": '[{"topic":"x","partition":0,"offset":3}]'}, "invalid_assignment"),
            ("/v2/stream/recentchange", {"Last-Event-ID": "not an id"}, "invalid_assignment"),
        ]:
            answer = requests.get(hub.http + path, headers=headers, timeout=10)
            assert answer.status_code == 400, (path, answer.text)
            problem = answer.json()
            assert (problem["status"], problem["type"], problem["method"]) == (400, kind, "get"), problem
            assert answer.headers["access-control-allow-origin"] == "*"
        assert "Invalid streams: nosuchstream" in requests.get(hub.http + "/v2/stream/recentchange,nosuchstream", timeout=10).json()["detail"]
        # /api/v1 is as it was: wikiwire's own shape.
        assert "meta" not in hub.get("/api/v1/events/1") and hub.get("/api/v1/events/1")["action"] == "page_changed"
    finally:
        hub.stop()


def test_requests_sse_resumes_and_a_mixed_farm_and_filters(tmp_path):
    hub = start_hub(tmp_path)
    try:
        fill(hub)
        status, _ = hub.request("POST", "/api/v1/events", {"wiki": "MoinFarm", "action": "SAVE", "page": "Front Page",
                                                           "user": "Bob", "revision": "7"}, token=OTHER_TOKEN)
        assert status == 201
        url = hub.http + "/v2/stream/recentchange?since=0&wiki=MoinFarm"
        with requests_sse.EventSource(url, timeout=10) as source:
            moin = json.loads(next(source).data)
        # An event from another engine, in the same shape, its server from the description block.
        assert moin["$schema"] == "/mediawiki/recentchange/1.0.0"
        assert (moin["type"], moin["title"], moin["server_name"], moin["wiki"]) == ("edit", "Front Page", "moin.example", "MoinFarm")
        assert moin["meta"]["domain"] == "moin.example" and moin["meta"]["offset"] == 8
        assert moin["revision"] == {"new": 7} and moin["timestamp"] > 1764000000
        # requests-sse, resuming with the id it kept, then the sentinel shows nothing came twice.
        url = hub.http + "/v2/stream/recentchange?since=2025-01-01&wiki=examplewiki"
        with requests_sse.EventSource(url, timeout=10) as source:
            kept = [next(source) for _ in range(2)]
        with requests_sse.EventSource(url, timeout=10, latest_event_id=kept[-1].last_event_id) as source:
            sent = False
            offsets = []
            while True:
                event = json.loads(next(source).data)
                offsets.append(event["meta"]["offset"])
                if not sent:
                    send(hub, [datagram(id=95, title="Sentinel", timestamp=1764000700)])
                    sent = True
                if event["title"] == "Sentinel":
                    break
        assert offsets == [3, 4, 5, 6, 7, 9]
    finally:
        hub.stop()


PYWIKIBOT_SCRIPT = textwrap.dedent("""
    import json, sys
    import pywikibot
    from pywikibot.comms.eventstreams import EventStreams, site_rc_listener

    # APISite logs in to the wiki's api.php when made; EventStreams needs only the family.
    site = pywikibot.Site(interface="BaseSite")
    mode, total = sys.argv[1], int(sys.argv[2])
    if mode == "since":
        stream = EventStreams(streams="recentchange", since=sys.argv[3], site=site, retry=100)
        stream.set_maximum_items(total)
    else:
        stream = site_rc_listener(site, total=total)
    for change in stream:
        print(json.dumps(change), flush=True)
""")


class Pywikibot:
    """pywikibot in its own process, with a family whose EventStreams host is the hub."""

    def __init__(self, directory, hub, *arguments):
        directory = pathlib.Path(directory)
        (directory / "families").mkdir(parents=True, exist_ok=True)
        (directory / "families" / "hubwiki_family.py").write_text(textwrap.dedent("""
            import os
            from pywikibot import family

            class Family(family.SingleSiteFamily):
                name = "hubwiki"
                domain = "wiki.example"

                def eventstreams_host(self, code):
                    return os.environ["WIKIWIRE_HUB"]

                def eventstreams_path(self, code):
                    return "/v2/stream"
        """))
        (directory / "user-config.py").write_text(textwrap.dedent(f"""
            family = "hubwiki"
            mylang = "hubwiki"
            user_families_paths = [{str(directory / "families")!r}]
            user_agent_format = "wikiwire-tests {{script}} {{pwb}}"
        """))
        (directory / "listen.py").write_text(PYWIKIBOT_SCRIPT)
        dead = "http://127.0.0.1:9"
        environment = {**os.environ, "PYWIKIBOT_DIR": str(directory), "WIKIWIRE_HUB": hub.http,
                       "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "ALL_PROXY": dead, "http_proxy": dead,
                       "https_proxy": dead, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        self.stderr = open(directory / "stderr.log", "w")
        self.process = subprocess.Popen([sys.executable, str(directory / "listen.py"), *arguments], cwd=directory,
                                        env=environment, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.directory = directory
        self.changes = []

    def read(self, count, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.changes) < count:
            assert time.monotonic() < deadline, (self.changes, (self.directory / "stderr.log").read_text()[-3000:])
            line = self.process.stdout.readline()
            assert line, f"pywikibot ended: {(self.directory / 'stderr.log').read_text()[-3000:]}"
            self.changes.append(json.loads(line))
        return self.changes

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stderr.close()


def test_pywikibot_eventstreams_across_a_hub_restart_and_site_rc_listener(tmp_path):
    (tmp_path / "hub").mkdir()
    hub = start_hub(tmp_path / "hub")
    bot = None
    listener = None
    try:
        send(hub, CHANGES[:4])
        wait_for(lambda: hub.last_id() == 4)
        bot = Pywikibot(tmp_path / "bot", hub, "since", str(len(CHANGES) + 1), "2025-11-01T00:00:00Z")
        bot.read(4)
        # The hub goes away mid-stream and comes back; requests-sse reconnects with its last id.
        hub.stop()
        hub.start()
        send(hub, CHANGES[4:])
        # The datagrams are stored in the order they came, once the hub has read them: the event
        # over HTTP comes after them only when they are in.
        wait_for(lambda: hub.last_id() == len(CHANGES), what=lambda: hub.read_log())
        status, _ = hub.request("POST", "/api/v1/events", {"wiki": "MoinFarm", "action": "SAVE", "page": "Elsewhere",
                                                           "user": "Bob"}, token=OTHER_TOKEN)
        assert status == 201
        changes = bot.read(len(CHANGES) + 1)
        assert [change["meta"]["offset"] for change in changes] == list(range(1, len(CHANGES) + 2))
        for change, (offset, packet) in zip(changes, enumerate(CHANGES, 1)):
            same_as_golden(change, packet, offset)
        assert changes[-1]["server_name"] == "moin.example"
        assert bot.process.wait(20) == 0
        assert "127.0.0.1:9" not in (bot.directory / "stderr.log").read_text(), "pywikibot reached for the internet"

        # site_rc_listener keeps what its site's server_name names: live changes from now on.
        clients = hub.metric("wikiwire_sse_clients")
        listener = Pywikibot(tmp_path / "listener", hub, "listener", "2")
        wait_for(lambda: hub.metric("wikiwire_sse_clients") > clients, what=lambda: (tmp_path / "listener" / "stderr.log").read_text())
        hub.request("POST", "/api/v1/events", {"wiki": "MoinFarm", "action": "SAVE", "page": "Not Here", "user": "Bob"},
                    token=OTHER_TOKEN)
        send(hub, [datagram(id=200, title="Live One", timestamp=1764001000)])
        send(hub, [datagram(id=201, title="Live Two", timestamp=1764001001)])
        live = listener.read(2)
        assert [(change["title"], change["server_name"]) for change in live] == [
            ("Live One", "wiki.example"), ("Live Two", "wiki.example")]
        assert listener.process.wait(20) == 0
    finally:
        for client in (bot, listener):
            if client:
                client.close()
        hub.stop()


def test_node_eventsource_runs_the_wikitech_example_and_json_lines(tmp_path):
    assert (NODE_DIR / "node_modules" / "eventsource").is_dir(), "npm ci --prefix tests/node (scripts/test.sh does)"
    hub = start_hub(tmp_path)
    example = NODE_DIR / "wikitech_example.js"
    lines = NODE_DIR / "json_lines.js"
    node = None
    try:
        fill(hub)
        node = subprocess.Popen(["node", str(example), hub.http + "/v2/stream/recentchange?since=2025-01-01T00:00:00Z"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=NODE_DIR)
        assert node.stdout.readline().startswith("Connecting to EventStreams")
        assert node.stdout.readline().strip() == "Opened connection."
        titles = [node.stdout.readline().rstrip("\n") for _ in CHANGES]
        assert titles == [packet["title"] for packet in CHANGES]
        node.kill()
        output = subprocess.run(["node", str(lines), hub.http + "/v2/stream/recentchange?since=0", str(len(CHANGES))],
                                capture_output=True, text=True, timeout=30, cwd=NODE_DIR)
        assert output.returncode == 0, output.stderr
        assert output.stdout.split("\n")[0] == "application/json; charset=utf-8"
        assert output.stdout.splitlines()[1:] == [str(offset) for offset in range(1, len(CHANGES) + 1)]
    finally:
        if node:
            node.kill()
            node.wait()
        hub.stop()


def test_api_v1_stream_says_utf_8_so_sseclient_reads_a_hebrew_title_whole(hub):
    """`/api/v1/stream` (wikiwire's own shape) names its charset as `/v2` does: without it,
    sseclient (on requests) decodes the body as Latin-1 and a Hebrew page name comes out garbled."""
    title = "\u05e2\u05de\u05d5\u05d3 \u05e8\u05d0\u05e9\u05d9"  # "עמוד ראשי", the Hebrew Main Page
    (event_id,) = hub.publish({"wiki": "MoinMaster", "action": "page_changed", "page": title, "user": "\u05d0\u05dc\u05d9\u05e1"})
    answer = requests.get(hub.http + "/api/v1/stream?since=0", stream=True, timeout=10)
    assert answer.headers["content-type"] == "text/event-stream; charset=utf-8"
    answer.close()
    for message in sseclient.SSEClient(hub.http + "/api/v1/stream?since=0", timeout=10):
        if message.data:
            break
    assert message.id == str(event_id)
    event = json.loads(message.data)
    assert (event["page"], event["user"]) == (title, "\u05d0\u05dc\u05d9\u05e1")


STREAMS = """
[[stream]]
name = "moin.saves"
filter = "wiki=MoinFarm"

[[stream]]
name = "front"
filter = "page=Front*"

[[stream]]
name = "antispam"
filter = "action=antispam_updated"
"""


def offsets_until(url, title):
    """The offsets of every event of one NDJSON stream up to the one titled `title`."""
    offsets = []
    with requests.get(url, headers={"Accept": "application/json"}, stream=True, timeout=10) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines():
            if line:
                event = json.loads(line)
                offsets.append(event["meta"]["offset"])
                if event["title"] == title:
                    return offsets


def test_configured_streams_carry_their_filter_and_several_their_union(tmp_path):
    """Issue 26, item 2: the configuration may name more streams, each a filter."""
    hub = Hub(tmp_path, publishers=PUBLISHERS + STREAMS, ports=(free_port(), free_port()))
    try:
        fill(hub)
        farm = [{"wiki": "MoinFarm", "action": "SAVE", "page": "Front Page", "user": "Bob"},
                {"wiki": "MoinFarm", "action": "SAVE", "page": "Middle", "user": "Bob"},
                {"wiki": "MoinFarm", "action": "antispam_updated", "page": "BadContent", "user": "Bob"}]
        status, _ = hub.request("POST", "/api/v1/events", farm, token=OTHER_TOKEN)
        assert status == 201
        base = hub.http + "/v2/stream/"
        assert offsets_until(base + "moin.saves?since=0", "BadContent") == [8, 9, 10]
        # A stream's filter and the request's narrow together.
        assert offsets_until(base + "front?since=0&wiki=MoinFarm", "Front Page") == [8]
        # Several streams: what any of them carries, each event once.
        assert offsets_until(base + "front,antispam?since=0", "BadContent") == [8, 10]
        assert offsets_until(base + "antispam,recentchange?since=0", "BadContent") == list(range(1, 11))
        status, body = hub.request("GET", "/v2/stream/antispam,nope")
        assert status == 400 and b"nope" in body, body
    finally:
        hub.stop()
