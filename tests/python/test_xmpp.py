"""The Jabber notification bot (SPEC §5, seed 2) against Prosody from Debian, driven by slixmpp
users and by Python's xmlrpc.client the way MoinMoin calls `notification_bot_uri`."""

import time
import xmlrpc.client

import pytest

from conftest import Hub
from xmpp_support import BOT, SECRET, Jabber, Prosody, form_fields, oob_urls, wait_for


@pytest.fixture
def prosody(tmp_path):
    server = Prosody(tmp_path / "prosody")
    server.register("bot", "bot-password-Xq7")
    yield server
    server.stop()


def bot_hub(tmp_path, prosody, extra=""):
    """A hub whose bot logs in to `prosody`, with the XML-RPC API for wikis."""
    (tmp_path / "hub").mkdir()
    return Hub(tmp_path / "hub", extra=prosody.hub_config() + extra)


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


def test_send_notification_reaches_a_form_client_and_a_plain_client(tmp_path, prosody):
    alice = prosody.register("alice", "alice-pw")
    bob = prosody.register("bob", "bob-pw")
    hub = bot_hub(tmp_path, prosody)
    try:
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc, allow_none=True)
        assert rpc.addJIDToRoster(SECRET, alice) is True
        assert rpc.addJIDToRoster(SECRET, bob) is True
        forms = Jabber(prosody, alice, "alice-pw", forms=True)
        plain = Jabber(prosody, bob, "bob-pw", forms=False)
        try:
            assert rpc.send_notification(SECRET, [alice, bob], notification("Front Page")) is True
            got = forms.wait_message(lambda m: str(m["from"]).startswith(BOT) and m["type"] == "normal", 60)
            assert "Front Page" in got["subject"]
            fields = form_fields(got)
            assert fields is not None, got.xml
            # The form carries the links as fields; OOB is only for clients without forms.
            assert "http://wiki.example/Front Page?action=diff" in fields.values()
            assert oob_urls(got) == []
            assert "http://" not in got["body"].split("\n")[0]
            text = plain.wait_message(lambda m: str(m["from"]).startswith(BOT) and m["type"] == "normal", 60)
            assert "has been changed by Alice" in text["body"]
            assert "http://wiki.example/Front Page?action=diff" in text["body"]
        finally:
            forms.close()
            plain.close()
    finally:
        hub.stop()
    assert SECRET not in (tmp_path / "hub" / "hub.log").read_text()


def test_wrong_secret_and_entity_expansion_are_refused(tmp_path, prosody):
    hub = bot_hub(tmp_path, prosody)
    try:
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)
        with pytest.raises(xmlrpc.client.Fault) as fault:
            rpc.send_notification("wrong", ["a@b"], notification())
        assert fault.value.faultCode == 1
        assert fault.value.faultString == "You are not allowed to use this bot!"
        bomb = (
            '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            "<methodCall><methodName>addJIDToRoster</methodName><params>"
            f"<param><value><string>{SECRET}</string></value></param>"
            "<param><value><string>&b;</string></value></param></params></methodCall>"
        )
        import urllib.request, urllib.error
        request = urllib.request.Request(hub.xmlrpc, bomb.encode(), {"Content-Type": "text/xml"})
        try:
            answer = urllib.request.urlopen(request, timeout=10).read().decode()
            assert "<fault>" in answer, answer
        except urllib.error.HTTPError as error:
            assert error.code in (400, 413), error
        assert rpc.system.multicall  # the proxy still works after the refusal
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
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)
        assert rpc.addJIDToRoster(SECRET, alice) is True
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
            # Anything repeated would arrive right behind the rest.
            time.sleep(2)
            subjects = [m["subject"] for m in user.notifications()]
            assert sorted(subjects) == sorted(f"[Wiki] Update of {page}" for page in pages), subjects
        finally:
            user.close()
    finally:
        hub.stop()


def test_hub_subscriptions_and_commands_in_chat(tmp_path, prosody):
    alice = prosody.register("alice", "alice-pw")
    hub = bot_hub(tmp_path, prosody)
    try:
        rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)
        assert rpc.addJIDToRoster(SECRET, alice) is True
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
            time.sleep(1)
            assert not [m for m in user.notifications() if "Front Page" in m["body"]]
            assert len([m for m in user.notifications() if "Help/Editing Pages" in m["body"]]) == 1
            user.reply_to("unsubscribe all")
            assert "Help/*" not in user.reply_to("subscriptions")["body"]
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
