"""The commands clients send on their own (Modern IRC, IRCv3), answered as the documents say:
user modes letter by letter and bot mode, AWAY, WHOWAS, USERHOST, ISON, TIME, VERSION, ADMIN,
INFO, HELP, SASL after registration and oversized, a SASL login under another nick, and labels
on refusals. Raw sockets, so every numeric is checked as sent."""

import base64

from conftest import MOIN_TOKEN, Raw, parse, wait_for


def numerics(lines):
    return [parse(line)[2] for line in lines]


def test_user_modes_are_read_letter_by_letter_and_bot_mode_shows_in_whois(hub):
    raw = Raw(hub).register("sopel")
    # Sopel sends MODE <nick> +B on every connect.
    raw.send("MODE sopel +B")
    assert parse(raw.expect(r" MODE sopel "))[3] == ["sopel", "+B"]
    # HexChat/irssi: several letters at once, one unknown: the known ones are applied, one 501.
    raw.send("MODE sopel +iwx", "PING :sentinel")
    lines = raw.lines_until(r"PONG .*sentinel")
    assert [parse(line)[3][1] for line in lines if parse(line)[2] == "MODE"] == ["+iw"]
    assert numerics(lines).count("501") == 1
    raw.send("MODE sopel")
    assert parse(raw.expect(r" 221 "))[3][1] == "+Biw"
    raw.send("MODE sopel -w+o", "PING :again")
    lines = raw.lines_until(r"PONG .*again")
    assert [parse(line)[3][1] for line in lines if parse(line)[2] == "MODE"] == ["-w"]
    assert numerics(lines).count("501") == 1
    raw.send("WHOIS sopel")
    lines = raw.lines_until(r" 318 ")
    assert "335" in numerics(lines), lines
    # Nobody may set modes on another nick, and a channel's modes are the hub's.
    raw.send("MODE HistServ +B")
    raw.expect(r" 502 sopel ")


def test_away_whowas_userhost_and_ison(hub):
    raw = Raw(hub).register("irssi")
    raw.send("AWAY :gone fishing")
    raw.expect(r" 306 irssi :You have been marked as being away")
    raw.send("WHOIS irssi")
    lines = raw.lines_until(r" 318 ")
    away = [parse(line)[3] for line in lines if parse(line)[2] == "301"]
    assert away == [["irssi", "irssi", "gone fishing"]]
    raw.send("USERHOST irssi HistServ nobody")
    reply = parse(raw.expect(r" 302 "))[3][1].split()
    assert reply[0].startswith("irssi=-irssi@"), reply
    assert reply[1].startswith("HistServ=+"), reply
    assert len(reply) == 2
    raw.send("AWAY")
    raw.expect(r" 305 irssi :You are no longer marked as being away")
    # irssi asks WHOWAS after a WHOIS of an absent nick.
    raw.send("WHOWAS ghost")
    raw.expect(r" 406 irssi ghost ")
    raw.expect(r" 369 irssi ghost ")
    # Notify lists: ISON must be ISON (irc-proto reads it as USERHOST), with online nicks only:
    # a publisher that is logged in, not one that is not (doku), and never another listener.
    publisher = Raw(hub).register("moin", sasl=("moin", MOIN_TOKEN))
    other = Raw(hub).register("weechat")
    raw.send("ISON moin doku weechat nobody HistServ")
    line = raw.expect(r" 30[23] ")
    assert parse(line)[2] == "303", line
    assert sorted(parse(line)[3][1].split()) == ["HistServ", "moin"]
    other.close()
    publisher.close()


def test_listeners_cannot_see_each_other_by_whois_userhost_ison_or_privmsg(hub):
    """SPEC §3 (issue 24, item 8): another listener's nick is answered as if no one had it."""
    hidden = Raw(hub).register("hidden")
    looker = Raw(hub).register("looker")
    looker.send("WHOIS hidden")
    lines = looker.lines_until(r" 318 looker hidden ")
    assert numerics(lines) == ["401", "318"], lines
    looker.send("USERHOST hidden looker")
    assert [reply.split("=")[0] for reply in parse(looker.expect(r" 302 "))[3][1].split()] == ["looker"]
    looker.send("ISON hidden looker")
    assert parse(looker.expect(r" 303 "))[3][1].split() == ["looker"]
    looker.send("PRIVMSG hidden :psst", "PRIVMSG absent :psst", "PING :sentinel")
    answers = [parse(line)[2:] for line in looker.lines_until(r"PONG .*sentinel")[:-1]]
    assert answers == [("401", ["looker", "hidden", "No such nick/channel"]),
                       ("401", ["looker", "absent", "No such nick/channel"])], answers
    hidden.send("PING :still-here")
    hidden.expect("PONG .*still-here")


def test_time_version_admin_info_and_help(hub):
    raw = Raw(hub).register("curious")
    raw.send("TIME")
    time = parse(raw.expect(r" 391 "))[3]
    assert time[0] == "curious" and time[2].isdigit() and time[4].startswith("20"), time
    raw.send("VERSION")
    version = parse(raw.expect(r" 351 "))[3]
    assert version[1].startswith("wikiwire"), version
    raw.expect(r" 005 .*BOT=B")
    raw.send("ADMIN")
    for code in ("256", "257", "258", "259"):
        raw.expect(rf" {code} curious ")
    raw.send("INFO")
    lines = raw.lines_until(r" 374 ")
    assert numerics(lines).count("371") >= 1
    raw.send("HELP")
    raw.expect(r" 704 curious \* ")
    raw.expect(r" 706 curious \* ")
    raw.send("HELP join")
    raw.expect(r" 704 curious JOIN ")
    raw.send("HELP frobnicate")
    raw.expect(r" 524 curious FROBNICATE ")
    raw.send("VERSION elsewhere.example")
    raw.expect(r" 402 curious elsewhere.example ")


def test_sasl_after_registration_and_an_oversized_payload_get_one_answer_each(hub):
    raw = Raw(hub).register("late", caps=["sasl"])
    # Not logged in: refused for what it is, not "already authenticated".
    raw.send("AUTHENTICATE PLAIN")
    line = raw.expect(r" 90[4-7] ")
    assert parse(line)[2] == "904", line

    abusive = Raw(hub)
    abusive.send("CAP LS 302", "NICK abuser", "USER a 0 * :a", "CAP REQ :sasl")
    abusive.expect(r" CAP \S+ ACK ")
    abusive.send("AUTHENTICATE PLAIN")
    abusive.expect(r"^AUTHENTICATE \+")
    chunks = ["AUTHENTICATE " + "A" * 400 for _ in range(30)] + ["AUTHENTICATE AAAA", "PING :sentinel"]
    abusive.send(*chunks)
    lines = abusive.lines_until(r"PONG .*sentinel")
    assert numerics(lines) == ["905", "PONG"], lines
    # The exchange is over: a new one starts cleanly.
    abusive.send("AUTHENTICATE PLAIN")
    abusive.expect(r"^AUTHENTICATE \+")


def test_a_publisher_logged_in_under_another_nick_is_told_its_nick(hub):
    raw = Raw(hub)
    raw.send("CAP LS 302", "NICK moinbot", "USER m 0 * :M", "CAP REQ :sasl")
    raw.expect(r" CAP \S+ ACK ")
    raw.send("AUTHENTICATE PLAIN")
    raw.expect(r"^AUTHENTICATE \+")
    raw.send("AUTHENTICATE " + base64.b64encode(f"\0moin\0{MOIN_TOKEN}".encode()).decode())
    raw.expect(r" 903 ")
    raw.send("CAP END")
    lines = raw.lines_until(r" 001 ")
    renames = [parse(line) for line in lines if parse(line)[2] == "NICK"]
    assert len(renames) == 1, lines
    _, source, _, params = renames[0]
    assert source.split("!")[0] == "moinbot" and params == ["moin"]
    assert parse(lines[-1])[3][0] == "moin"


def test_labels_are_on_every_reply_to_a_labelled_line_refusals_included(hub):
    raw = Raw(hub).register("labeller", caps=["labeled-response", "batch", "message-tags"])
    raw.send("@label=one FROBNICATE")
    assert raw.expect(r" 421 ").startswith("@label=one ")
    raw.send("@label=two ISON nobody")
    assert raw.expect(r" 303 ").startswith("@label=two ")
    raw.send("@label=three WHOWAS ghost")
    start = raw.expect(r"BATCH \+")
    assert start.startswith("@label=three ") and "labeled-response" in start
    raw.expect(r" 406 ")
    raw.expect(r" 369 ")
    raw.expect(r"BATCH -")
    raw.send("@label=four MODE labeller +z")
    assert raw.expect(r" 501 ").startswith("@label=four ")
    # Lines refused before they are parsed answer their label too (IRCv3 labeled-response).
    raw.send(b"@label=five PRIVMSG #x :\xff\xfe")
    assert raw.expect(r"FAIL \* INVALID_UTF8 ").startswith("@label=five ")
    raw.send("@label=six PRIVMSG #x :" + "a" * 600)
    assert raw.expect(r" 417 ").startswith("@label=six ")


def lusers(raw):
    """(visible, invisible, current, max) from a LUSERS answer."""
    raw.send("LUSERS")
    lines = raw.lines_until(r" 266 ")
    client = next(parse(line)[3][1] for line in lines if parse(line)[2] == "251").split()
    local = next(parse(line)[3] for line in lines if parse(line)[2] == "265")
    return int(client[2]), int(client[5]), int(local[1]), int(local[2])


def test_lusers_counts_invisible_users_and_keeps_the_maximum(hub):
    first = Raw(hub).register("first")
    second = Raw(hub).register("second")
    third = Raw(hub).register("third")
    assert lusers(first) == (3, 0, 3, 3)
    second.send("MODE second +i")
    second.expect(r" MODE second \+i")
    assert lusers(first) == (2, 1, 3, 3)
    third.close()
    second.close()
    wait_for(lambda: lusers(first)[2] == 1, what="two clients gone from LUSERS")
    assert lusers(first) == (1, 0, 1, 3)


def test_who_of_yourself_says_away_and_bot_and_user_needs_a_realname(hub):
    raw = Raw(hub).register("hexchat")
    raw.send("AWAY :lunch", "MODE hexchat +B", "WHO hexchat")
    assert parse(raw.expect(r" 352 "))[3][6] == "GB"
    raw.send("AWAY", "MODE hexchat -B", "WHO hexchat")
    assert parse(raw.expect(r" 352 "))[3][6] == "H"
    # Modern IRC, USER: empty username or realname is 461, and registration waits for a good one.
    empty = Raw(hub)
    empty.send("NICK empty", "USER u * * :", "USER  * * :Real Name")
    empty.expect(r" 461 empty USER ")
    empty.expect(r" 461 empty USER ")
    empty.send("USER u * * :Real Name")
    empty.expect(r" 001 empty ")


SOPEL_USER = "wikiwire-sopel"


def sopel_command():
    """Sopel from PyPI in its own virtualenv, run as an unprivileged user (it refuses root)."""
    import os
    import pathlib
    import shutil
    import subprocess

    if os.geteuid() == 0:
        if subprocess.run(["id", SOPEL_USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--create-home", SOPEL_USER], check=True)
        home = pathlib.Path(f"/home/{SOPEL_USER}")
        as_user = ["runuser", "-u", SOPEL_USER, "--"]
    else:
        home = pathlib.Path.home()
        as_user = []
    venv = home / "sopel-venv"
    sopel = venv / "bin" / "sopel"
    if not sopel.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(as_user + ["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run(as_user + [str(venv / "bin" / "pip"), "install", "-q", "sopel==8.0.4"], check=True)
    return as_user, sopel, home


def test_a_sopel_bot_joins_stays_and_logs_no_error(hub):
    import subprocess
    import time

    as_user, sopel, home = sopel_command()
    directory = home / f"sopel-{hub.irc_port}"
    subprocess.run(as_user + ["mkdir", "-p", str(directory / "logs")], check=True)
    config = directory / "bot.cfg"
    text = f"""[core]
nick = SopelTester
host = 127.0.0.1
port = {hub.irc_port}
use_ssl = false
owner = nobody
channels = "#MoinMaster"
homedir = {directory}
logdir = {directory / "logs"}
pid_dir = {directory}
log_raw = true
logging_level = INFO
# These two fetch lists from the internet at start, which a test machine may not reach.
exclude =
    safety
    pronouns
"""
    subprocess.run(as_user + ["sh", "-c", f"cat > {config}"], input=text.encode(), check=True)
    process = subprocess.Popen(as_user + [str(sopel), "start", "-c", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        raw_log = directory / "logs" / "bot.raw.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if raw_log.exists() and " 366 " in raw_log.read_text(errors="replace"):
                break
            assert process.poll() is None, process.stdout.read().decode(errors="replace")
            time.sleep(0.2)
        else:
            raise AssertionError("Sopel did not join #MoinMaster")
        # It stays: an event reaches it, and it is still connected a few seconds later.
        hub.publish({"wiki": "MoinMaster", "action": "page_changed", "page": "SopelCheck", "user": "Alice"})
        deadline = time.monotonic() + 30
        while "SopelCheck" not in raw_log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the event did not reach Sopel"
            time.sleep(0.2)
        time.sleep(3)
        assert process.poll() is None, "Sopel stopped"
        log = raw_log.read_text(errors="replace")
        for reply in (" 421 ", " 501 ", "ERROR :"):
            assert reply not in log, [line for line in log.splitlines() if reply in line]
        for name in ("bot.stdio.log", "bot.error.log", "bot.exceptions.log"):
            path = directory / "logs" / name
            if path.exists():
                bad = [line for line in path.read_text(errors="replace").splitlines()
                       if "ERROR" in line or "CRITICAL" in line or "Traceback" in line]
                assert bad == [], (name, bad)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
