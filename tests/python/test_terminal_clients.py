"""The IRC clients people type into, driven through tmux as a person would: the WeeChat command
that `wikiwire demo` prints (and the README shows) is run exactly as printed, and so is irssi
with the `/join` the demo says to type; each shows the demo's events in the channel (tmux
capture-pane)."""

import re
import shutil
import subprocess
import time

import pytest

from conftest import Hub


def capture(session):
    done = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True)
    return done.stdout


def advice(hub, pattern, timeout=10):
    """The match of `pattern` in what the demo printed (it prints its advice once started)."""
    deadline = time.monotonic() + timeout
    while not (match := re.search(pattern, hub.output.decode(errors="replace"))):
        assert time.monotonic() < deadline, hub.output.decode(errors="replace")
        time.sleep(0.1)
    return match


def pages_seen(hub):
    return {event["page"] for event in hub.get("/api/v1/events?limit=1000")["events"] if event.get("page")}


def wait_for_an_event_line(hub, session, timeout=60):
    """Until the pane shows the page of an event the demo published, in the channel's buffer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = capture(session)
        if any(page in screen for page in pages_seen(hub)):
            return screen
        time.sleep(0.5)
    raise AssertionError("no event line on screen:\n" + capture(session))


@pytest.fixture
def tmux_session(request):
    assert shutil.which("tmux"), "tmux is installed by scripts/test.sh"
    name = f"ww{request.node.name[-20:]}".replace("[", "").replace("]", "")
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def test_the_weechat_command_the_demo_prints_joins_and_shows_events(tmp_path, tmux_session):
    assert shutil.which("weechat"), "WeeChat is installed by scripts/test.sh"
    hub = Hub(tmp_path, command="demo")
    try:
        command = advice(hub, r"IRC:\s+(weechat -r '[^']+')").group(1)
        home = tmp_path / "weechat-home"
        home.mkdir()
        subprocess.run(["tmux", "new-session", "-d", "-s", tmux_session, "-x", "200", "-y", "50",
                        f"env HOME={home} TERM=screen {command} --dir {home}"], check=True)
        screen = wait_for_an_event_line(hub, tmux_session)
        channel = re.search(r"-autojoin=(#\S+?);", command).group(1)
        assert channel in screen, screen
        assert "must be executed on irc buffer" not in screen
    finally:
        hub.stop()


def test_irssi_joins_as_the_demo_says_and_shows_events(tmp_path, tmux_session):
    assert shutil.which("irssi"), "irssi is installed by scripts/test.sh"
    hub = Hub(tmp_path, command="demo")
    try:
        command, join = advice(hub, r"or (irssi -c \S+ -p \d+), then (/join #\S+)").groups()
        home = tmp_path / "irssi-home"
        home.mkdir()
        # The command as printed; --home and -n only keep the test away from the user's own irssi.
        subprocess.run(["tmux", "new-session", "-d", "-s", tmux_session, "-x", "200", "-y", "50",
                        f"env TERM=screen {command} --home={home} -n typist"], check=True)
        deadline = time.monotonic() + 30
        while "typist" not in capture(tmux_session) or "Welcome" not in capture(tmux_session):
            assert time.monotonic() < deadline, capture(tmux_session)
            time.sleep(0.3)
        # What irssi users type: join, ask about someone absent (irssi follows with WHOWAS), go away.
        for keys in (join, "/whois nobody", "/away lunch"):
            subprocess.run(["tmux", "send-keys", "-t", tmux_session, keys, "Enter"], check=True)
        screen = wait_for_an_event_line(hub, tmux_session)
        assert "Unknown command" not in screen, screen
    finally:
        hub.stop()
