"""MediaWiki plugged in unchanged (SPEC §7 `[[rcfeed]]`, §2.3 `mediawiki` style): datagrams as
MediaWiki's `JSONRCFeedFormatter` sends them over UDP (`$wgRCFeeds`), with and without a channel
prefix, become events; a channel in the `mediawiki` format carries MediaWiki's own IRC colour
line, byte for byte, for RC-feed bots. Datagrams from an address not allowed, for a wiki that is
not the publisher's, or broken, store nothing and are counted."""

import json
import socket
import time

from conftest import Hub, Raw, parse

MW_TOKEN = "wwt_mediawiki-publisher-token-for-tests"

PUBLISHERS = f"""
[[publisher]]
name = "mw"
token = "{MW_TOKEN}"
wikis = ["examplewiki", "otherfarmwiki"]
engine = "mediawiki"
base_url = "https://wiki.example/w/"

[[publisher]]
name = "other"
token = "wwt_another-publisher-token-0123456789"
wikis = ["theirwiki"]

[[channel]]
name = "#examplewiki.rc"
format = "mediawiki"
filter = "wiki=examplewiki"

[[rcfeed]]
listen = "127.0.0.1:0"
publisher = "mw"
"""


def change(**fields):
    """A change in the shape MediaWiki 1.39's MachineReadableRCFeedFormatter writes."""
    packet = {
        "$schema": "/mediawiki/recentchange/1.0.0",
        "meta": {"uri": "https://wiki.example/wiki/Main_Page", "domain": "wiki.example", "stream": "mediawiki.recentchange"},
        "id": 1234, "type": "edit", "namespace": 0, "title": "Main Page",
        "title_url": "https://wiki.example/wiki/Main_Page", "comment": "fix typo",
        "timestamp": 1764000000, "user": "Alice", "bot": False,
        "notify_url": "https://wiki.example/w/index.php?diff=42&oldid=41", "minor": True,
        "length": {"old": 120, "new": 118}, "revision": {"old": 41, "new": 42},
        "server_url": "https://wiki.example", "server_name": "wiki.example",
        "server_script_path": "/w", "wiki": "examplewiki", "parsedcomment": "fix typo",
    }
    packet.update(fields)
    if packet["type"] == "log":  # log entries carry no lengths, revisions or minor flag
        for name in ("length", "revision", "minor", "notify_url"):
            packet.pop(name)
    return json.dumps(packet, ensure_ascii=False).encode()


def listener(hub, channel):
    raw = Raw(hub)
    raw.send("NICK cvnbot", "USER cvnbot 0 * :bot")
    raw.expect(r" (376|422) ")
    raw.send(f"JOIN {channel}")
    raw.lines_until(r" 366 ")
    return raw


def privmsgs(raw, count, timeout=20):
    texts = []
    deadline = time.monotonic() + timeout
    while len(texts) < count:
        line = raw.read_line(max(deadline - time.monotonic(), 0))
        assert line is not None, f"only {texts}"
        _, _, verb, params = parse(line)
        if verb == "PRIVMSG":
            texts.append(params[1])
    return texts


def test_mediawiki_datagrams_become_events_and_mediawiki_irc_lines(tmp_path):
    hub = Hub(tmp_path, publishers=PUBLISHERS)
    try:
        port = hub.rcfeeds[0]
        raw = listener(hub, "#examplewiki.rc")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        udp.sendto(change(), ("127.0.0.1", port))
        # With a prefix (`udp://host:port/#examplewiki.rc` in $wgRCFeeds), a new page, patrol on.
        udp.sendto(b"#examplewiki.rc " + change(
            id=77, type="new", namespace=1, title="Talk:Hello \u05e9\u05dc\u05d5\u05dd", comment="new section",
            user="192.0.2.4", minor=False, patrolled=False, length={"old": None, "new": 900},
            revision={"old": None, "new": 50},
            notify_url="https://wiki.example/w/index.php?oldid=50&rcid=77") + b"\n", ("127.0.0.1", port))
        # A log entry, identified by server name only.
        udp.sendto(change(
            id=90, type="log", title="Spam Page", comment="spam", user="Admin", log_id=12, log_type="delete",
            log_action="delete", log_params=[], log_action_comment='deleted "[[Spam Page]]": spam',
            wiki="not-a-wiki-here-by-id"), ("127.0.0.1", port))
        lines = privmsgs(raw, 3)
        assert lines[0] == ("\x0314[[\x0307Main Page\x0314]]\x034 M\x0310 \x0302https://wiki.example/w/index.php"
                            "?diff=42&oldid=41\x03 \x035*\x03 \x0303Alice\x03 \x035*\x03 (-2) \x0310fix typo\x03")
        assert lines[1] == ("\x0314[[\x0307Talk:Hello \u05e9\u05dc\u05d5\u05dd\x0314]]\x034 !N\x0310 \x0302"
                            "https://wiki.example/w/index.php?oldid=50&rcid=77\x03 \x035*\x03 \x0303192.0.2.4\x03"
                            " \x035*\x03 (+900) \x0310new section\x03")
        assert lines[2] == ("\x0314[[\x0307Special:Log/delete\x0314]]\x034 delete\x0310 \x0302\x03 \x035*\x03 "
                            "\x0303Admin\x03 \x035*\x03  \x0310deleted \"[[\x0302Spam Page\x0310]]\": spam\x03")

        events = hub.get("/api/v1/events")["events"]
        assert [(e["wiki"], e["action"], e.get("page")) for e in events] == [
            ("examplewiki", "page_changed", "Main Page"),
            ("examplewiki", "page_created", "Talk:Hello \u05e9\u05dc\u05d5\u05dd"),
            ("examplewiki", "page_deleted", "Spam Page"),
        ]
        assert events[0]["time"] == "2025-11-24T16:00:00.000Z"
        assert (events[0]["revision"], events[0]["old_revision"], events[0]["minor"]) == ("42", "41", True)

        # Refused, each counted, nothing stored: another publisher's wiki, a broken datagram, a
        # source address not allowed. A category change is kept in the log, but not said in a
        # `mediawiki` channel, as MediaWiki's IRC feed leaves it out.
        udp.sendto(change(wiki="enwiki", server_name="en.wikipedia.org"), ("127.0.0.1", port))
        # A datagram naming another publisher's wiki is not the MediaWiki publisher's, whatever its
        # server name says.
        udp.sendto(change(wiki="theirwiki", title="Not Mine"), ("127.0.0.1", port))
        udp.sendto(b'{"type": "edit", "title": ', ("127.0.0.1", port))
        udp.sendto(b"\xff" * 100, ("127.0.0.1", port))
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.2", 0))
        stranger.sendto(change(title="From elsewhere"), ("127.0.0.1", port))
        udp.sendto(change(type="categorize", title="Category:X"), ("127.0.0.1", port))
        deadline = time.monotonic() + 10
        while hub.metric('wikiwire_rcfeed_datagrams_total{result="refused"}') < 5:
            assert time.monotonic() < deadline, "five refusals"
            time.sleep(0.05)
        udp.sendto(change(title="Last One", id=99), ("127.0.0.1", port))
        assert "[[\x0307Last One\x0314]]" in privmsgs(raw, 1)[0]
        assert [(e["action"], e.get("page")) for e in hub.get("/api/v1/events")["events"]][-2:] == [
            ("categorize", "Category:X"), ("page_changed", "Last One")]
        assert len(hub.get("/api/v1/events")["events"]) == 5
        assert hub.metric('wikiwire_rcfeed_datagrams_total{result="accepted"}') == 5
        log = hub.read_log()
        assert "is not one of publisher mw's wikis" in log
    finally:
        hub.stop()


def test_a_real_mediawiki_from_debian_sends_its_changes_and_our_line_is_its_line(tmp_path):
    """MediaWiki 1.39 from Debian (SQLite), unchanged but for `$wgRCFeeds`: one feed with
    JSONRCFeedFormatter to the hub, one with IRCColourfulRCFeedFormatter to a socket of the test.
    Every line the hub's `mediawiki` channel shows is the line MediaWiki itself wrote."""
    import subprocess

    mediawiki = "/usr/share/mediawiki"
    hub = Hub(tmp_path, publishers=PUBLISHERS.replace('base_url = "https://wiki.example/w/"',
                                                      'base_url = "http://wiki.example/w/"'))
    try:
        raw = listener(hub, "#examplewiki.rc")
        own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        own.bind(("127.0.0.1", 0))
        own.settimeout(30)
        site = tmp_path / "mediawiki"
        (site / "db").mkdir(parents=True)
        subprocess.run(
            ["php", "maintenance/install.php", "--dbtype", "sqlite", "--dbpath", str(site / "db"),
             "--dbname", "examplewiki", "--server", "http://wiki.example", "--scriptpath", "/w",
             "--pass", "Admin-password-123", "--confpath", str(site), "Example Wiki", "Admin"],
            cwd=mediawiki, check=True, capture_output=True, timeout=120)
        settings = site / "LocalSettings.php"
        settings.write_text(settings.read_text() + f"""
$wgUseRCPatrol = true;
$wgRCFeeds['wikiwire'] = [ 'formatter' => 'JSONRCFeedFormatter', 'uri' => 'udp://127.0.0.1:{hub.rcfeeds[0]}/#examplewiki.rc' ];
$wgRCFeeds['irc'] = [ 'formatter' => 'IRCColourfulRCFeedFormatter', 'uri' => 'udp://127.0.0.1:{own.getsockname()[1]}', 'add_interwiki_prefix' => false ];
""")

        def maintenance(script, *arguments, text=None):
            subprocess.run(["php", f"maintenance/{script}", "--conf", str(settings), *arguments],
                           cwd=mediawiki, check=True, capture_output=True, input=text, timeout=120)

        maintenance("edit.php", "--user", "Admin", "--summary", "a new page", "Hello World", text=b"Hello there")
        maintenance("edit.php", "--user", "Admin", "--summary", "fix <typo> & more", "--minor", "Hello World",
                    text=b"Hello there, world")
        batch = tmp_path / "delete.txt"
        batch.write_text("Hello World\n")
        maintenance("deleteBatch.php", "-u", "Admin", "-r", "spam", str(batch))
        theirs = [own.recv(65536).decode().rstrip("\n") for _ in range(3)]
        ours = privmsgs(raw, 3, timeout=30)
        assert ours == theirs, (ours, theirs)
        events = hub.get("/api/v1/events")["events"]
        assert [(e["action"], e["page"]) for e in events] == [
            ("page_created", "Hello World"), ("page_changed", "Hello World"), ("page_deleted", "Hello World")]
        assert events[1]["minor"] is True and events[1]["comment"] == "fix <typo> & more"
    finally:
        hub.stop()


def test_a_burst_beyond_the_rate_limit_is_stored_whole_or_counted(tmp_path):
    """MediaWiki cannot send a datagram again: a burst past the publisher's rate waits in a queue
    instead of being dropped, and whatever is lost anyway (kernel buffer, full queue) is counted."""
    hub = Hub(tmp_path, publishers=PUBLISHERS, extra="[limits]\npublish_rate = 1000\npublish_burst = 100\n")
    sent = 3000
    try:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for number in range(sent):
            udp.sendto(change(id=10_000 + number, title=f"Burst {number}"), ("127.0.0.1", hub.rcfeeds[0]))

        def metric(result):
            return hub.metric(f'wikiwire_rcfeed_datagrams_total{{result="{result}"}}')

        deadline = time.monotonic() + 60
        while metric("accepted") + metric("queue_full") + metric("kernel_dropped") < sent:
            assert time.monotonic() < deadline, [metric(r) for r in ("accepted", "queue_full", "kernel_dropped", "refused")]
            time.sleep(0.1)
        assert metric("refused") == 0, "a valid change is never refused for the rate limit"
        stored = hub.last_id()
        assert stored == metric("accepted")
        print(f"{sent} datagrams: {stored:.0f} stored, {metric('kernel_dropped'):.0f} dropped by the kernel, "
              f"{metric('queue_full'):.0f} by a full queue")
    finally:
        hub.stop()
