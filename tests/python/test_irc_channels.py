"""Channels (SPEC §3): fixed, +mnt, listeners hidden from each other, topics with the
description URL, the configured multi-wiki channel."""

from conftest import Lib, Raw, parse


def test_channels_are_fixed_and_listeners_cannot_create_them(hub):
    client = Lib(hub, "carol")
    client.wait_type("welcome")
    client.connection.join("#MoinMaster")
    client.wait_type("join", target="#MoinMaster")
    client.connection.join("#brand-new")
    nosuch = client.wait_type("nosuchchannel")
    assert nosuch.arguments[0] == "#brand-new"
    topic = client.wait_type("currenttopic")
    assert topic.arguments == ["#MoinMaster", f"Recent changes of MoinMaster | description: {hub.http}/api/v1/wikis/MoinMaster"]
    # The description URL in the topic works.
    assert hub.get("/api/v1/wikis/MoinMaster")["engine"] == "moin"
    client.close()


def test_modes_topic_and_names_show_only_publishers_and_yourself(hub):
    first = Raw(hub).register("first")
    second = Raw(hub).register("second")
    first.send("JOIN #MoinMaster.events")
    first.expect(r" 366 first #MoinMaster.events ")
    second.send("JOIN #MoinMaster.events")
    names = second.lines_until(r" 366 second #MoinMaster.events ")
    members = [word for line in names if parse(line)[2] == "353" for word in parse(line)[3][-1].split()]
    assert sorted(members) == ["+moin", "second"], members
    second.send("MODE #MoinMaster.events", "MODE #MoinMaster.events +b", "MODE #MoinMaster.events -m",
                "TOPIC #MoinMaster.events :mine now", "WHO #MoinMaster.events")
    assert parse(second.expect(r" 324 "))[3][1:] == ["#MoinMaster.events", "+mnt"]
    second.expect(r" 329 second #MoinMaster.events \d+")
    second.expect(r" 368 second #MoinMaster.events ")
    second.expect(r" 482 second #MoinMaster.events ")
    second.expect(r" 482 second #MoinMaster.events ")
    who = second.lines_until(r" 315 second #MoinMaster.events ")
    nicks = [parse(line)[3][5] for line in who if parse(line)[2] == "352"]
    assert nicks == ["moin", "second"], who
    flags = [parse(line)[3][6] for line in who if parse(line)[2] == "352"]
    assert flags[0] == "HB+", "publishers are voiced bots"
    # First never hears of second: no JOIN, PART or QUIT of another listener.
    second.send("PART #MoinMaster.events :bye")
    second.expect(r"PART #MoinMaster.events")
    second.send("QUIT :gone")
    second.wait_closed()
    assert not [line for line in first.drain(0.5) if "second" in line]


def test_list_and_whois(hub):
    raw = Raw(hub).register("lister")
    raw.send("LIST")
    listed = raw.lines_until(r" 323 ")
    names = [parse(line)[3][1] for line in listed if parse(line)[2] == "322"]
    assert set(names) == {"#MoinMaster", "#MoinMaster.events", "#HelpWiki", "#HelpWiki.events",
                          "#DokuWiki", "#DokuWiki.events", "#antispam"}
    antispam = next(parse(line)[3] for line in listed if parse(line)[3][1] == "#antispam")
    assert antispam[2] == "2", "both publishers speak in #antispam"
    raw.send("WHOIS moin")
    whois = raw.lines_until(r" 318 lister moin ")
    codes = [parse(line)[2] for line in whois]
    for code in ["311", "319", "312", "330", "335"]:
        assert code in codes, (code, whois)
    raw.send("WHOIS nobody")
    raw.expect(r" 401 lister nobody ")
    raw.send("WHOIS HistServ")
    raw.expect(r" 311 lister HistServ ")


def test_a_multi_wiki_channel_carries_only_its_filter_and_names_the_wiki(hub):
    listener = Lib(hub, "antispammer")
    listener.wait_type("welcome")
    listener.connection.join("#antispam")
    listener.wait_type("endofnames")
    hub.publish({"wiki": "MoinMaster", "action": "page_changed", "page": "Front", "user": "u"})
    hub.publish({"wiki": "MoinMaster", "action": "antispam_updated", "page": "BadContent", "user": "u"})
    hub.publish({"wiki": "DokuWiki", "action": "antispam_updated", "page": "wiki:blacklist", "user": "d"},
                token=__import__("conftest").DOKU_TOKEN)
    first = listener.wait_type("pubmsg", target="#antispam")
    second = listener.wait(lambda event: event.type == "pubmsg" and event is not first)
    assert first.source.nick == "moin" and first.arguments[0].startswith("MoinMaster: [[BadContent]] antispam_updated")
    assert second.source.nick == "doku" and second.arguments[0].startswith("DokuWiki: [[wiki:blacklist]] antispam_updated")
    listener.pump(0.5)
    assert len([event for event in listener.events if event.type == "pubmsg"]) == 2
    listener.close()


def test_user_modes(hub):
    raw = Raw(hub).register("moder")
    raw.send("MODE moder +i", "MODE moder", "MODE moder +o", "MODE someone")
    raw.expect(r":moder!\S+ MODE moder \+i")
    raw.expect(r" 221 moder \+i")
    raw.expect(r" 501 moder ")
    raw.expect(r" 502 moder ")
