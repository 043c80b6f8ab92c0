"""irc.wikimedia.org's ways, for the bots written for it (issue 26, SPEC §3 and §8): with
`[irc] wikimedia_compat`, `mediawiki` channels are spoken by `rc-pmtpa!rc-pmtpa@<server>`, and
listeners may share a nick; with `[[rcfeed]] channels = "from-prefix"`, each datagram's prefix
(`#en.wikipedia`, as Wikimedia's `$wgRCFeeds` sends it) makes its channel on the first change,
bounded and only for the feed publisher's wikis. Driven by the `irc` library as bots use it,
and every line read by CVNBot's parsing rule."""

import json
import re
import socket

from conftest import Hub, Lib, Raw, parse, wait_for

WMF_TOKEN = "wwt_wikimedia-farm-token-for-the-tests-0123"
OTHER_TOKEN = "wwt_another-publisher-token-0123456789"

PUBLISHERS = f"""
[[publisher]]
name = "wmf"
token = "{WMF_TOKEN}"
wikis = ["enwiki", "dewiki", "frwiki"]
engine = "mediawiki"

[[publisher]]
name = "other"
token = "{OTHER_TOKEN}"
wikis = ["theirwiki"]

[[rcfeed]]
listen = "127.0.0.1:0"
publisher = "wmf"
channels = "from-prefix"
"""

COMPAT = "wikimedia_compat = true\nmax_prefix_channels = 2"
SPEAKER = "rc-pmtpa!rc-pmtpa@irc.test.example"
HEBREW_COMMENT = "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd " * 60  # 600 characters


def change(**fields):
    """A change as MediaWiki's JSONRCFeedFormatter writes it (1.39)."""
    packet = {
        "$schema": "/mediawiki/recentchange/1.0.0", "id": 1234, "type": "edit", "namespace": 0,
        "title": "Main Page", "comment": "fix typo", "timestamp": 1764000000, "user": "Alice", "bot": False,
        "notify_url": "https://en.wikipedia.org/w/index.php?diff=42&oldid=41", "minor": True,
        "length": {"old": 120, "new": 118}, "revision": {"old": 41, "new": 42},
        "server_url": "https://en.wikipedia.org", "server_name": "en.wikipedia.org",
        "server_script_path": "/w", "wiki": "enwiki",
    }
    packet.update(fields)
    if packet["type"] in ("log", "categorize"):
        for name in ("length", "revision", "minor", "notify_url"):
            packet.pop(name)
    return json.dumps(packet, ensure_ascii=False).encode()


def send(hub, prefix, datagram):
    """As Wikimedia's `udp://host:port/#en.wikipedia\\t` feed sends it: prefix, tab, space."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(prefix.encode() + b"\t " + datagram, ("127.0.0.1", hub.rcfeeds[0]))


def cvnbot_fields(message):
    """CVNBot's RCReader: the first 14 colour codes (with their digits and a `*`) become \\x03,
    bold goes, and the line must split on \\x03 into exactly 15 fields."""
    marked, count = [], 0
    for char in message:
        if char == "\x03" and count < 14:
            marked.append("\x04")
            count += 1
        else:
            marked.append(char)
    stripped = re.sub(r"\x04\d{0,2}\*?", "\x03", "".join(marked)).replace("\x02", "")
    fields = stripped.split("\x03", 14)
    assert len(fields) == 15, (message, fields)
    if fields[14].endswith("\x03"):
        fields[14] = fields[14][:-1]
    return fields


def channel_list(raw):
    raw.send("LIST")
    return [parse(line)[3][1] for line in raw.lines_until(r" 323 ") if parse(line)[2] == "322"]


def test_bots_read_rc_pmtpa_in_channels_made_from_prefixes_under_one_nick(tmp_path):
    hub = Hub(tmp_path, irc=COMPAT, publishers=PUBLISHERS)
    try:
        watcher = Raw(hub).register("watcher")
        # No channel before the first change that names it; listeners cannot make one.
        watcher.send("JOIN #en.wikipedia")
        watcher.expect(r" 403 watcher #en.wikipedia ")
        send(hub, "#en.wikipedia", change(title="First"))
        wait_for(lambda: "#en.wikipedia" in channel_list(watcher), what="#en.wikipedia made")

        # Two bots under one nick, as a farm of CVNBot instances runs: both registered, both in.
        bots = [Lib(hub, "cvnbot"), Lib(hub, "cvnbot")]
        for bot in bots:
            assert bot.wait_type("welcome").target == "cvnbot"
            bot.connection.join("#en.wikipedia")
            bot.wait_type("join", target="#en.wikipedia")
            names = bot.wait_type("namreply").arguments[2].split()
            # Listeners cannot see each other: the speaker and yourself.
            assert names == ["+rc-pmtpa", "cvnbot"], names

        new_page = change(id=77, type="new", title="Hello \u05e9\u05dc\u05d5\u05dd", comment="new section",
                          user="192.0.2.4", minor=False, patrolled=False, length={"old": None, "new": 900},
                          revision={"old": None, "new": 50},
                          notify_url="https://en.wikipedia.org/w/index.php?oldid=50&rcid=77")
        datagrams = [
            change(),
            new_page,
            change(id=90, type="log", title="Spam Page", comment="spam", user="Admin", log_id=12,
                   log_type="delete", log_action="delete", log_params=[],
                   log_action_comment='deleted "[[Spam Page]]": spam'),
            change(id=91, type="log", title="Old", comment="", user="Mover", log_id=13, log_type="move",
                   log_action="move", log_params={"target": "New", "noredir": "0"},
                   log_action_comment="moved [[Old]] to [[New]]"),
            change(id=92, type="log", title="User:Vandal", comment="vandalism", user="Admin", log_id=14,
                   log_type="block", log_action="block",
                   log_params={"duration": "1 day", "flags": ["nocreate"]},
                   log_action_comment="blocked [[User:Vandal]] with an expiration time of 1 day: vandalism"),
            change(id=93, type="categorize", title="Category:Greetings", comment="[[Hello]] added"),
            change(id=94, title="Long", comment=HEBREW_COMMENT, length={"old": 100, "new": 1300},
                   notify_url="https://en.wikipedia.org/w/index.php?diff=44&oldid=43"),
        ]
        for datagram in datagrams:
            send(hub, "#en.wikipedia", datagram)

        expected_edit = ("\x0314[[\x0307Main Page\x0314]]\x034 M\x0310 \x0302https://en.wikipedia.org/w/index.php"
                         "?diff=42&oldid=41\x03 \x035*\x03 \x0303Alice\x03 \x035*\x03 (-2) \x0310fix typo\x03")
        expected_new = ("\x0314[[\x0307Hello \u05e9\u05dc\u05d5\u05dd\x0314]]\x034 !N\x0310 \x0302"
                        "https://en.wikipedia.org/w/index.php?oldid=50&rcid=77\x03 \x035*\x03 \x0303192.0.2.4\x03"
                        " \x035*\x03 (+900) \x0310new section\x03")
        expected_long = ("\x0314[[\x0307Long\x0314]]\x034 M\x0310 \x0302https://en.wikipedia.org/w/index.php"
                         "?diff=44&oldid=43\x03 \x035*\x03 \x0303Alice\x03 \x035*\x03 (+1200) \x0310"
                         + HEBREW_COMMENT + "\x03")
        for bot in bots:
            said = []
            while len(said) < 6:  # the categorize change is left out, as MediaWiki's IRC feed does
                event = bot.wait(lambda event: event.type == "pubmsg" and event.target == "#en.wikipedia"
                                 and event not in said)
                said.append(event)
            assert {event.source for event in said} == {SPEAKER}
            lines = [event.arguments[0] for event in said]
            assert lines[0] == expected_edit
            assert lines[1] == expected_new
            assert lines[2] == ("\x0314[[\x0307Special:Log/delete\x0314]]\x034 delete\x0310 \x0302\x03 \x035*\x03 "
                                "\x0303Admin\x03 \x035*\x03  \x0310deleted \"[[\x0302Spam Page\x0310]]\": spam\x03")
            # Past IRC's 512 bytes the line is MediaWiki's, cut at a character boundary.
            whole = f":{SPEAKER} PRIVMSG #en.wikipedia :{lines[5]}\r\n".encode()
            assert expected_long.startswith(lines[5]) and 500 < len(whole) <= 512, len(whole)
            fields = [cvnbot_fields(line) for line in lines]
            assert [f[2] for f in fields] == ["Main Page", "Hello \u05e9\u05dc\u05d5\u05dd", "Special:Log/delete",
                                              "Special:Log/move", "Special:Log/block", "Long"]
            assert [f[10] for f in fields] == ["Alice", "192.0.2.4", "Admin", "Mover", "Admin", "Alice"]
            assert fields[0][6] == "https://en.wikipedia.org/w/index.php?diff=42&oldid=41"
            assert fields[0][4] == " M" and "N" in fields[1][4]
            assert "vandalism" in fields[4][14]
            assert fields[3][4] == " move" and "[[\x0302Old\x0310]]" in fields[3][14]

        # Nobody but the publisher speaks, and its nick and the speaker's stay theirs (SPEC §8).
        raw = Raw(hub)
        raw.send("NICK rc-pmtpa", "USER x 0 * :x")
        raw.expect(r" 433 .*rc-pmtpa")
        raw.send("NICK wmf")
        raw.expect(r" 433 \S+ wmf ")
        raw.send("NICK cvnbot")
        raw.expect(r" 001 cvnbot ")
        raw.send("PRIVMSG #en.wikipedia :hello", "WHOIS rc-pmtpa", "NICK rc-pmtpa")
        raw.expect(r" 404 cvnbot #en.wikipedia ")
        assert parse(raw.expect(r" 311 "))[3][1:4] == ["rc-pmtpa", "rc-pmtpa", "irc.test.example"]
        raw.expect(r" 433 cvnbot rc-pmtpa ")
        raw.send("LUSERS")
        assert "There are 4 users" in raw.expect(r" 251 ")
        for bot in bots:
            bot.close()
    finally:
        hub.stop()


def test_prefix_channels_are_bounded_one_wiki_each_and_only_the_feed_publishers(tmp_path):
    hub = Hub(tmp_path, irc=COMPAT, publishers=PUBLISHERS)
    try:
        raw = Raw(hub).register("listener")
        send(hub, "#en.wikipedia", change(title="One"))
        send(hub, "#de.wikipedia", change(title="Eins", wiki="dewiki", server_name="de.wikipedia.org"))
        wait_for(lambda: "#de.wikipedia" in channel_list(raw), what="#de.wikipedia made")
        raw.send("JOIN #de.wikipedia")
        raw.lines_until(r" 366 ")
        # Another wiki naming a made channel, and a third channel past the cap of two: stored,
        # counted, no channel.
        send(hub, "#en.wikipedia", change(title="Zwei", wiki="dewiki", server_name="de.wikipedia.org"))
        send(hub, "#fr.wikipedia", change(title="Un", wiki="frwiki", server_name="fr.wikipedia.org"))
        # Another publisher's event naming a channel makes none: its feed did not ask for it.
        status, body = hub.request("POST", "/api/v1/events", [{"wiki": "theirwiki", "action": "page_changed",
                                                              "page": "P", "user": "U", "mw_channel": "#evil"}],
                                   token=OTHER_TOKEN)
        assert status in (200, 201), body
        # Sentinel: delivered in id order, so everything before it was fanned out.
        send(hub, "#de.wikipedia", change(title="Sentinel", wiki="dewiki", server_name="de.wikipedia.org"))
        lines = raw.lines_until(r"PRIVMSG #de.wikipedia .*Sentinel")
        # The channel carries its wiki: dewiki's "Zwei" is said here, though it named #en.wikipedia.
        said = [parse(line)[3][1] for line in lines if parse(line)[2] == "PRIVMSG"]
        assert len(said) == 2 and "[[\x0307Zwei\x0314]]" in said[0], said
        made = [name for name in channel_list(raw) if ".wikipedia" in name]
        assert sorted(made) == ["#de.wikipedia", "#en.wikipedia"]
        assert hub.metric("wikiwire_irc_prefix_refused_total") == 2
        assert hub.metric("wikiwire_irc_prefix_channels") == 2
        assert hub.last_id() == 6, "every change is stored, whatever its prefix"
        raw.send("JOIN #fr.wikipedia,#evil")
        raw.expect(r" 403 listener #fr.wikipedia ")
        raw.expect(r" 403 listener #evil ")
        # A restarted hub makes them again from the log, before any new change: bots rejoin at once.
        raw.close()
        hub.stop()
        hub.start()
        again = Raw(hub).register("listener")
        again.send("JOIN #en.wikipedia,#de.wikipedia")
        again.expect(r":listener!\S+ JOIN #en.wikipedia")
        again.expect(r":listener!\S+ JOIN #de.wikipedia")
        send(hub, "#en.wikipedia", change(title="After"))
        assert "rc-pmtpa!" in again.expect(r"PRIVMSG #en.wikipedia .*After")
    finally:
        hub.stop()


def test_without_compatibility_nicks_stay_unique_and_publishers_speak(tmp_path):
    hub = Hub(tmp_path, publishers=PUBLISHERS.replace('channels = "from-prefix"', ""))
    try:
        first = Raw(hub).register("cvnbot")
        second = Raw(hub)
        second.send("NICK cvnbot", "USER x 0 * :x")
        second.expect(r" 433 \* cvnbot ")
        send(hub, "#en.wikipedia", change(title="Plain"))
        first.send("JOIN #enwiki")
        first.lines_until(r" 366 ")
        send(hub, "#en.wikipedia", change(title="Sentinel"))
        line = first.expect(r"PRIVMSG #enwiki ")
        assert line.startswith(":wmf!wmf@publisher.irc.test.example ")
        first.send("JOIN #en.wikipedia")
        first.expect(r" 403 cvnbot #en.wikipedia ")
        assert "mw_channel" not in json.dumps(hub.get("/api/v1/events")["events"])
    finally:
        hub.stop()
