"""MoinMoin 2 publishes to the hub through the plug-in in integrations/moin2 (SPEC §7), tested
against the real wiki: a person edits through the wiki's own forms, and the hub must get every
change once, in order, with fields and links that work; the spool must carry changes through a
hub outage, a `kill -9` of the wiki and a refused token. The NetworkChanges macro is rendered by
the wiki. One wiki and one hub serve the module (creating an instance takes seconds); every test
leaves both running with the right token."""

import json
import pathlib
import signal
import subprocess
import sys
import time
import xmlrpc.client

import pytest

from conftest import MOIN_TOKEN, ROOT, Hub, free_port, wait_for
from moin2_support import USER, VENV, MoinWiki, require_moin

WIKI = "Moin2Wiki"
TOKEN = "wwt_moin2-token-for-the-python-tests"


def publishers(wiki_port):
    return f"""
[[publisher]]
name = "moin2"
token = "{TOKEN}"
wikis = ["{WIKI}"]
engine = "moin2"
base_url = "http://127.0.0.1:{wiki_port}/"

[[publisher]]
name = "moin"
token = "{MOIN_TOKEN}"
wikis = ["MoinMaster", "HelpWiki"]
engine = "moin"
base_url = "https://master.example/"
"""


class Network:
    """The hub (restartable on its ports) and the wiki publishing to it."""

    def __init__(self, directory):
        self.directory = directory
        self.wiki_port = free_port()
        self.ports = (free_port(), free_port())
        (directory / "hub").mkdir()
        self.hub = Hub(directory / "hub", publishers=publishers(self.wiki_port), ports=self.ports)
        self.wiki = MoinWiki(directory / "wiki", self.hub.http, WIKI, TOKEN, port=self.wiki_port)
        self.person = self.wiki.browser()

    def restart_hub(self, extra=""):
        self.hub = Hub(self.directory / "hub", publishers=publishers(self.wiki_port), ports=self.ports, extra=extra)

    def events(self, since=0):
        return [event for event in self.hub.get(f"/api/v1/events?since={since}&limit=1000&links=1&wiki={WIKI}")["events"]]

    def wait_events(self, since, count):
        def arrived():
            events = self.events(since)
            return events if len(events) >= count else None
        return wait_for(arrived, 60, lambda: f"{count} events not on the hub; hub has {self.events(since)}\n"
                                            f"wiki log:\n{self.wiki.read_log()[-3000:]}")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    running = Network(tmp_path_factory.mktemp("moin2"))
    yield running
    running.wiki.stop()
    running.hub.stop()


def links(event):
    return {link["description"]: link["url"] for link in event["links"]}


def test_every_change_arrives_once_in_order_with_links_that_work(network):
    person, wiki = network.person, network.wiki
    start = network.hub.last_id()
    person.edit("Front Page", "Hello from MoinMoin 2.", comment="first words")
    person.edit("Front Page", "Hello from MoinMoin 2, edited.", comment="second thoughts")
    person.edit("פתיחה", "שלום", comment="עברית")
    person.edit("Docs", "The docs.")
    logo = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    person.upload("Docs/logo.png", logo, "image/png", comment="a logo")
    person.edit("Old Name", "soon renamed")
    person.rename("Old Name", "New Name", comment="a better name")
    person.delete("New Name", comment="not needed")

    events = network.wait_events(start, 8)
    assert [(event["action"], event["page"]) for event in events] == [
        ("page_created", "Front Page"),
        ("page_changed", "Front Page"),
        ("page_created", "פתיחה"),
        ("page_created", "Docs"),
        ("file_attached", "Docs/logo.png"),
        ("page_created", "Old Name"),
        ("page_renamed", "New Name"),
        ("page_deleted", "New Name"),
    ], json.dumps(events, indent=1, ensure_ascii=False)
    assert len({event["key"] for event in events}) == 8
    assert all(event["user"] == USER and event["key"] == f"{WIKI}:{event['revision']}" for event in events)
    assert [event.get("comment") for event in events] == [
        "first words", "second thoughts", "עברית", None, "a logo", None, "a better name", "not needed"]
    created, changed, hebrew, _, upload, old, renamed, deleted = events
    assert changed["old_revision"] == created["revision"]
    assert renamed["old_name"] == "Old Name" and renamed["old_revision"] == old["revision"]
    assert upload["file"] == "logo.png" and upload["size"] == len(logo)
    assert deleted["old_revision"] == renamed["revision"]

    # The links a subscriber gets lead to the wiki's own views.
    status, body = wiki.get(links(changed)["diff"].removeprefix(wiki.url))
    assert status == 200 and "edited" in body.decode(), body[:500]
    assert wiki.get(links(upload)["attachment"].removeprefix(wiki.url)) == (200, logo)
    status, body = wiki.get(links(hebrew)["page"].removeprefix(wiki.url))
    assert status == 200 and "שלום" in body.decode()
    status, body = wiki.get(links(changed)["history"].removeprefix(wiki.url))
    assert status == 200 and "second thoughts" in body.decode()
    assert wiki.spooled() == []

    # Nothing more comes: a later edit is the next event.
    person.edit("Sentinel", "after the others")
    assert [event["page"] for event in network.wait_events(start, 9)][8:] == ["Sentinel"]


def test_edits_while_the_hub_is_down_and_the_wiki_is_killed_arrive_in_order(network):
    person, wiki = network.person, network.wiki
    start = network.hub.last_id()
    network.hub.stop()
    for number in range(10):
        began = time.monotonic()
        person.edit(f"Outage {number}", f"written while the hub is down ({number})")
        assert time.monotonic() - began < 5, "a save waited for the hub"
    assert len(wiki.spooled()) == 10
    network.restart_hub()
    events = network.wait_events(start, 10)
    assert [event["page"] for event in events] == [f"Outage {number}" for number in range(10)]
    wait_for(lambda: wiki.spooled() == [], 30, "the spool did not empty")

    # The wiki killed with events in its spool sends them when it comes back.
    network.hub.stop()
    for number in range(3):
        person.edit(f"Killed {number}", "spooled, then the wiki is killed")
    waiting = wiki.spooled()
    assert len(waiting) == 3
    wiki.stop(signal.SIGKILL)
    network.restart_hub()
    wiki.start()  # no request: the sender starts with the wiki
    events = network.wait_events(start, 13)
    assert [event["page"] for event in events[10:]] == [f"Killed {number}" for number in range(3)]
    assert [event["key"] for event in events[10:]] == waiting
    network.person = wiki.browser()
    network.person.edit("Sentinel 2", "after the others")
    events = network.wait_events(start, 14)
    assert len(events) == 14 and len({event["key"] for event in events}) == 14


def test_a_refused_token_keeps_the_spool_and_says_so_in_the_log(network):
    person, wiki = network.person, network.wiki
    start = network.hub.last_id()
    wiki.token_file.write_text("wwt_not-the-token-of-this-wiki-at-all\n")
    person.edit("Refused 1", "the hub will not take this yet")
    person.edit("Refused 2", "nor this")
    wait_for(lambda: "refused the token (HTTP 401" in wiki.read_log(), 30, "no log line about the token")
    refused = 'wikiwire_publish_rejected_total{reason="unauthorized"}'
    wait_for(lambda: network.hub.metric(refused) >= 3, 30, "the wiki did not try again")
    assert wiki.read_log().count("refused the token") == 1, "the complaint is rate-limited"
    assert len(wiki.spooled()) == 2
    assert network.hub.last_id() == start
    wiki.token_file.write_text(TOKEN + "\n")  # read again before every attempt: no restart
    events = network.wait_events(start, 2)
    assert [event["page"] for event in events] == ["Refused 1", "Refused 2"]
    log = wiki.read_log()
    assert "the hub takes events again" in log
    assert TOKEN not in log and "wwt_not-the-token" not in log


def test_the_network_changes_macro_shows_other_wikis_and_says_when_the_hub_is_away(network):
    person, wiki = network.person, network.wiki
    network.hub.publish(
        {"wiki": "MoinMaster", "action": "page_changed", "page": "Help On Linking", "user": "Bob",
         "comment": "linked more", "revision": "42", "old_revision": "41"},
        {"wiki": "HelpWiki", "action": "page_created", "page": "עזרה", "user": "Dana"},
        {"wiki": "MoinMaster", "action": "page_changed", "page": "Other Things", "user": "Carl"},
    )
    person.edit("Network", '== Around us ==\n<<NetworkChanges(wiki="MoinMaster HelpWiki", page="Help*")>>\n')
    status, body = wiki.get("Network")
    page = body.decode()
    assert status == 200
    assert "Help On Linking" in page and "linked more" in page and "Bob" in page
    assert 'href="https://master.example/Help%20On%20Linking?action=diff&amp;rev1=41&amp;rev2=42"' in page, page
    assert "Other Things" not in page and "עזרה" not in page  # the page filter
    person.edit("Network Hebrew", '<<NetworkChanges(wiki="HelpWiki")>>\n')
    assert "עזרה" in wiki.get("Network%20Hebrew")[1].decode()

    network.hub.stop()
    try:
        status, body = wiki.get("Network")
        page = body.decode()
        assert status == 200
        assert f"The wikiwire hub at {network.hub.http} cannot be reached" in page, page
        assert "Help On Linking" in page  # the changes known before stay
        assert "Traceback" not in page and "execution failed" not in page
    finally:
        network.restart_hub()


def test_the_bot_serves_moin2_pages_and_its_changes_through_prosody(network, tmp_path):
    from xmpp_support import SECRET, Jabber, Prosody

    person, wiki = network.person, network.wiki
    person.edit("Bot Page", "Press the big button to start.", comment="for the bot")
    prosody = Prosody(tmp_path / "prosody")
    user = None
    try:
        prosody.register("bot", "bot-password-Xq7")
        alice = prosody.register("alice", "alice-pw")
        network.hub.stop()
        network.restart_hub(prosody.hub_config() + f'\n[wiki]\nurl = "{wiki.url}"\ndialect = "moin2"\n')
        assert xmlrpc.client.ServerProxy(network.hub.xmlrpc).addJIDToRoster(SECRET, alice) is True
        user = Jabber(prosody, alice, "alice-pw", forms=False)
        assert user.reply_to('getpage "Bot Page"')["body"].strip() == "Press the big button to start."
        html = user.reply_to("getpagehtml Bot Page")["body"]
        assert "<p" in html and "big button" in html, html
        assert "Bot Page" in user.reply_to("getpagelist")["body"].splitlines()
        info = user.reply_to('getpageinfo "Bot Page"')["body"]
        assert info.startswith("Bot Page: revision 1 by Alice"), info
        hits = user.reply_to("search button")["body"]
        assert "Bot Page — Press the big button to start" in hits and f"<{wiki.url}Bot%20Page>" in hits, hits
        assert "Bot Page" in user.reply_to("search title bot pa")["body"]
        assert user.reply_to('getpage "No Such Page"')["body"] == "No Such Page is empty or does not exist."
        assert user.reply_to('revertpage "Bot Page" 1')["body"] == "The wiki does not support revertpage."

        # Subscribing to the wiki's changes on the hub, as for any wiki.
        assert WIKI in user.reply_to(f'subscribe {WIKI} "Bot*"')["body"]
        person.edit("Bot Page", "Press the small button.", comment="smaller")
        got = user.wait_message(lambda m: m["type"] == "normal" and "Bot Page" in m["body"], 60)
        assert "Alice" in got["body"] and "smaller" in got["body"], got
    finally:
        if user:
            user.close()
        network.hub.stop()
        network.restart_hub()
        prosody.stop()


def test_the_plug_in_is_a_wheel_that_installs_into_a_fresh_wiki_virtualenv(tmp_path):
    """Issue 28: the wheel the operator guide's command builds, installed with pip into a new
    virtualenv beside MoinMoin 2, brings the handler and the macro with it."""
    require_moin()

    def run(*command):
        done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, ROOT / "integrations/moin2")
    [wheel] = dist.glob("wikiwire_moin2-*-py3-none-any.whl")
    moin_version = run(VENV / "bin/python", "-c", "import importlib.metadata as m; print(m.version('moin'))").strip()
    fresh = tmp_path / "wiki-venv"
    run(sys.executable, "-m", "venv", fresh)
    run(fresh / "bin/pip", "install", "--quiet", "--disable-pip-version-check", f"moin=={moin_version}", wheel)
    found = run(fresh / "bin/python", "-c", """
import importlib.metadata, pathlib, wikiwire_moin2
print(importlib.metadata.version("wikiwire-moin2"))
print(sorted(path.name for path in pathlib.Path(wikiwire_moin2.PLUGIN_DIR).rglob("*.py")))
print(callable(wikiwire_moin2.enable))
""").splitlines()
    assert found[2] == "True", found
    assert "NetworkChanges.py" in found[1], found
    assert pathlib.Path(str(wheel)).name.startswith(f"wikiwire_moin2-{found[0]}-")
