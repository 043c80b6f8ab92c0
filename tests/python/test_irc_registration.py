"""Registration and the basics of SPEC §3, with the `irc` library and raw sockets."""


from conftest import Hub, Lib, Raw, parse

ISUPPORT = [
    "NETWORK=TestNet", "CASEMAPPING=ascii", "CHANTYPES=#", "CHANMODES=,,,mnt", "PREFIX=(v)+",
    "CHANNELLEN=64", "NICKLEN=32", "BOT=B", "CHATHISTORY=100", "MSGREFTYPES=msgid,timestamp", "UTF8ONLY",
]


def test_the_irc_library_registers_and_sees_welcome_lusers_and_motd(tmp_path):
    hub = Hub(tmp_path, irc='motd = "Welcome to the test network\\nSecond line"')
    try:
        client = Lib(hub, "alice")
        welcome = client.wait_type("welcome")
        assert welcome.target == "alice"
        assert "TestNet" in welcome.arguments[0]
        client.wait_type("endofmotd")
        features = client.connection.features
        assert features.network == "TestNet"
        assert dict(features.prefix) == {"+": "v"}
        assert features.chantypes == "#"
        client.wait_type("luserclient")
        motd = [event.arguments[0] for event in client.events if event.type == "motd"]
        assert motd == ["- Welcome to the test network", "- Second line"]
        client.close()
    finally:
        hub.stop()


def test_isupport_lists_every_token_the_spec_names(hub):
    raw = Raw(hub)
    raw.send("NICK bob", "USER bob 0 * :Bob")
    lines = raw.lines_until(r" 376 | 422 ")
    tokens = []
    for line in lines:
        _, _, verb, params = parse(line)
        if verb == "005":
            tokens += params[1:-1]
    for token in ISUPPORT:
        assert token in tokens, (token, tokens)
    assert any(parse(line)[2] == "422" for line in lines), "no MOTD configured: 422"


def test_ping_pong_both_ways(tmp_path):
    hub = Hub(tmp_path, irc='ping_interval = "1s"\nping_timeout = "1s"')
    try:
        raw = Raw(hub)
        raw.send("PING :hello there")
        assert raw.expect(r"PONG") .endswith(":hello there")
        raw.send("NICK pinger", "USER p 0 * :P")
        raw.expect(r" 001 ")
        ping = parse(raw.expect(r"^PING "))
        raw.send(f"PONG :{ping[3][0]}")
        # The irc library answers PING itself and stays connected through several intervals.
        client = Lib(hub, "steady")
        client.wait_type("welcome")
        client.pump(3.5)
        assert client.connection.is_connected()
        assert not [event for event in client.events if event.type == "error"]
        # A client that never answers is dropped.
        silent = Raw(hub)
        silent.send("NICK silent", "USER s 0 * :S")
        silent.expect(r"^PING ")
        silent.expect(r"^ERROR :Closing link: Ping timeout", timeout=5)
        client.close()
    finally:
        hub.stop()


def test_registration_times_out(tmp_path):
    hub = Hub(tmp_path, irc='registration_timeout = "1s"')
    try:
        raw = Raw(hub)
        raw.send("NICK lazy")
        raw.expect(r"^ERROR :Closing link: Registration timeout", timeout=5)
        raw.wait_closed()
    finally:
        hub.stop()


def test_cap_negotiation_302(hub):
    raw = Raw(hub)
    raw.send("CAP LS 302", "NICK capper", "USER c 0 * :C")
    ls = parse(raw.expect(r" CAP \* LS "))[3][-1].split()
    for cap in ["message-tags", "server-time", "batch", "echo-message", "account-tag", "labeled-response",
                "sasl=PLAIN", "draft/chathistory", "standard-replies"]:
        assert cap in ls, (cap, ls)
    raw.send("CAP REQ :message-tags server-time")
    raw.expect(r" CAP \S+ ACK :message-tags server-time$")
    raw.send("CAP REQ :batch no-such-cap")
    raw.expect(r" CAP \S+ NAK :batch no-such-cap$")
    raw.send("CAP LIST")
    assert parse(raw.expect(r" CAP \S+ LIST "))[3][-1].split() == ["message-tags", "server-time", "cap-notify"]
    assert not [line for line in raw.drain() if " 001 " in line], "registration waits for CAP END"
    raw.send("CAP END")
    raw.expect(r" 001 capper ")
    raw.send("CAP REQ :-server-time", "CAP LIST")
    assert parse(raw.expect(r" CAP \S+ LIST "))[3][-1].split() == ["message-tags", "cap-notify"]
    raw.send("CAP FROB")
    raw.expect(r" 410 capper FROB ")


def test_every_refusal_is_a_numeric_and_the_connection_lives_on(hub):
    raw = Raw(hub)
    raw.send("JOIN #MoinMaster")
    raw.expect(r" 451 \* :You have not registered")
    raw.send("NICK bad nick!")  # A space makes "bad" the nick; "nick!" is an extra word.
    raw.send("NICK 9lives")
    raw.expect(r" 432 \S+ 9lives ")
    raw.send("NICK tester", "USER t 0 * :T")
    raw.expect(r" 001 ")
    raw.send("FROBNICATE now")
    raw.expect(r" 421 tester FROBNICATE :Unknown command")
    raw.send("USER again 0 * :x")
    raw.expect(r" 462 tester ")
    raw.send("PRIVMSG")
    raw.expect(r" 411 tester ")
    raw.send("PRIVMSG #MoinMaster")
    raw.expect(r" 412 tester ")
    raw.send("WHOIS")
    raw.expect(r" 461 tester WHOIS ")
    raw.send("PRIVMSG #MoinMaster :" + "x" * 600)
    raw.expect(r" 417 tester :Input line was too long")
    raw.send(b"PRIVMSG #MoinMaster :\xff\xfe broken")
    raw.expect(r"FAIL \* INVALID_UTF8 ")
    raw.send(":only-a-source")
    raw.expect(r"FAIL \* INVALID_MESSAGE ")
    raw.send(b"PING\x00 :nul", b"PING :still here")
    raw.expect(r"PONG .*still here")


def test_a_lone_lf_ends_a_line_and_empty_lines_are_ignored(hub):
    raw = Raw(hub)
    raw.sock.sendall(b"NICK lf\nUSER lf 0 * :LF\n\n\r\nPING :lf-works\n")
    raw.expect(r" 001 lf ")
    raw.expect(r"PONG .*lf-works")


def test_quit_says_goodbye(hub):
    raw = Raw(hub)
    raw.register("leaver")
    raw.send("QUIT :see you")
    raw.expect(r"^ERROR :Closing link: Quit: see you")
    raw.wait_closed()
