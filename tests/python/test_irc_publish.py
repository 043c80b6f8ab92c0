"""Publishing on IRC (SPEC §3 "Publishers"): SASL or PASS, reserved nicks, takeover, PRIVMSG of
packed events validated and stored, echo-message as the acknowledgement, and what listeners
receive — decoded back to exactly the event that was published (SPEC §2.3)."""

import json
import urllib.parse

from conftest import DOKU_TOKEN, MOIN_TOKEN, Lib, Raw, parse, tag

LISTENER_CAPS = ("message-tags", "server-time", "account-tag", "batch")


def pack(**fields):
    return urllib.parse.urlencode(fields)


def unpack(line):
    """What a program reading #<wiki>.events does: parse_qs with `+` and %-escapes."""
    pairs = urllib.parse.parse_qsl(line, keep_blank_values=True, strict_parsing=True)
    return dict(pairs)


def as_packed_fields(event):
    """The key/value pairs a complete packed line must carry for a stored event (SPEC §2.3)."""
    fields = {}
    for name in ["id", "time", "wiki", "action", "page", "user", "old_name", "revision", "old_revision", "file",
                 "size", "key", "comment"]:
        if name in event:
            fields[name] = str(event[name])
    for flag in ["minor", "bot"]:
        if event.get(flag):
            fields[flag] = "1"
    fields.update(event.get("extra", {}))
    return fields


def test_sasl_publisher_speaks_and_listeners_hear_it_everywhere(hub):
    listener = Raw(hub).register("reader", caps=LISTENER_CAPS)
    listener.send("JOIN #MoinMaster,#MoinMaster.events")
    listener.expect(r" 366 reader #MoinMaster.events ")
    publisher = Lib(hub, "moin", password=MOIN_TOKEN, sasl_login="moin")
    publisher.wait_type("welcome")
    publisher.connection.privmsg("#MoinMaster.events", pack(wiki="MoinMaster", action="SAVE", page="פתיחה", user="פלוני אלמוני", comment="first edit"))
    text = parse(listener.expect(r"PRIVMSG #MoinMaster :"))
    packed = parse(listener.expect(r"PRIVMSG #MoinMaster.events :"))
    assert text[1] == "moin!moin@publisher.irc.test.example"
    assert text[3][1] == "[[פתיחה]] page_changed https://master.example/%D7%A4%D7%AA%D7%99%D7%97%D7%94 * פלוני אלמוני * first edit"
    fields = unpack(packed[3][1])
    event = hub.event(int(fields["id"]))
    assert fields == {"id": str(event["id"]), "time": event["time"], "wiki": "MoinMaster", "action": "page_changed",
                      "page": "פתיחה", "user": "פלוני אלמוני", "comment": "first edit"}
    tags = packed[0]
    assert tags["msgid"] == str(event["id"]) and tags["account"] == "moin" and tags["time"] == event["time"]
    assert "bot" in tags
    assert json.loads(tags["+wikiwire/event"]) == event
    publisher.close()


def test_echo_message_acknowledges_with_the_assigned_id(hub):
    publisher = Raw(hub).register("moin", caps=("echo-message", "message-tags", "labeled-response"), sasl=("moin", MOIN_TOKEN))
    publisher.send("@label=pub1 PRIVMSG #MoinMaster.events :" + pack(wiki="MoinMaster", action="SAVENEW", page="New Page", user="Alice"))
    echo = parse(publisher.expect(r"PRIVMSG #MoinMaster.events :"))
    assert echo[0]["label"] == "pub1"
    event = hub.event(int(echo[0]["msgid"]))
    assert event["page"] == "New Page" and event["action"] == "page_created"
    assert unpack(echo[3][1])["id"] == echo[0]["msgid"]


def test_pass_login_and_events_from_http_appear_in_channels(hub):
    publisher = Raw(hub)
    publisher.send(f"PASS moin:{MOIN_TOKEN}", "NICK whatever", "USER x 0 * :x")
    assert parse(publisher.expect(r" 001 "))[3][0] == "moin", "a publisher's nick is its name"
    listener = Lib(hub, "httpwatcher")
    listener.wait_type("welcome")
    listener.connection.join("#HelpWiki")
    listener.wait_type("endofnames")
    hub.publish({"wiki": "HelpWiki", "action": "page_deleted", "page": "Old Help", "user": "Admin", "comment": "spam"})
    message = listener.wait_type("pubmsg", target="#HelpWiki")
    assert message.arguments[0] == "[[Old Help]] page_deleted https://master.example/Old%20Help * Admin * spam"
    assert message.source == "moin!moin@publisher.irc.test.example"
    listener.close()


def test_invalid_events_fail_and_are_neither_stored_nor_broadcast(hub):
    listener = Raw(hub).register("watcher")
    listener.send("JOIN #MoinMaster.events")
    listener.expect(r" 366 ")
    publisher = Raw(hub).register("moin", sasl=("moin", MOIN_TOKEN))
    before = hub.last_id()
    cases = [
        ("wiki=MoinMaster&action=SAVE&user=u", "page: required for page_changed"),
        ("wiki=MoinMaster&action=SAVE&page=%FF&user=u", "page: not valid UTF-8"),
        ("wiki=DokuWiki&action=SAVE&page=P&user=u", "does not belong in #MoinMaster.events"),
        ("just some chatter", "wiki: required"),
        ("wiki=MoinMaster&action=SAVE&page=P&user=u&id=7", "id: assigned by the hub"),
    ]
    for line, reason in cases:
        publisher.send("PRIVMSG #MoinMaster.events :" + line)
        failure = parse(publisher.expect(r"FAIL PRIVMSG "))
        assert failure[3][:3] == ["PRIVMSG", "INVALID_EVENT", "#MoinMaster.events"], failure
        assert reason in failure[3][3], (reason, failure)
    assert hub.last_id() == before
    assert not [line for line in listener.drain(0.5) if "PRIVMSG" in line]


def test_only_the_publisher_speaks_and_its_nick_is_reserved(hub):
    impostor = Raw(hub)
    impostor.send("NICK moin", "USER fake 0 * :Fake")
    impostor.expect(r" 433 \* moin ")
    impostor.send("NICK moin_")
    impostor.expect(r" 001 moin_ ")
    impostor.send("NICK doku")
    impostor.expect(r" 433 moin_ doku ")
    impostor.send("NICK HistServ")
    impostor.expect(r" 433 moin_ HistServ ")
    impostor.send("JOIN #MoinMaster", "PRIVMSG #MoinMaster :wiki=MoinMaster&action=SAVE&page=P&user=u")
    impostor.expect(r" 404 moin_ #MoinMaster ")
    # Another publisher cannot speak in a channel that is not its own.
    doku = Raw(hub).register("doku", sasl=("doku", DOKU_TOKEN))
    doku.send("PRIVMSG #MoinMaster.events :" + pack(wiki="DokuWiki", action="SAVE", page="p", user="u"))
    doku.expect(r" 404 doku #MoinMaster.events ")
    bad = Raw(hub)
    bad.send("CAP LS 302", "NICK moin", "USER m 0 * :M", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
    bad.expect(r"^AUTHENTICATE \+")
    import base64
    bad.send("AUTHENTICATE " + base64.b64encode(b"\0moin\0wrong-token").decode())
    bad.expect(r" 904 ")
    wrong_pass = Raw(hub)
    wrong_pass.send("PASS moin:nope", "NICK moin", "USER m 0 * :M")
    wrong_pass.expect(r" 464 ")
    wrong_pass.expect(r"^ERROR :Closing link: Password incorrect")


def test_a_second_login_takes_the_publisher_over_cleanly(hub):
    first = Raw(hub).register("moin", sasl=("moin", MOIN_TOKEN))
    second = Raw(hub).register("moin", sasl=("moin", MOIN_TOKEN), caps=("echo-message",))
    first.expect(r"^ERROR :Closing link: Logged in from elsewhere")
    first.wait_closed()
    second.send("PRIVMSG #MoinMaster.events :" + pack(wiki="MoinMaster", action="SAVE", page="After", user="u"))
    second.expect(r"PRIVMSG #MoinMaster.events :id=")
    second.send("NICK other")
    second.expect(r" 447 moin other ")


def test_tags_follow_capabilities(hub):
    plain = Raw(hub).register("plain")
    tagged = Raw(hub).register("tagged", caps=("server-time",))
    for client in (plain, tagged):
        client.send("JOIN #MoinMaster")
        client.expect(r" 366 ")
    hub.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "P", "user": "u"})
    assert plain.expect(r"PRIVMSG #MoinMaster").startswith(":moin!")
    tags = parse(tagged.expect(r"PRIVMSG #MoinMaster"))[0]
    assert set(tags) == {"time"}


def test_long_and_unusual_events_round_trip_through_the_packed_channel(hub):
    listener = Raw(hub).register("decoder", caps=("message-tags",))
    listener.send("JOIN #MoinMaster.events")
    listener.expect(r" 366 ")
    events = [
        {"wiki": "MoinMaster", "action": "SAVE", "page": "开始 页面/子页", "user": "用户 一", "comment": "修复"},
        {"wiki": "MoinMaster", "action": "SAVE/RENAME", "page": "New Name", "old_name": "Old Name", "user": "A B",
         "comment": "a+b=c & 100% sure", "revision": "12", "minor": True},
        {"wiki": "MoinMaster", "action": "ATTNEW", "page": "Help/Images", "file": "diagram one.png", "size": 2048, "user": "u",
         "urls": [{"url": "https://master.example/x", "description": "the file"}]},
        {"wiki": "MoinMaster", "action": "SAVE", "page": "ארוך", "user": "u", "comment": "מילה " * 300},
    ]
    ids = hub.publish(*events)
    for expected_id in ids:
        line = parse(listener.expect(r"PRIVMSG #MoinMaster.events :"))
        fields = unpack(line[3][1])
        assert len(":moin!moin@publisher.irc.test.example PRIVMSG #MoinMaster.events :".encode()) + len(line[3][1].encode()) + 2 <= 512
        stored = hub.event(expected_id)
        if fields.get("more") == "1":
            # Too long for one line: optional fields left out, the rest fetched by id.
            assert "comment" not in fields and stored["comment"].startswith("מילה")
            fields = {key: value for key, value in fields.items() if key != "more"}
            for key, value in fields.items():
                assert str(stored[key]) == value, key
        else:
            # Exactly the stored event: every field, nothing else. Links come as url pairs.
            pairs = urllib.parse.parse_qsl(line[3][1], keep_blank_values=True, strict_parsing=True)
            links = [value for name, value in pairs if name in ("url", "url_description")]
            assert links == [part for link in stored.get("urls", []) for part in (link["url"], link["description"])]
            fields = {name: value for name, value in fields.items() if name not in ("url", "url_description")}
            assert fields == as_packed_fields(stored)
    long_event = hub.event(ids[-1])
    assert len(long_event["comment"]) > 1000


def test_pipelined_lines_are_committed_and_answered_in_order(hub):
    """A wiki that writes many lines at once (issue 12): the hub reads on while earlier events are
    committed (one group commit for what is queued), yet every line is answered in its turn: the
    echoes carry increasing ids in the order sent, an invalid line's FAIL and a PING's PONG come
    exactly between their neighbours' answers, and history holds the events in the order sent."""
    publisher = Raw(hub).register("moin", caps=("echo-message", "message-tags", "labeled-response"), sasl=("moin", MOIN_TOKEN))
    lines = []
    for n in range(120):
        if n == 40:
            lines.append("@label=bad PRIVMSG #MoinMaster.events :" + pack(wiki="MoinMaster", action="SAVE", user="Alice"))
        elif n == 80:
            lines.append("@label=ping PING :between")
        else:
            lines.append(f"@label=l{n} PRIVMSG #MoinMaster.events :" + pack(wiki="MoinMaster", action="SAVE", page=f"Piped {n}", user="Alice"))
    publisher.send(*lines)
    answers = []
    while len(answers) < 120:
        line = publisher.read_line(30)
        assert line is not None, answers[-5:]
        tags, source, verb, params = parse(line)
        if "label" in tags:
            answers.append((tags["label"], verb, tags.get("msgid")))
    assert [label for label, _, _ in answers] == ["bad" if n == 40 else "ping" if n == 80 else f"l{n}" for n in range(120)]
    assert answers[40][1] == "FAIL" and answers[80][1] == "PONG"
    ids = [int(msgid) for label, verb, msgid in answers if verb == "PRIVMSG"]
    assert len(ids) == 118 and ids == sorted(ids) and len(set(ids)) == 118, ids
    stored = [event["page"] for event in hub.get(f"/api/v1/events?since={ids[0] - 1}&limit=200")["events"]]
    assert stored == [f"Piped {n}" for n in range(120) if n not in (40, 80)]
