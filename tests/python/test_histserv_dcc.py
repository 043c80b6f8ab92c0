"""HistServ by DCC (seed 1, "Getting old messages"): `/msg HistServ send since <id> [#channel]`
offers a file of JSON lines by a standard CTCP DCC SEND, received here by the DCC support of the
Python `irc` library. The port only serves the address that asked, the file is bounded, each
client has one offer at a time, and an offer can be refused (DCC REJECT) or left to expire."""

import json
import shlex
import socket
import struct
import time

import irc.client

from conftest import Hub, Lib, Raw, free_port, parse, wait_for


def edits(count):
    return [{"wiki": "MoinMaster", "action": "SAVE", "page": f"P{n}", "user": "u", "comment": "é" * n}
            for n in range(count)]


def next_event(client, predicate, timeout=10):
    """The first event after the last one taken that matches (`Lib.wait` looks from the start)."""
    deadline = time.monotonic() + timeout
    taken = getattr(client, "taken", 0)
    while True:
        for index in range(taken, len(client.events)):
            if predicate(client.events[index]):
                client.taken = index + 1
                return client.events[index]
        assert time.monotonic() < deadline, [(event.type, event.arguments[:1]) for event in client.events[taken:]][-10:]
        client.reactor.process_once(0.05)


def offer(client):
    """The next DCC SEND offered to `client`: (file, address, port, size)."""
    event = next_event(client, lambda event: event.type == "ctcp" and event.arguments[0] == "DCC"
                       and event.arguments[1].startswith("SEND "))
    _, name, address, port, size = shlex.split(event.arguments[1])
    return name, irc.client.ip_numstr_to_quad(address), int(port), int(size)


def registered(hub, nick="archivist"):
    """A client past its welcome (001)."""
    client = Lib(hub, nick)
    client.wait_type("welcome")
    return client


def ask(client, command):
    """Asks HistServ for a file: its DCC offer, as `offer` reads it."""
    client.connection.privmsg("HistServ", command)
    return offer(client)


def notice(client, text):
    return next_event(client, lambda event: event.type == "privnotice" and text in event.arguments[0]).arguments[0]


def receive(client, address, port):
    """Takes a DCC SEND as the `irc` library does: raw data, each chunk acknowledged with the count
    received so far; the sender closes once everything is acknowledged."""
    dcc = client.reactor.dcc("raw")
    received = bytearray()

    def on_data(connection, event):
        if connection is dcc:
            received.extend(event.arguments[0])
            dcc.send_bytes(struct.pack("!I", len(received)))

    client.reactor.add_global_handler("dccmsg", on_data)
    start = len(client.events)
    dcc.connect(address, port)
    try:
        deadline = time.monotonic() + 30
        while not any(event.type == "dcc_disconnect" for event in client.events[start:]):
            assert time.monotonic() < deadline, "the transfer did not end"
            client.reactor.process_once(0.05)
    finally:
        client.reactor.remove_global_handler("dccmsg", on_data)
    return bytes(received)


def test_events_by_dcc_bounded_one_offer_at_a_time(tmp_path):
    first = free_port()
    hub = Hub(tmp_path, irc=f'dcc_ports = "{first}-{first + 1}"\ndcc_timeout = "3s"\ndcc_max_events = 100')
    try:
        hub.publish(*edits(120))
        client = registered(hub)
        name, address, port, size = ask(client, "send since 0 #MoinMaster.events")
        assert name == "MoinMaster.events-since-0.jsonl" and address == "127.0.0.1" and first <= port <= first + 1
        notice(client, f"Offering 100 event(s) of #MoinMaster.events as {name} ({size} bytes)")
        notice(client, "The file ends at event 100; for the rest: /msg HistServ send since 100")
        # One offer at a time.
        client.connection.privmsg("HistServ", "send since 50")
        notice(client, "You already have a DCC offer open")
        # The port serves only the address that asked: a connection from elsewhere is closed.
        stranger = socket.socket()
        stranger.bind(("127.0.0.2", 0))
        stranger.settimeout(5)
        stranger.connect((address, port))
        assert stranger.recv(100) == b"", "a stranger gets nothing"
        stranger.close()
        data = receive(client, address, port)
        assert len(data) == size
        lines = data.decode().splitlines()
        assert [json.loads(line)["id"] for line in lines] == list(range(1, 101))
        assert json.loads(lines[99]) == hub.event(100), "the full event, as the HTTP API has it"
        notice(client, f"DCC transfer of {name} done ({size} bytes)")
        # The rest, from where the file ended; then an offer nobody takes expires.
        name, address, port, size = ask(client, "send since 100")
        notice(client, "Offering 20 event(s) of all wikis")
        notice(client, f"DCC offer of {name} expired")
        probe = socket.socket()
        assert probe.connect_ex((address, port)) != 0, "the port closes with the offer"
        probe.close()
        # Refused by the client (DCC REJECT): withdrawn at once, and a new offer may be asked.
        name, address, port, size = ask(client, "send from 2000-01-01T00:00:00Z #MoinMaster")
        assert name == "MoinMaster-from-2000-01-01T00_00_00.000Z.jsonl", name
        client.connection.ctcp_reply("HistServ", f"DCC REJECT SEND {name}")
        notice(client, f"DCC offer of {name} withdrawn")
        name, address, port, size = ask(client, "send since 119")
        assert [json.loads(line)["id"] for line in receive(client, address, port).decode().splitlines()] == [120]
        client.connection.privmsg("HistServ", "send since 120")
        notice(client, "No events match")
        client.close()
    finally:
        hub.stop()


def test_without_dcc_ports_histserv_says_so(hub):
    client = registered(hub, "hopeful")
    client.connection.privmsg("HistServ", "send since 0")
    notice(client, "This server offers no DCC")
    client.close()


def dcc_offer(raw):
    """The DCC SEND a raw client was offered: (file, port, size)."""
    line = raw.expect(r"PRIVMSG \S+ :\x01DCC SEND ")
    _, _, name, _, port, size = parse(line)[3][1].strip("\x01").split()
    return name, int(port), int(size)


def test_dcc_is_bounded_per_address_and_a_transfer_ends_with_its_client(tmp_path):
    """Issue 24: connect, `send since 0`, open the port and never read, QUIT, again: each offer
    held a rendered file and a socket for minutes, and one address could hold every port. Now an
    address holds at most `dcc_max_per_ip` (2) offers, others still get theirs, a transfer ends
    when its client leaves, and strangers knocking on a port are counted, not each logged."""
    first = free_port()
    hub = Hub(tmp_path, irc=f'dcc_ports = "{first}-{first + 5}"\ndcc_timeout = "60s"')
    try:
        hub.publish(*edits(200))
        greedy = [Raw(hub).register(f"greedy{n}") for n in range(3)]
        offered = []
        for raw in greedy[:2]:
            raw.send("PRIVMSG HistServ :send since 0")
            offered.append(dcc_offer(raw))
        greedy[2].send("PRIVMSG HistServ :send since 0")
        greedy[2].expect(r"NOTICE greedy2 :Your address has as many DCC transfers open as it may")
        other = Raw(hub, source="127.0.0.2").register("other")
        other.send("PRIVMSG HistServ :send since 150")
        assert dcc_offer(other)[0] == "all_wikis-since-150.jsonl", "another address is served"
        assert hub.metric("wikiwire_irc_dcc_open") == 3 and hub.metric("wikiwire_irc_dcc_refused_total") == 1
        # greedy0 opens its transfer, reads nothing, and leaves: the transfer ends with it.
        _, port, size = offered[0]
        receiver = socket.socket()
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        receiver.connect(("127.0.0.1", port))
        greedy[0].send("QUIT :bye")
        greedy[0].wait_closed()
        receiver.settimeout(5)
        received, deadline = 0, time.monotonic() + 5
        try:
            while chunk := receiver.recv(65536):
                received += len(chunk)
                assert time.monotonic() < deadline, "the transfer outlived its client"
        except ConnectionResetError:
            # Ended with data still unsent: the kernel may reset instead of closing. Ended all
            # the same.
            pass
        receiver.close()
        wait_for(lambda: hub.metric("wikiwire_irc_dcc_open") == 2, what="the place given back")
        greedy[2].send("PRIVMSG HistServ :send since 0")
        assert dcc_offer(greedy[2])[2] == size, "the address's freed place serves the next client"
        # Strangers at greedy1's port: each closed and counted; the log says so once per interval.
        _, port, _ = offered[1]
        for _ in range(30):
            stranger = socket.socket()
            stranger.bind(("127.0.0.3", 0))
            stranger.settimeout(5)
            stranger.connect(("127.0.0.1", port))
            assert stranger.recv(10) == b""
            stranger.close()
        wait_for(lambda: hub.metric("wikiwire_irc_dcc_strangers_total") == 30, what="30 strangers counted")
        logged = (tmp_path / "hub.log").read_text().count("a connection from another address refused")
        assert logged == 1, logged
        for raw in greedy[1:] + [other]:
            raw.send("QUIT")
            raw.wait_closed()
        wait_for(lambda: hub.metric("wikiwire_irc_dcc_open") == 0, what="every place given back")
    finally:
        hub.stop()


def test_a_dcc_file_holds_dcc_max_events_past_a_store_page_and_ends_at_dcc_max_bytes(tmp_path):
    first = free_port()
    hub = Hub(tmp_path, irc=f'dcc_ports = {first}\ndcc_max_events = 1200')
    try:
        for start in (0, 1000):
            hub.publish(*[{"wiki": "MoinMaster", "action": "SAVE", "page": f"P{n}", "user": "u"}
                          for n in range(start, start + (1000 if start == 0 else 300))])
        client = registered(hub)
        name, address, port, size = ask(client, "send since 0")
        notice(client, "Offering 1200 event(s) of all wikis")
        notice(client, "The file ends at event 1200; for the rest: /msg HistServ send since 1200")
        data = receive(client, address, port)
        assert [json.loads(line)["id"] for line in data.decode().splitlines()] == list(range(1, 1201))
        client.close()
    finally:
        hub.stop()
    (tmp_path / "small").mkdir()
    small = Hub(tmp_path / "small", irc=f'dcc_ports = {first}\ndcc_max_bytes = 4096')
    try:
        small.publish(*edits(100))
        client = registered(small)
        name, address, port, size = ask(client, "send since 0")
        assert size <= 4096
        ends = notice(client, "The file ends at event ")
        last = int(ends.split("The file ends at event ")[1].split(";")[0])
        data = receive(client, address, port)
        assert [json.loads(line)["id"] for line in data.decode().splitlines()] == list(range(1, last + 1))
        client.close()
    finally:
        small.stop()
