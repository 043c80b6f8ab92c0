"""Limits and bad input (SPEC §3 "Limits", §8): SendQ, per-address and total connection limits,
flood control, TLS, shutdown, and abuse that must not hurt anyone else."""

import random
import signal
import ssl
import subprocess
import threading
import time

import irc.connection

from conftest import MOIN_TOKEN, Hub, Lib, Raw, parse, wait_for

BIG_COMMENT = "x" * 3000


def test_a_listener_that_stops_reading_is_cut_off_while_others_keep_receiving(tmp_path):
    # The default SendQ (4 MiB): the stalled client overflows it plus its socket buffers.
    hub = Hub(tmp_path)
    try:
        slow = Raw(hub, receive_buffer=4096).register("slow", caps=("message-tags",))
        slow.send("JOIN #MoinMaster.events")
        slow.expect(r" 366 ")
        fast = Raw(hub).register("fast", caps=("message-tags",))
        fast.send("JOIN #MoinMaster.events")
        fast.expect(r" 366 ")
        total = 5000

        def publish():
            for batch in range(total // 100):
                hub.publish(*[{"wiki": "MoinMaster", "action": "SAVE", "page": f"P {batch}/{n}", "user": "u",
                               "comment": BIG_COMMENT} for n in range(100)])

        publisher = threading.Thread(target=publish)
        started = time.monotonic()
        publisher.start()
        received = []
        while len(received) < total:
            line = fast.expect(r"PRIVMSG #MoinMaster.events ", timeout=30)
            received.append(int(parse(line)[0]["msgid"]))
        publisher.join()
        print(f"fast listener: {total} events in {time.monotonic() - started:.2f}s while the other stalled")
        assert received == list(range(1, total + 1)), "every event, once, in order"
        wait_for(lambda: hub.metric("wikiwire_irc_sendq_exceeded_total") >= 1, what="SendQ exceeded")
        # The stalled client now reads what it was sent, then the goodbye.
        lines = slow.wait_closed(timeout=30)
        assert lines[-1] == "ERROR :Closing link: SendQ exceeded", [line[:200] for line in lines[-3:]]
        assert len([line for line in lines if "PRIVMSG" in line]) < total
    finally:
        hub.stop()


def test_connections_per_address_and_in_total_are_limited(tmp_path):
    hub = Hub(tmp_path, irc="max_per_ip = 3\nmax_clients = 5")
    try:
        kept = [Raw(hub).register(f"user{n}") for n in range(3)]
        refused = Raw(hub)
        assert refused.expect(r"^ERROR") == "ERROR :Closing link: Too many connections from your address"
        refused.wait_closed()
        kept[0].send("QUIT")
        kept[0].wait_closed()
        wait_for(lambda: hub.metric("wikiwire_irc_connections") == 2, what="the count to drop")
        kept.append(Raw(hub).register("again"))
        assert hub.metric("wikiwire_irc_refused_total") == 1
    finally:
        hub.stop()


def test_input_floods_are_slowed_not_dropped(tmp_path):
    hub = Hub(tmp_path, irc="flood_burst = 5\nflood_rate = 50")
    try:
        raw = Raw(hub).register("flooder")
        raw.send(*[f"PING :n{n}" for n in range(60)])
        pongs = [parse(raw.expect(r"PONG \S+ :?n\d+"))[3][-1] for _ in range(60)]
        assert pongs == [f"n{n}" for n in range(60)]
        assert hub.metric("wikiwire_irc_flood_waits_total") > 0
        raw.send("PING :alive")
        raw.expect("alive")
    finally:
        hub.stop()


def test_tls_listener_with_a_configured_certificate(tmp_path):
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(certificate), "-days", "2", "-subj", "/CN=irc.test.example",
         "-addext", "subjectAltName=DNS:irc.test.example"],
        check=True, capture_output=True,
    )
    hub = Hub(tmp_path, irc=f'tls_listen = "127.0.0.1:0"\ntls_cert = "{certificate}"\ntls_key = "{key}"')
    try:
        assert hub.ircs_port
        context = ssl.create_default_context(cafile=str(certificate))
        raw = Raw(hub.ircs_port, tls=context).register("secure")
        raw.send("JOIN #MoinMaster")
        raw.expect(r" 366 ")
        hub.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "Over TLS", "user": "u"})
        assert "[[Over TLS]]" in raw.expect(r"PRIVMSG #MoinMaster ")
        # The irc library over TLS, verifying the certificate.
        factory = irc.connection.Factory(wrapper=lambda sock: context.wrap_socket(sock, server_hostname="irc.test.example"))
        hub_tls = type("Port", (), {"irc_port": hub.ircs_port})
        client = Lib(hub_tls, "libtls", connect_factory=factory)
        client.wait_type("welcome")
        client.close()
        # A plain-text client on the TLS port gets nowhere and hurts nobody.
        plain = Raw(hub.ircs_port)
        plain.send("NICK x", "USER x 0 * :x")
        plain.wait_closed(timeout=15)
    finally:
        hub.stop()


def test_shutdown_says_goodbye_to_every_client(tmp_path):
    hub = Hub(tmp_path)
    clients = [Raw(hub).register(f"bye{n}") for n in range(3)]
    clients[0].send("JOIN #MoinMaster")
    started = time.monotonic()
    assert hub.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    for client in clients:
        assert "ERROR :Closing link: Server shutting down" in client.wait_closed()


def test_abuse_does_not_crash_the_hub_or_disturb_others(hub):
    watcher = Raw(hub).register("watcher")
    watcher.send("JOIN #MoinMaster")
    watcher.expect(r" 366 ")
    generator = random.Random(1234)
    nasty = [
        b"\x00\x01\x02\xff" * 50,
        b"@" + b"a" * 10000 + b" PING x",
        b"@tag=" + b"\\" * 3000 + b" PING x",
        b":" * 600,
        b"CAP REQ :" + b"x" * 400,
        b"AUTHENTICATE " + b"A" * 400,
        b"NICK " + "ü".encode() * 40,
        b"USER " + b" a" * 40,
        b"MODE #MoinMaster " + b"+b" * 100,
        b"PRIVMSG " + b",".join(b"#c%d" % n for n in range(100)) + b" :hi",
        b"JOIN " + b",".join(b"#MoinMaster" for _ in range(40)),
        b"\r\r\r\n\n\n",
        b"CHATHISTORY BETWEEN #MoinMaster msgid=99999999999999999999999 msgid=0 100",
        b"CHATHISTORY AROUND #MoinMaster timestamp=9999-12-31T23:59:59.999Z 100",
        b"WHO " + b"*" * 400,
    ]
    for _ in range(100):
        nasty.append(bytes(generator.randrange(256) for _ in range(generator.randrange(1, 700))))
    abusers = [Raw(hub) for _ in range(4)]
    for index, line in enumerate(nasty):
        try:
            abusers[index % 4].sock.sendall(line + b"\r\n")
        except OSError:
            pass
    for abuser in abusers:
        abuser.drain(0.2)
    hub.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "Still Here", "user": "u"})
    assert "[[Still Here]]" in watcher.expect(r"PRIVMSG #MoinMaster ")
    assert hub.process.poll() is None
    fresh = Raw(hub).register("fresh")
    fresh.send("PING :ok")
    fresh.expect("PONG")


def test_a_publisher_that_sends_faster_than_the_store_commits_is_read_no_faster(tmp_path):
    """Issue 24, item 6: a publisher's pipelined lines wait in a queue of `publish_queue` events
    (1,000); past it the hub stops reading the connection until the store catches up, so TCP
    pushes back instead of the hub buffering the publisher's input. Every line is still stored,
    in order."""
    hub = Hub(tmp_path, extra="[limits]\npublish_rate = 1000000\npublish_burst = 1000000\n")
    try:
        publisher = Raw(hub).register("moin", sasl=("moin", MOIN_TOKEN))
        count = 40_000
        data = "".join(f"PRIVMSG #MoinMaster.events :wiki=MoinMaster&action=SAVE&page=Piped+{n}&user=Alice\r\n"
                       for n in range(count)).encode()
        publisher.sock.settimeout(None)
        publisher.sock.sendall(data)
        wait_for(lambda: hub.last_id() == count, timeout=120, what="every line stored")
        assert hub.metric("wikiwire_irc_publish_waits_total") > 0, "the reader waited for the store"
        stored = hub.get(f"/api/v1/events?since={count - 3}&limit=10")["events"]
        assert [event["page"] for event in stored] == [f"Piped {n}" for n in range(count - 3, count)]
    finally:
        hub.stop()


def test_a_chathistory_flood_from_one_address_does_not_make_others_wait(tmp_path):
    """Issue 24, item 8: queries on a channel whose filter is matched row by row share a few scan
    permits. Many connections of one address flooding CHATHISTORY held them all (others waited
    ~30 scans); now each address has one such query at a time, so another address's query waits
    for at most one of the flood's scans."""
    extra = '[[channel]]\nname = "#pages"\nformat = "text"\nfilter = "page=Nothing*"\n'
    hub = Hub(tmp_path, extra=extra)
    try:
        for batch in range(10):
            hub.publish(*[{"wiki": "MoinMaster", "action": "SAVE", "page": f"P{batch}-{n}", "user": "u"}
                          for n in range(1000)])
        victim = Raw(hub, source="127.0.0.2").register("victim")

        def ask():
            started = time.monotonic()
            victim.send("CHATHISTORY LATEST #pages * 10", "PING :answered")
            victim.expect("PONG .*answered", timeout=60)
            return time.monotonic() - started

        alone = sorted(ask() for _ in range(3))[1]
        flooders = [Raw(hub).register(f"flood{n}") for n in range(16)]
        for flooder in flooders:
            flooder.send(*["CHATHISTORY LATEST #pages * 100"] * 20)
        wait_for(lambda: hub.metric("wikiwire_irc_history_waits_total") > 0, what="the flood queued behind itself")
        during = sorted(ask() for _ in range(3))[1]
        print(f"CHATHISTORY alone {alone * 1000:.0f} ms, during the flood {during * 1000:.0f} ms")
        assert during < 4 * alone + 0.2, (alone, during)
    finally:
        hub.stop()
