"""History on IRC (SPEC §3 "History on IRC"): CHATHISTORY with msgid and timestamp references,
batches with the original tags, limits and errors; HistServ for clients without it."""

import pytest

from conftest import Raw, parse

CAPS = ("draft/chathistory", "batch", "message-tags", "server-time", "labeled-response")


def ids_in(lines):
    return [int(parse(line)[0]["msgid"]) for line in lines if " PRIVMSG " in line]


@pytest.fixture
def history(hub):
    """20 MoinMaster events an hour apart (ids 1-20), and DokuWiki events in between."""
    from conftest import DOKU_TOKEN
    events = [{"wiki": "MoinMaster", "action": "SAVE", "page": f"Page {n}", "user": "u",
               "time": f"2026-01-01T{n:02d}:00:00Z"} for n in range(20)]
    hub.publish(*events)
    hub.publish({"wiki": "DokuWiki", "action": "SAVE", "page": "p", "user": "d", "time": "2026-01-01T05:30:00Z"},
                token=DOKU_TOKEN)
    client = Raw(hub).register("historian", caps=CAPS)
    return hub, client


def query(client, command):
    client.send(command)
    return client.lines_until(r"BATCH -")


def test_latest_before_after_around_between(history):
    hub, client = history
    assert ids_in(query(client, "CHATHISTORY LATEST #MoinMaster * 5")) == [16, 17, 18, 19, 20]
    assert ids_in(query(client, "CHATHISTORY LATEST #MoinMaster msgid=17 10")) == [18, 19, 20]
    assert ids_in(query(client, "CHATHISTORY BEFORE #MoinMaster msgid=10 3")) == [7, 8, 9]
    assert ids_in(query(client, "CHATHISTORY AFTER #MoinMaster msgid=10 3")) == [11, 12, 13]
    assert ids_in(query(client, "CHATHISTORY AROUND #MoinMaster msgid=10 4")) == [9, 10, 11, 12]
    assert ids_in(query(client, "CHATHISTORY BETWEEN #MoinMaster msgid=3 msgid=7 10")) == [4, 5, 6]
    assert ids_in(query(client, "CHATHISTORY BETWEEN #MoinMaster msgid=7 msgid=3 2")) == [5, 6]
    # Times are the events' own times; references exclude the instant given.
    assert ids_in(query(client, "CHATHISTORY AFTER #MoinMaster timestamp=2026-01-01T05:00:00.000Z 2")) == [7, 8]
    assert ids_in(query(client, "CHATHISTORY BEFORE #MoinMaster timestamp=2026-01-01T05:00:00.000Z 2")) == [4, 5]
    assert ids_in(query(client, "CHATHISTORY BETWEEN #MoinMaster timestamp=2026-01-01T01:00:00.000Z timestamp=2026-01-01T04:00:00.000Z 10")) == [3, 4]
    # The .events channel replays packed lines; DokuWiki's own channel has only its event.
    assert ids_in(query(client, "CHATHISTORY LATEST #DokuWiki * 10")) == [21]
    lines = query(client, "CHATHISTORY LATEST #MoinMaster.events * 1")
    assert parse([line for line in lines if "PRIVMSG" in line][0])[3][1].startswith("id=20&")


def test_batches_carry_the_original_tags_and_labels(history):
    hub, client = history
    lines = query(client, "@label=h1 CHATHISTORY LATEST #MoinMaster * 2")
    outer = parse(lines[0])
    assert outer[2] == "BATCH" and outer[0]["label"] == "h1" and outer[3][1] == "labeled-response"
    inner = parse(lines[1])
    assert inner[3][1:] == ["chathistory", "#MoinMaster"] and inner[0]["batch"] == outer[3][0][1:]
    message = parse(lines[2])
    assert message[0]["batch"] == inner[3][0][1:]
    event = hub.event(int(message[0]["msgid"]))
    assert message[0]["time"] == event["time"] and message[3][1].startswith("[[Page 18]] page_changed")
    # The labeled batch ends after the inner one.
    client.expect(r"BATCH -" + outer[3][0][1:])


def test_limits_and_errors_are_standard_replies(history):
    hub, client = history
    client.send("CHATHISTORY LATEST #MoinMaster * 500")
    assert len(ids_in(client.lines_until(r"BATCH -"))) == 21 - 1  # at most the server's limit (100): all 20
    for command, code in [
        ("CHATHISTORY FROB #MoinMaster * 5", "UNKNOWN_COMMAND"),
        ("CHATHISTORY LATEST #MoinMaster *", "NEED_MORE_PARAMS"),
        ("CHATHISTORY", "NEED_MORE_PARAMS"),
        ("CHATHISTORY LATEST #nowhere * 5", "INVALID_TARGET"),
        ("CHATHISTORY BEFORE #MoinMaster * 5", "INVALID_PARAMS"),
        ("CHATHISTORY AFTER #MoinMaster msgid=abc 5", "INVALID_PARAMS"),
        ("CHATHISTORY AFTER #MoinMaster msgid=1 zero", "INVALID_PARAMS"),
        ("CHATHISTORY TARGETS msgid=1 msgid=2 5", "INVALID_PARAMS"),
    ]:
        client.send(command)
        fail = parse(client.expect(r"FAIL CHATHISTORY "))
        assert fail[3][1] == code, (command, fail)


def test_targets_lists_joined_channels_with_activity(history):
    hub, client = history
    client.send("JOIN #MoinMaster,#DokuWiki,#HelpWiki")
    client.expect(r" 366 historian #HelpWiki ")
    lines = query(client, "CHATHISTORY TARGETS timestamp=2026-01-01T05:00:00.000Z timestamp=2026-01-01T06:30:00.000Z 10")
    targets = [parse(line)[3][1:] for line in lines if " CHATHISTORY TARGETS " in line]
    assert targets == [["#DokuWiki", "2026-01-01T05:30:00.000Z"], ["#MoinMaster", "2026-01-01T06:00:00.000Z"]]
    assert parse(lines[0])[3][1] == "draft/chathistory-targets"


def test_without_batch_the_lines_come_plain(hub):
    hub.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "Only", "user": "u"})
    client = Raw(hub).register("simple", caps=("draft/chathistory",))
    client.send("CHATHISTORY LATEST #MoinMaster * 5", "PING :done")
    lines = client.lines_until(r"PONG")
    assert [line for line in lines if "PRIVMSG" in line][0].startswith(":moin!")
    assert not [line for line in lines if "BATCH" in line]


def test_histserv_answers_private_messages(history):
    hub, client = history
    client.send("PRIVMSG HistServ :help")
    assert "HistServ sends you events" in client.expect(r"NOTICE historian :HistServ")
    client.send("PRIVMSG HistServ :since 18")
    notices = client.lines_until(r"NOTICE historian :#21 ")
    assert parse(notices[-4])[3][1] == "3 event(s) of all wikis:"
    assert parse(notices[-3])[3][1].startswith("#19 MoinMaster: [[Page 18]] page_changed")
    client.send("PRIVMSG HistServ :from 2026-01-01T02:00:00Z to 2026-01-01T03:00:00Z #MoinMaster.events")
    client.expect(r"2 event\(s\) of #MoinMaster.events")
    assert parse(client.expect(r"NOTICE historian :id="))[3][1].startswith("id=3&")
    client.send("PRIVMSG HistServ :since 0 #MoinMaster")
    client.expect(r"20 event\(s\) of #MoinMaster")
    client.send("PRIVMSG HistServ :from yesterday", "PRIVMSG HistServ :since x", "PRIVMSG HistServ :since 1 #nope", "PRIVMSG HistServ :dance")
    client.expect(r"Times are RFC 3339")
    client.expect(r"is not an event id")
    client.expect(r"No channel #nope")
    client.expect(r"Unknown request")


def test_histserv_bounds_its_answer_and_gives_the_url(hub):
    hub.publish(*[{"wiki": "MoinMaster", "action": "SAVE", "page": f"P{n}", "user": "u"} for n in range(70)])
    client = Raw(hub).register("bulk")
    client.send("PRIVMSG HistServ :since 0 #MoinMaster")
    lines = client.lines_until(r"More: ")
    notices = [line for line in lines if " NOTICE bulk :#" in line]
    assert len(notices) == 50
    assert parse(lines[-1])[3][1] == f"More: {hub.http}/api/v1/events?since=50&wiki=MoinMaster"
