"""The Jabber notification bot (SPEC §5, seed 2) against Prosody from Debian, driven by slixmpp
users and by Python's xmlrpc.client the way MoinMoin calls `notification_bot_uri`."""

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
    (tmp_path / "hub").mkdir()
    hub = Hub(tmp_path / "hub", extra=prosody.hub_config())
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
    (tmp_path / "hub").mkdir()
    hub = Hub(tmp_path / "hub", extra=prosody.hub_config())
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
