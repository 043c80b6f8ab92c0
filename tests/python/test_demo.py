"""`wikiwire demo` (issue 6): the hub plus a simulated wiki farm; a newcomer sees events at once
in the history, on the live page's stream and on IRC."""

import time

from conftest import Hub, Raw, parse


def test_the_demo_edits_every_configured_wiki_and_irc_shows_it(tmp_path):
    hub = Hub(tmp_path, command="demo")
    try:
        raw = Raw(hub)
        raw.send("NICK newcomer", "USER newcomer 0 * :new")
        raw.expect(r" (376|422) ")
        raw.send("JOIN #MoinMaster", "JOIN #HelpWiki", "JOIN #DokuWiki")
        deadline = time.monotonic() + 60
        wikis = set()
        while len(wikis) < 2:
            assert time.monotonic() < deadline, f"only {wikis} edited"
            line = raw.read_line(max(deadline - time.monotonic(), 0))
            if line is None:
                continue
            _, source, verb, params = parse(line)
            if verb == "PRIVMSG":
                wikis.add(params[0])
        events = hub.get("/api/v1/events")["events"]
        assert events and all(event["action"] and event["user"] for event in events)
        assert {event["wiki"] for event in events} <= {"MoinMaster", "HelpWiki", "DokuWiki"}
    finally:
        assert hub.stop() == 0
