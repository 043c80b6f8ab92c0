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

from conftest import Hub, Lib, free_port


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
        client = Lib(hub, "archivist")
        client.wait_type("welcome")
        client.connection.privmsg("HistServ", "send since 0 #MoinMaster.events")
        name, address, port, size = offer(client)
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
        client.connection.privmsg("HistServ", "send since 100")
        name, address, port, size = offer(client)
        notice(client, "Offering 20 event(s) of all wikis")
        notice(client, f"DCC offer of {name} expired")
        probe = socket.socket()
        assert probe.connect_ex((address, port)) != 0, "the port closes with the offer"
        probe.close()
        # Refused by the client (DCC REJECT): withdrawn at once, and a new offer may be asked.
        client.connection.privmsg("HistServ", "send from 2000-01-01T00:00:00Z #MoinMaster")
        name, address, port, size = offer(client)
        assert name == "MoinMaster-from-2000-01-01T00_00_00.000Z.jsonl", name
        client.connection.ctcp_reply("HistServ", f"DCC REJECT SEND {name}")
        notice(client, f"DCC offer of {name} withdrawn")
        client.connection.privmsg("HistServ", "send since 119")
        name, address, port, size = offer(client)
        assert [json.loads(line)["id"] for line in receive(client, address, port).decode().splitlines()] == [120]
        client.connection.privmsg("HistServ", "send since 120")
        notice(client, "No events match")
        client.close()
    finally:
        hub.stop()


def test_without_dcc_ports_histserv_says_so(hub):
    client = Lib(hub, "hopeful")
    client.wait_type("welcome")
    client.connection.privmsg("HistServ", "send since 0")
    notice(client, "This server offers no DCC")
    client.close()
