"""The Jabber notification bot (SPEC §5, seed 2) against Prosody from Debian, driven by slixmpp
users and by Python's xmlrpc.client the way MoinMoin calls `notification_bot_uri`."""

import base64
import time
import urllib.error
import urllib.request
import xmlrpc.client

import pytest

from conftest import MOIN_TOKEN, Hub, Raw
from xmpp_support import BOT, BOT_PASSWORD, DOMAIN, ROOMS, SECRET, Jabber, Prosody, form_fields, oob_urls, wait_for


@pytest.fixture
def prosody(tmp_path):
    server = Prosody(tmp_path / "prosody")
    server.register("bot", "bot-password-Xq7")
    yield server
    server.stop()


def bot_hub(tmp_path, prosody, extra="", xmpp=""):
    """A hub whose bot logs in to `prosody`, with the XML-RPC API for wikis; `xmpp` goes into the
    `[xmpp]` section, `extra` after it."""
    (tmp_path / "hub").mkdir()
    return Hub(tmp_path / "hub", extra=prosody.hub_config(extra=xmpp) + extra)


def notification(page="FrontPage", action="page_changed", **more):
    body = {
        "action": action,
        "subject": f"[Wiki] Update of {page}",
        "url_list": [{"url": f"http://wiki.example/{page}?action=diff", "description": "Changes"}],
        "text": f"Dear Wiki user, {page} has been changed by Alice.",
        "editor": "Alice",
        "comment": "fixed a typo",
        "page_name": page,
        "revision": "42",
    }
    body.update(more)
    return body


def rostered(hub, *jids):
    """The hub's XML-RPC API, once it has put `jids` on the bot's roster."""
    rpc = xmlrpc.client.ServerProxy(hub.xmlrpc, allow_none=True)
    for jid in jids:
        assert rpc.addJIDToRoster(SECRET, jid) is True
    return rpc


def test_send_notification_reaches_a_form_client_and_a_plain_client(tmp_path, prosody):
    alice = prosody.register("alice", "alice-pw")
    bob = prosody.register("bob", "bob-pw")
    hub = bot_hub(tmp_path, prosody)
    try:
        rpc = rostered(hub, alice, bob)
        forms = Jabber(prosody, alice, "alice-pw", forms=True)
        plain = Jabber(prosody, bob, "bob-pw", forms=False)
        try:
            diff = "@@ -1 +1 @@\n-Helo world\n+Hello world"
            assert rpc.send_notification(SECRET, [alice, bob], notification("Front Page", diff=diff)) is True
            got = forms.wait_message(lambda m: str(m["from"]).startswith(BOT) and m["type"] == "normal", 60)
            assert "Front Page" in got["subject"]
            fields = form_fields(got)
            assert fields is not None, got.xml
            diff_field = got.xml.find("{jabber:x:data}x/{jabber:x:data}field[@var='diff']")
            assert [v.text for v in diff_field.findall("{jabber:x:data}value")] == diff.split("\n")
            # The form carries the links as fields; OOB is only for clients without forms.
            assert "http://wiki.example/Front Page?action=diff" in fields.values()
            assert oob_urls(got) == []
            assert "http://" not in got["body"].split("\n")[0]
            # The body stands on its own: clients that advertise forms often show only the body.
            assert "http://wiki.example/Front Page?action=diff" in got["body"], got["body"]
            text = plain.wait_message(lambda m: str(m["from"]).startswith(BOT) and m["type"] == "normal", 60)
            assert "has been changed by Alice" in text["body"] and "+Hello world" in text["body"]
            assert "http://wiki.example/Front Page?action=diff" in text["body"]
        finally:
            forms.close()
            plain.close()
    finally:
        hub.stop()
    assert SECRET not in (tmp_path / "hub" / "hub.log").read_text()


@pytest.mark.parametrize("smacks", [True, False], ids=["with-smacks", "without-smacks"])
def test_notifications_queued_during_an_outage_arrive_once(tmp_path, smacks):
    """Without stream management the bot confirms by ping; what it had queued when the stream
    broke goes out on the next stream by itself and must not be sent a second time."""
    server = Prosody(tmp_path / "prosody", smacks=smacks)
    try:
        server.register("bot", BOT_PASSWORD)
        alice = server.register("alice", "alice-pw")
        hub = bot_hub(tmp_path, server)
        try:
            rpc = rostered(hub, alice)
            wait_for(lambda: hub.metric("wikiwire_xmpp_outbox") == 0, 60, "the roster change")
            server.stop()
            wait_for(lambda: hub.metric("wikiwire_xmpp_connected") == 0, 60, "the bot to notice")
            outage = [f"Outage {n}" for n in range(5)]
            for page in outage:
                assert rpc.send_notification(SECRET, [alice], notification(page)) is True
            server.start()
            wait_for(lambda: hub.metric("wikiwire_xmpp_connected") == 1, 120, "the bot back online")
            user = Jabber(server, alice, "alice-pw", forms=False)
            try:
                wait_for(lambda: len(user.notifications()) >= len(outage), 60, "the outage's notifications")
                # Delivery is in order: once the sentinel is here, a repeat would be too.
                assert rpc.send_notification(SECRET, [alice], notification("Sentinel")) is True
                sentinel = "[Wiki] Update of Sentinel"
                wait_for(lambda: sentinel in [m["subject"] for m in user.notifications()], 60, "the sentinel")
                subjects = [m["subject"] for m in user.notifications()]
                expected = [f"[Wiki] Update of {page}" for page in outage] + [sentinel]
                assert sorted(subjects) == sorted(expected), subjects
            finally:
                user.close()
        finally:
            hub.stop()
    finally:
        server.stop()


def test_the_bot_account_may_be_on_localhost_and_name_its_resource(tmp_path, prosody):
    """Prosody's default virtual host is `localhost`: a domain without a dot is a valid JID."""
    prosody.register("bot", BOT_PASSWORD, domain="localhost")
    alice = prosody.register("alice", "alice-pw", domain="localhost")
    (tmp_path / "hub").mkdir()
    hub = Hub(tmp_path / "hub", extra=prosody.hub_config(jid="bot@localhost/wikiwire"))
    try:
        rpc = rostered(hub, alice)
        user = Jabber(prosody, alice, "alice-pw", forms=False)
        try:
            assert rpc.send_notification(SECRET, [alice], notification("Local Host")) is True
            got = user.wait_message(lambda m: str(m["from"]).startswith("bot@localhost"), 60)
            assert str(got["from"]) == "bot@localhost/wikiwire", got["from"]
            assert "Local Host" in got["subject"]
        finally:
            user.close()
    finally:
        hub.stop()


class FromAddress(xmlrpc.client.Transport):
    """Calls from another loopback address (the hub sees another client)."""

    def __init__(self, source):
        super().__init__()
        self.source = source

    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.source_address = (self.source, 0)
        return connection


def test_wrong_secret_and_entity_expansion_are_refused(tmp_path, prosody):
    hub = bot_hub(tmp_path, prosody)
    try:
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)
        with pytest.raises(xmlrpc.client.Fault) as fault:
            rpc.send_notification("wrong", ["a@b"], notification())
        assert fault.value.faultCode == 1
        assert fault.value.faultString == "You are not allowed to use this bot!"
        # A flood of wrong secrets is counted, not written line by line into the log.
        multicall = xmlrpc.client.MultiCall(rpc)
        for _ in range(100):
            multicall.send_notification("wrong", ["a@b"], notification())
        with pytest.raises(xmlrpc.client.Fault):
            list(multicall())
        log = (tmp_path / "hub" / "hub.log").read_text()
        assert log.count("wrong secret refused") <= 2, log.count("wrong secret refused")
        # After five wrong secrets the address waits: even the right one is refused unseen.
        with pytest.raises(xmlrpc.client.Fault) as fault:
            rpc.addJIDToRoster(SECRET, "carol@wikiwire.test")
        assert fault.value.faultCode == 1 and "too many failed logins" in fault.value.faultString
        assert hub.metric("wikiwire_login_failures_total") == 5
        assert hub.metric("wikiwire_login_refused_total") == 97
        # The rest comes from another address, which is not slowed.
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc, transport=FromAddress("127.0.0.2"))
        bomb = (
            '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            "<methodCall><methodName>addJIDToRoster</methodName><params>"
            f"<param><value><string>{SECRET}</string></value></param>"
            "<param><value><string>&b;</string></value></param></params></methodCall>"
        )
        request = urllib.request.Request(hub.xmlrpc, bomb.encode(), {"Content-Type": "text/xml"})
        try:
            answer = urllib.request.urlopen(request, timeout=10).read().decode()
            assert "<fault>" in answer, answer
        except urllib.error.HTTPError as error:
            assert error.code in (400, 413), error
        assert rpc.system.multicall  # the proxy still works after the refusal
        # Malformed calls: each a fault with the interoperability code, nothing stored.
        for call, code in [
            (lambda: rpc.send_notification(SECRET, ["alice@wikiwire.test"]), -32602),
            (lambda: rpc.send_notification(SECRET, "not a list", notification()), -32602),
            (lambda: rpc.send_notification(SECRET, ["not a jid"], notification()), -32602),
            (lambda: rpc.send_notification(SECRET, ["a@wikiwire.test"], {"subject": "no action"}), -32602),
            (lambda: rpc.addJIDToRoster(SECRET, 42), -32602),
            (lambda: rpc.no_such_method(SECRET), -32601),
        ]:
            with pytest.raises(xmlrpc.client.Fault) as fault:
                call()
            assert fault.value.faultCode == code, fault.value
        request = urllib.request.Request(hub.xmlrpc, b"<methodCall><methodName>x", {"Content-Type": "text/xml"})
        assert "-32700" in urllib.request.urlopen(request, timeout=10).read().decode()
        # A body over the limit (1 MiB by default) is refused before it is read whole.
        huge = ("<?xml version='1.0'?><methodCall><methodName>send_notification</methodName><params>"
                + "<param><value><string>" + "x" * (2 * 1024 * 1024) + "</string></value></param></params></methodCall>")
        request = urllib.request.Request(hub.xmlrpc, huge.encode(), {"Content-Type": "text/xml"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 413
        assert hub.metric("wikiwire_xmpp_outbox") == 0
        multi = xmlrpc.client.MultiCall(rpc)
        multi.addJIDToRoster(SECRET, "carol@wikiwire.test")
        multi.removeJIDFromRoster(SECRET, "carol@wikiwire.test")
        assert list(multi()) == [True, True]
    finally:
        hub.stop()


def test_notifications_wait_in_the_outbox_through_a_server_outage_and_a_bot_restart(tmp_path, prosody):
    alice = prosody.register("alice", "alice-pw")
    hub = bot_hub(tmp_path, prosody)
    try:
        rpc = rostered(hub, alice)
        assert rpc.send_notification(SECRET, [alice], notification("Before")) is True
        prosody.stop()
        for page in ("Outage One", "Outage Two", "Outage Three"):
            assert rpc.send_notification(SECRET, [alice], notification(page)) is True
        prosody.start()
        hub.stop()
        hub.start()
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)
        assert rpc.send_notification(SECRET, [alice], notification("After Restart")) is True
        user = Jabber(prosody, alice, "alice-pw", forms=False)
        try:
            pages = ["Before", "Outage One", "Outage Two", "Outage Three", "After Restart"]
            wait_for(lambda: len(user.notifications()) >= len(pages), 60, "five notifications")
            # Anything repeated would be queued before a notification sent now: once that one is
            # here, nothing else can come.
            assert rpc.send_notification(SECRET, [alice], notification("Sentinel")) is True
            user.wait_message(lambda m: "Sentinel" in m["subject"], 60)
            subjects = [m["subject"] for m in user.notifications() if "Sentinel" not in m["subject"]]
            assert sorted(subjects) == sorted(f"[Wiki] Update of {page}" for page in pages), subjects
        finally:
            user.close()
    finally:
        hub.stop()


def test_hub_subscriptions_and_commands_in_chat(tmp_path, prosody):
    alice = prosody.register("alice", "alice-pw")
    hub = bot_hub(tmp_path, prosody)
    try:
        rpc = rostered(hub, alice)
        user = Jabber(prosody, alice, "alice-pw", forms=False)
        try:
            assert user.reply_to("ping")["body"]
            assert "subscribe" in user.reply_to("help")["body"]
            assert "MoinMaster" in user.reply_to('subscribe MoinMaster "Help/*"')["body"]
            assert "Help/*" in user.reply_to("subscriptions")["body"]
            hub.publish(
                {"wiki": "MoinMaster", "action": "SAVE", "page": "Front Page", "user": "Bob"},
                {"wiki": "MoinMaster", "action": "SAVE", "page": "Help/Editing Pages", "user": "Bob"},
            )
            got = user.wait_message(lambda m: m["type"] == "normal" and "Help/Editing Pages" in m["body"], 60)
            assert "Bob" in got["body"]
            # Published on IRC by the wiki's publisher: the same way to the user.
            publisher = Raw(hub)
            publisher.send(f"PASS moin:{MOIN_TOKEN}", "NICK moin", "USER moin 0 * :moin")
            publisher.expect(r" 001 ")
            publisher.send("PRIVMSG #MoinMaster.events :wiki=MoinMaster&action=SAVE&page=Help%2FFrom+IRC&user=Carol")
            # Published last, so it is a sentinel: nothing published before it can still come.
            user.wait_message(lambda m: m["type"] == "normal" and "Help/From IRC" in m["body"], 60)
            assert not [m for m in user.notifications() if "Front Page" in m["body"]]
            assert len([m for m in user.notifications() if "Help/Editing Pages" in m["body"]]) == 1
            assert len([m for m in user.notifications() if "Help/From IRC" in m["body"]]) == 1
            user.reply_to("unsubscribe all")
            assert "Help/*" not in user.reply_to("subscriptions")["body"]
            # Subscriptions are bounded per user (50): the next one is refused with a reason.
            for number in range(50):
                assert "MoinMaster" in user.reply_to(f'subscribe MoinMaster "re:^Page{number}/"')["body"]
            refused = user.reply_to('subscribe MoinMaster "re:^One/More"')["body"]
            assert "Too many subscriptions (at most 50)" in refused, refused
            user.reply_to("unsubscribe all")
            assert "MoinMaster" in user.reply_to('subscribe MoinMaster "Help/*"')["body"]
            # A malformed stanza from a client does not stop the bot.
            user.send_raw(f'<message to="{BOT}" type="chat"><body>ping</body><x xmlns="jabber:x:data" type="bogus"><field/></x></message>')
            assert user.reply_to("ping")["body"]
        finally:
            user.close()
    finally:
        hub.stop()
    log = (tmp_path / "hub" / "hub.log").read_text()
    assert SECRET not in log and "bot-password-Xq7" not in log


def test_roster_add_and_remove_really_change_the_subscription(tmp_path, prosody):
    alice = prosody.register("alice", "alice-pw")
    hub = bot_hub(tmp_path, prosody)
    user = Jabber(prosody, alice, "alice-pw")
    try:
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)

        def subscription():
            item = user.roster_items().get(BOT)
            return None if item is None or item["removed"] else item["subscription"]

        assert rpc.addJIDToRoster(SECRET, alice) is True
        wait_for(lambda: subscription() == "both", 30, "a mutual subscription with the bot")
        assert rpc.removeJIDFromRoster(SECRET, alice) is True
        wait_for(lambda: subscription() in (None, "none"), 30, "the subscription removed")
    finally:
        user.close()
        hub.stop()


def test_moin_dialect_commands_with_the_auth_token_flow_and_the_users_language(tmp_path, prosody):
    from moin_fixture import MoinWiki

    alice = prosody.register("alice", "alice-pw")
    wiki = MoinWiki("wiki-secret-Q2", {"Front Page": "= Welcome =\nHello there", "Other": "x"}, {alice: "de"})
    hub = bot_hub(tmp_path, prosody, f'\n[wiki]\nurl = "{wiki.url}"\ndialect = "moin"\nsecret = "wiki-secret-Q2"\n')
    user = Jabber(prosody, alice, "alice-pw", forms=False)
    try:
        assert "Hello there" in user.reply_to('getpage "Front Page"')["body"]
        assert "Other" in user.reply_to("getpagelist")["body"]
        # The token is reused: one getJabberAuthToken for two commands.
        assert wiki.calls.count("getJabberAuthToken") == 1, wiki.calls
        assert wiki.calls.count("applyAuthToken") == 2, wiki.calls
        # A token the wiki forgot fails once, and the bot fetches a new one.
        wiki.forget_tokens()
        assert "Hello there" in user.reply_to('getpage "Front Page"')["body"]
        assert wiki.calls.count("getJabberAuthToken") == 2, wiki.calls
        # German from getUserLanguageByJID: the help text is the German one.
        assert "Seitenmuster" in user.reply_to("help")["body"]
    finally:
        user.close()
        hub.stop()
        wiki.close()
    assert "wiki-secret-Q2" not in (tmp_path / "hub" / "hub.log").read_text()
    assert "token-1" not in (tmp_path / "hub" / "hub.log").read_text()


def test_moin_dialect_page_commands_search_form_and_revert(tmp_path, prosody):
    from moin_fixture import MoinWiki

    alice = prosody.register("alice", "alice-pw")
    wiki = MoinWiki("wiki-secret-Q2", {
        "Front Page": "= Welcome =\nHello there",
        "Help/Editing Pages": "How to edit: press the Edit link.",
    })
    wiki.edit("Front Page", "vandalised <b>")
    hub = bot_hub(tmp_path, prosody, f'\n[wiki]\nurl = "{wiki.url}"\ndialect = "moin"\nsecret = "wiki-secret-Q2"\n')
    user = Jabber(prosody, alice, "alice-pw", forms=True)
    try:
        assert "<p>vandalised &lt;b&gt;</p>" in user.reply_to('getpagehtml "Front Page"')["body"]
        info = user.reply_to("getpageinfo Front Page")["body"]
        assert info == "Front Page: revision 2 by Alice, 2026-11-22 21:00:05 UTC", info
        hits = user.reply_to("search press the edit")["body"]
        assert "Help/Editing Pages" in hits and "Front Page" not in hits, hits
        assert wiki.arguments[-1] == ("searchPagesEx", "press the edit", "text", 80, False, 0, False)
        titles = user.reply_to('search title "help/"')["body"]
        assert "Help/Editing Pages" in titles and "Front Page" not in titles, titles
        assert "Nothing found" in user.reply_to("search case regexp ^how")["body"]
        assert "Help/Editing Pages" in user.reply_to("search case regexp ^How")["body"]
        assert "Page does not exist" in user.reply_to('getpage "No Such Page"')["body"]

        # A revert is made as the user (the token applied first) and names the revision.
        reverted = user.reply_to('revertpage "Front Page" 1')["body"]
        assert reverted == "Reverted Front Page to revision 1.", reverted
        assert wiki.pages["Front Page"] == "= Welcome =\nHello there"
        assert wiki.arguments[-1] == ("revertPage", "Front Page", 1)
        assert "Usage" in user.reply_to("revertpage Front Page")["body"]

        # The search form, filled in and sent back.
        form = user.reply_to("searchform")
        assert form_fields(form) is not None and {"query", "type", "case", "regexp"} <= set(form_fields(form)), form.xml
        start = len(user.messages)
        user.submit_form(BOT, {"query": "edit", "type": "title", "case": "0", "regexp": "0"}, "urn:wikiwire:search")
        answer = user.wait_message(lambda m: str(m["from"]).startswith(BOT) and m["type"] == "chat", 20, start)
        assert "Help/Editing Pages" in answer["body"] and "Front Page" not in answer["body"], answer["body"]
        assert wiki.arguments[-1][:3] == ("searchPagesEx", "edit", "title")
    finally:
        user.close()
        hub.stop()
        wiki.close()


def test_a_client_with_oob_but_no_forms_gets_the_links_as_oob(tmp_path, prosody):
    carol = prosody.register("carol", "carol-pw")
    hub = bot_hub(tmp_path, prosody)
    try:
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc, allow_none=True)
        assert rpc.addJIDToRoster(SECRET, carol) is True
        user = Jabber(prosody, carol, "carol-pw", forms=False, oob=True)
        try:
            wait_for(lambda: user.roster_items().get(BOT, {}).get("subscription") == "both", 30, "subscription")
            # The bot learns the client's features from its presence (disco#info); a notification
            # sent after that is rendered for them.
            wait_for(lambda: hub.metric("wikiwire_xmpp_resources") >= 1, 30, "the bot to see the client")
            for action, extra in [
                ("page_deleted", {}),
                ("page_renamed", {"old_name": "Old Name"}),
                ("file_attached", {"attach_name": "plan.pdf", "attach_size": "12345"}),
                ("user_created", {"page_name": ""}),
            ]:
                assert rpc.send_notification(SECRET, [carol], notification("Some Page", action, **extra)) is True
            wait_for(lambda: len(user.notifications()) >= 4, 60, "four notifications")
            for message in user.notifications():
                assert oob_urls(message) == ["http://wiki.example/Some Page?action=diff"], message.xml
                assert form_fields(message) is None
                assert "http://wiki.example/Some Page?action=diff" in message["body"], message["body"]
        finally:
            user.close()
    finally:
        hub.stop()


def test_configured_rooms_receive_the_text_lines_of_their_filter(tmp_path, prosody):
    alice = prosody.register("alice", "alice-pw")
    room = f"changes@{ROOMS}"
    hub = bot_hub(tmp_path, prosody, f'\n[[xmpp.rooms]]\njid = "{room}"\nnick = "RecentChanges"\nfilter = "wiki=MoinMaster"\n')
    user = Jabber(prosody, alice, "alice-pw", muc=True)
    try:
        # The bot made the room (an instant room: Prosody locks a new room until configured).
        wait_for(lambda: hub.metric("wikiwire_xmpp_connected") == 1, 30, "the bot online")
        user.join_room(room, "alice")
        wait_for(lambda: "RecentChanges" in user.room_occupants(room), 30, "the bot in the room")
        hub.publish(
            {"wiki": "MoinMaster", "action": "SAVE", "page": "Front Page", "user": "Bob", "comment": "typo"},
            {"wiki": "HelpWiki", "action": "SAVE", "page": "Not In The Room", "user": "Bob"},
            {"wiki": "MoinMaster", "action": "SAVE/RENAME", "page": "New Name", "old_name": "Old Name", "user": "Eve"},
        )
        in_room = lambda m: m["type"] == "groupchat" and str(m["from"]) == f"{room}/RecentChanges"
        user.wait_message(lambda m: in_room(m) and "New Name" in m["body"], 30)
        lines = [m["body"] for m in user.messages if in_room(m)]
        assert len(lines) == 2, lines
        assert "[[Front Page]]" in lines[0] and "Bob" in lines[0] and "typo" in lines[0], lines
        assert not any("Not In The Room" in line for line in lines)
    finally:
        user.close()
        hub.stop()


def test_lines_for_a_room_that_refuses_the_bot_wait_until_it_lets_the_bot_in(tmp_path, prosody):
    alice = prosody.register("alice", "alice-pw")
    room = f"closed@{ROOMS}"
    owner = Jabber(prosody, alice, "alice-pw", muc=True)
    hub = None
    try:
        owner.make_members_only_room(room, "alice")
        hub = bot_hub(tmp_path, prosody, f'\n[[xmpp.rooms]]\njid = "{room}"\nnick = "RecentChanges"\n'
                                         'filter = "wiki=MoinMaster"\n', xmpp='room_retry = "1s"')
        wait_for(lambda: "the room refused the bot" in hub.read_log(), 30, "the refusal")
        hub.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "While Outside", "user": "Bob"})
        wait_for(lambda: hub.metric("wikiwire_xmpp_outbox") == 1, 30, "the line to wait in the outbox")
        assert not [m for m in owner.messages if m["type"] == "groupchat" and "While Outside" in m["body"]]
        assert hub.metric("wikiwire_xmpp_outbox") == 1, "the line waits"
        owner.make_member(room, BOT)
        line = owner.wait_message(lambda m: m["type"] == "groupchat" and "While Outside" in m["body"], 30)
        assert str(line["from"]) == f"{room}/RecentChanges"
        wait_for(lambda: hub.metric("wikiwire_xmpp_outbox") == 0, 30, "an empty outbox")
    finally:
        owner.close()
        if hub:
            hub.stop()


def test_presence_subscription_requests_follow_the_known_policy(tmp_path, prosody):
    alice = prosody.register("alice", "alice-pw")
    carol = prosody.register("carol", "carol-pw")
    hub = bot_hub(tmp_path, prosody, xmpp='subscription_policy = "known"')
    stranger = Jabber(prosody, carol, "carol-pw", forms=False)
    member = Jabber(prosody, alice, "alice-pw", forms=False)
    try:
        wait_for(lambda: hub.metric("wikiwire_xmpp_connected") == 1, 30, "the bot online")
        from_bot = lambda kind: lambda p: str(p["from"]).startswith(BOT) and p["type"] == kind
        stranger.do(stranger.client.send_presence, pto=BOT, ptype="subscribe")
        wait_for(lambda: any(map(from_bot("unsubscribed"), stranger.presences)), 30, "a refusal")
        assert not any(map(from_bot("subscribed"), stranger.presences))
        # Someone who subscribed to a wiki here is known: the bot accepts and asks back.
        assert "MoinMaster" in member.reply_to("subscribe MoinMaster")["body"]
        member.do(member.client.send_presence, pto=BOT, ptype="subscribe")
        wait_for(lambda: any(map(from_bot("subscribed"), member.presences)), 30, "an acceptance")
        wait_for(lambda: any(map(from_bot("subscribe"), member.presences)), 30, "the bot asking back")
    finally:
        stranger.close()
        member.close()
        hub.stop()


def test_wikirpc2_dialect_against_a_real_dokuwiki(tmp_path, prosody):
    """DokuWiki from Debian under `php -S`, its remote API on for the bot's account."""
    from dokuwiki_fixture import DokuWiki

    alice = prosody.register("alice", "alice-pw")
    wiki = DokuWiki(tmp_path / "doku")
    hub = None
    user = None
    try:
        wiki.rpc.wiki.putPage("Front Page", "Hello there, the first version.", {"sum": "created"})
        wiki.rpc.wiki.putPage("Help Editing", "How to edit: press the Edit button.", {"sum": "help"})
        time.sleep(1.1)  # DokuWiki's revisions are seconds
        wiki.rpc.wiki.putPage("Front Page", "vandalised", {"sum": "spam"})
        versions = wiki.rpc.wiki.getPageVersions("Front Page", 0)
        current, first = versions[0]["version"], versions[-1]["version"]
        hub = bot_hub(tmp_path, prosody, f'\n[wiki]\nurl = "{wiki.url}"\ndialect = "wikirpc2"\n'
                                         f'user = "{wiki.user}"\npassword = "{wiki.password}"\n')
        user = Jabber(prosody, alice, "alice-pw", forms=False)
        assert user.reply_to('getpage "Front Page"')["body"].strip() == "vandalised"
        html = user.reply_to("getpagehtml Front Page")["body"]
        assert "<p>" in html and "vandalised" in html, html
        pages = user.reply_to("getpagelist")["body"]
        assert "front_page" in pages and "help_editing" in pages, pages
        info = user.reply_to('getpageinfo "Front Page"')["body"]
        assert info.startswith(f"front_page: revision {current} by {wiki.user}, "), info
        hits = user.reply_to("search press")["body"]
        assert "help_editing" in hits and "press the Edit" in hits and "<strong" not in hits, hits
        assert "front_page" in user.reply_to("search title front")["body"]
        assert "No Such Page is empty or does not exist." == user.reply_to('getpage "No Such Page"')["body"]

        reverted = user.reply_to(f'revertpage "Front Page" {first}')["body"]
        assert reverted == f"Reverted Front Page to revision {first}.", reverted
        assert wiki.rpc.wiki.getPage("Front Page").strip() == "Hello there, the first version."
        assert wiki.rpc.wiki.getPageVersions("Front Page", 0)[0]["sum"].startswith("reverted to revision")
    finally:
        if user:
            user.close()
        if hub:
            hub.stop()
        wiki.close()
    assert wiki.password not in (tmp_path / "hub" / "hub.log").read_text()


def test_a_bot_killed_mid_batch_sends_the_rest_after_a_restart(tmp_path, prosody):
    """kill -9 of the hub while the outbox drains, Prosody staying up: after a restart every
    notification arrives. One the server took just before the kill, but the bot had not yet
    crossed off, may come again — with the same stanza id, so a client can tell."""
    import signal

    alice = prosody.register("alice", "alice-pw")
    hub = bot_hub(tmp_path, prosody)
    user = Jabber(prosody, alice, "alice-pw", forms=False)
    try:
        rpc = rostered(hub, alice)
        wait_for(lambda: user.roster_items().get(BOT, {}).get("subscription") == "both", 30, "subscription")
        pages = [f"Batch Page {n}" for n in range(60)]
        calls = xmlrpc.client.MultiCall(rpc)
        for page in pages:
            calls.send_notification(SECRET, [alice], notification(page))
        assert list(calls()) == [True] * len(pages)
        hub.stop(signal.SIGKILL)
        before = len(user.notifications())
        hub.start()
        wait_for(lambda: {m["subject"] for m in user.notifications()} >= {f"[Wiki] Update of {p}" for p in pages},
                 60, "every notification")
        # A repeat would be queued before a notification sent now: once that one is here, none can come.
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)
        assert rpc.send_notification(SECRET, [alice], notification("Sentinel")) is True
        user.wait_message(lambda m: "Sentinel" in m["subject"], 60)
        by_subject = {}
        for message in user.notifications():
            by_subject.setdefault(message["subject"], []).append(message["id"])
        repeated = {subject: ids for subject, ids in by_subject.items() if len(ids) > 1}
        print(f"{before} of {len(pages)} delivered before the kill; repeated after it: {len(repeated)}")
        assert all(len(set(ids)) == 1 for ids in repeated.values()), repeated
        wait_for(lambda: hub.metric("wikiwire_xmpp_outbox") == 0, 30, "an empty outbox")
    finally:
        user.close()
        hub.stop()


def test_no_secret_reaches_the_log_even_at_trace(tmp_path, prosody, monkeypatch):
    monkeypatch.setenv("RUST_LOG", "trace")
    hub = bot_hub(tmp_path, prosody)
    user = None
    try:
        prosody.register("trace-user", "trace-password")
        user = Jabber(prosody, f"trace-user@{DOMAIN}", "trace-password")
        assert "pong" in user.reply_to("ping")["body"].lower()
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)
        assert rpc.send_notification(SECRET, [f"trace-user@{DOMAIN}"], notification())
        user.wait_message(lambda m: m["type"] == "normal")
    finally:
        if user:
            user.close()
        hub.stop()
    log = (tmp_path / "hub" / "hub.log").read_text()
    plain = base64.b64encode(f"\0bot\0{BOT_PASSWORD}".encode()).decode()
    for secret in (BOT_PASSWORD, SECRET, plain):
        assert secret not in log, f"{secret!r} in the log"
