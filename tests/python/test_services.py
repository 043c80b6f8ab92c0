"""Publishing into a network with services (seed 1, "Using mode +R freenode channels"): InspIRCd 3
linked to Anope 2.0, both from Debian. The relay's nick is a registered account; it logs in by
SASL through services (or NickServ IDENTIFY after connecting), ChanServ voices it in a registered
channel whose modes are locked moderated and registered-only-to-speak, an impostor of its nick
is renamed by NickServ and cannot speak, and `wikiwire listen --trust` receives every real event
exactly once across restarts of services and of the IRCd."""

import json
import re
import time
import urllib.parse

from conftest import Hub, Raw, free_port, parse, wait_for
from services_network import ServicesNetwork
from test_listen import Listener
from test_relay import Observer

RELAY_PASSWORD = "relay-password-for-tests"
OWNER_PASSWORD = "owner-password-for-tests"


def edit(page):
    return {"wiki": "MoinMaster", "action": "SAVE", "page": page, "user": "u"}


def services(raw, service, command, expect):
    """Sends a command to a service and waits for its NOTICE matching `expect`."""
    raw.send(f"PRIVMSG {service} :{command}")
    return raw.expect(rf":{service}!\S+ NOTICE \S+ :.*{expect}", timeout=15)


def connect(network, nick):
    raw = Raw(network.port)
    raw.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
    raw.expect(r" (376|422) ")
    return raw


def register(network, nick, password):
    raw = connect(network, nick)
    services(raw, "NickServ", f"REGISTER {password} {nick}@wiki.test", "registered")
    return raw


def identify(network, nick, password):
    raw = connect(network, nick)
    services(raw, "NickServ", f"IDENTIFY {password}", "Password accepted")
    return raw


def prepare_channel(network, channel):
    """What an operator types (docs/OPERATING.md): the relay's account, the channel registered by
    its owner, modes locked, the relay voiced on join."""
    register(network, "wikirelay", RELAY_PASSWORD).send("QUIT :registered")
    owner = register(network, "wikiop", OWNER_PASSWORD)
    owner.send(f"JOIN {channel}")
    owner.expect(rf" 366 wikiop {channel} ")
    services(owner, "ChanServ", f"REGISTER {channel} wiki changes", "registered")
    services(owner, "ChanServ", f"MODE {channel} LOCK ADD +mntM", "locked|Lock")
    services(owner, "ChanServ", f"FLAGS {channel} MODIFY wikirelay +V", "wikirelay")
    return owner


class Watcher(Observer):
    """Someone in the channel with account-tag, counting only lines from a logged-in speaker (the
    relay) and keeping the others apart; it can join again after an IRCd restart."""

    def __init__(self, network, channel, nick="watcher"):
        self.network, self.channel, self.nick = network, channel, nick
        self.ids = []
        self.accounts = set()
        self.strangers = []
        self.connect()

    def connect(self):
        self.raw = Raw(self.network.port)
        self.raw.send("CAP REQ :account-tag", "CAP END", f"NICK {self.nick}", "USER w 0 * :w")
        self.raw.expect(r" (376|422) ")
        self.raw.send(f"JOIN {self.channel}")
        self.names = " ".join(self.raw.lines_until(r" 366 "))

    def take(self, line):
        tags, source, verb, params = parse(line)
        if verb != "PRIVMSG":
            return
        if tags.get("account") is None:
            self.strangers.append(line)  # not logged in: not the relay
            return
        self.accounts.add(tags["account"])
        self.ids.append(int(dict(urllib.parse.parse_qsl(params[1]))["id"]))


def relay(network, channel, auth):
    return (f'[[relay]]\nurl = "irc://127.0.0.1:{network.port}/{channel}"\nnick = "wikirelay"\n'
            f'password = "{RELAY_PASSWORD}"\nauth = "{auth}"\nformat = "packed"\nfilter = "wiki=MoinMaster"\n')


def test_relay_with_sasl_through_services_survives_restarts_and_impostors(tmp_path):
    network = ServicesNetwork(tmp_path / "network")
    hub = None
    try:
        channel = "#wiki-feed"
        owner = prepare_channel(network, channel)
        (tmp_path / "hub").mkdir()
        hub = Hub(tmp_path / "hub", ports=(free_port(), free_port()), extra=relay(network, channel, "sasl"))
        wait_for(lambda: hub.metric("wikiwire_relay_connected") == 1, what="the relay to join")
        watcher = Watcher(network, channel)
        assert "+wikirelay" in watcher.names, f"ChanServ voiced the relay: {watcher.names}"
        watcher.raw.send(f"MODE {channel}")
        modes = parse(watcher.raw.expect(r" 324 "))[3][2]
        assert "m" in modes and "M" in modes, modes
        (tmp_path / "listen").mkdir()
        listener = Listener(tmp_path / "listen", "--irc", f"irc://127.0.0.1:{network.port}/{channel}",
                            "--http", hub.http, "--trust", "wikirelay", "--filter", "wiki=MoinMaster",
                            "--state", str(tmp_path / "listen" / "cursor.json"), "--since", "0", "--format", "json")
        listener.wait_subscribed()
        published = hub.publish(*[edit(f"First {n}") for n in range(3)])
        listener.wait_for(3)
        watcher.collect_until(published[-1])
        assert watcher.accounts == {"wikirelay"}, "account-tag names the relay's account on its lines"

        # Services restart: the relay keeps its place and its voice; nothing is lost.
        network.stop_services()
        published += hub.publish(*[edit(f"Services down {n}") for n in range(3)])
        network.start_services()
        published += hub.publish(*[edit(f"Services back {n}") for n in range(3)])
        watcher.collect_until(published[-1])
        listener.wait_for(9)

        # IRCd restart: everyone is cut off; the relay logs in again by SASL, is voiced again, and
        # resumes after the last line the network acknowledged.
        network.stop_ircd()
        watcher.drain_until_closed(3)
        published += hub.publish(*[edit(f"IRCd down {n}") for n in range(3)])
        before = network.synced()
        network.start_ircd()
        network.wait_linked(before)
        watcher.connect()
        published += hub.publish(edit("IRCd back"))
        watcher.collect_until(published[-1], timeout=120)
        listener.wait_for(13, timeout=120)

        # An impostor takes the nick while the relay is away: NickServ renames it, and it cannot
        # speak in the channel meanwhile; the listener ignores it either way.
        assert hub.stop() == 0
        watcher.drain_until_closed(2)
        impostor = connect(network, "wikirelay")
        impostor.send(f"JOIN {channel}")
        impostor.expect(r" 366 ")
        fake = "id=999&time=2026-01-01T00:00:00.000Z&wiki=MoinMaster&action=page_changed&page=Fake&user=evil"
        impostor.send(f"PRIVMSG {channel} :{fake}")
        impostor.expect(rf" (404|477) wikirelay {channel} ")  # moderated, or +M: identified users only
        # Even voiced by a careless operator, its line carries no account: the listener ignores it.
        owner = identify(network, "wikiop", OWNER_PASSWORD)  # its first connection died with the IRCd
        owner.send(f"PRIVMSG ChanServ :VOICE {channel} wikirelay")
        impostor.expect(rf"MODE {channel} \+v :?wikirelay")
        impostor.send(f"PRIVMSG {channel} :{fake}", "PING :spoken")
        refused = [line for line in impostor.lines_until(r"PONG") if re.search(r" (404|477) ", line)]
        renamed = parse(impostor.expect(r" NICK ", timeout=30))
        assert renamed[1].startswith("wikirelay!") and renamed[3][0] != "wikirelay", renamed
        # The relay comes back; NickServ may still hold the nick, so it may be wikirelay_ now:
        # its account is what counts.
        hub.start()
        wait_for(lambda: hub.metric("wikiwire_relay_connected") == 1, what="the relay to come back")
        published += hub.publish(edit("After the impostor"))
        listener.wait_for(14, timeout=60)
        published += hub.publish(edit("Sentinel"))  # once it is here, a late repeat would be too
        listener.wait_for(15, timeout=60)
        watcher.collect_until(published[-1])
        listener.stop()
        ids = [json.loads(line)["id"] for line in listener.lines()]
        assert ids == published, "every real event exactly once, in order; nothing from the impostor"
        if not refused:
            assert watcher.strangers, "the impostor's line reached the channel"
        seen = watcher.ids
        assert sorted(set(seen)) == published and seen == sorted(seen), seen
        assert len(seen) - len(set(seen)) <= 1, f"at most the line in flight repeated: {seen}"
        owner.close()
    finally:
        if hub is not None and hub.process.poll() is None:
            hub.stop()
        network.stop()


def test_relay_identifies_with_nickserv_after_connecting(tmp_path):
    network = ServicesNetwork(tmp_path / "network")
    hub = None
    try:
        channel = "#wiki-nickserv"
        prepare_channel(network, channel)
        (tmp_path / "hub").mkdir()
        hub = Hub(tmp_path / "hub", extra=relay(network, channel, "nickserv"))
        wait_for(lambda: hub.metric("wikiwire_relay_connected") == 1, what="the relay to join")
        watcher = Watcher(network, channel)
        assert "+wikirelay" in watcher.names, watcher.names
        watcher.raw.send("WHOIS wikirelay")
        whois = watcher.raw.lines_until(r" 318 ")
        assert any(" 330 " in line and " wikirelay wikirelay " in line for line in whois), whois
        published = hub.publish(*[edit(f"Page {n}") for n in range(3)])
        watcher.collect_until(published[-1])
        assert watcher.ids == published
    finally:
        if hub is not None:
            hub.stop()
        network.stop()
