"""The friendly command line (issue 6): help with examples for every subcommand, shell
completions that a real bash loads, and, for a person at a terminal only, colours and a progress
bar while `wikiwire listen` catches up (a pseudo-terminal stands in for the person)."""

import os
import pty
import select
import subprocess
import time

from conftest import BINARY, Hub, free_port, wait_for_port

SUBCOMMANDS = ["serve", "demo", "publish", "listen", "token", "config check", "migrate", "completions"]


def test_every_subcommand_has_help_with_examples():
    for name in SUBCOMMANDS:
        result = subprocess.run([str(BINARY), *name.split(), "--help"], capture_output=True, text=True, check=True)
        assert "Example" in result.stdout, (name, result.stdout)
        assert "\x1b[" not in result.stdout, "no colours into a pipe"


def test_bash_completion_completes_subcommands_and_flags(tmp_path):
    script = subprocess.run([str(BINARY), "completions", "bash"], capture_output=True, text=True, check=True).stdout
    (tmp_path / "wikiwire.bash").write_text(script)
    probe = f"""
source {tmp_path / 'wikiwire.bash'}
COMP_WORDS=(wikiwire li); COMP_CWORD=1; COMP_LINE="wikiwire li"; COMP_POINT=${{#COMP_LINE}}
_wikiwire wikiwire li wikiwire; echo "subcommands: ${{COMPREPLY[*]}}"
COMP_WORDS=(wikiwire listen --for); COMP_CWORD=2; COMP_LINE="wikiwire listen --for"; COMP_POINT=${{#COMP_LINE}}
_wikiwire wikiwire --for listen; echo "flags: ${{COMPREPLY[*]}}"
"""
    output = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "subcommands: listen" in output, output
    assert "flags: --format" in output, output
    for shell in ["zsh", "fish"]:
        assert "wikiwire" in subprocess.run([str(BINARY), "completions", shell], capture_output=True,
                                            text=True, check=True).stdout


def run_in_terminal(arguments, until, timeout=60):
    """Runs the command with a pseudo-terminal as its standard output and error; returns what it
    printed once `until` is in it."""
    parent, child = pty.openpty()
    process = subprocess.Popen(arguments, stdout=child, stderr=child, stdin=subprocess.DEVNULL)
    os.close(child)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while until not in seen:
            assert time.monotonic() < deadline, seen[-2000:]
            ready, _, _ = select.select([parent], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(parent, 65536)
                except OSError:
                    break
    finally:
        process.terminate()
        process.wait(20)
        os.close(parent)
    return seen


def test_listen_shows_progress_and_colours_in_a_terminal_and_neither_in_a_pipe(hub, tmp_path):
    # Enough history for a progress bar; the last event is the one to wait for.
    for start in range(0, 3000, 1000):
        hub.publish(*[{"wiki": "MoinMaster", "action": "SAVE", "page": f"Page {n}", "user": "u"}
                      for n in range(start, start + 1000)])
    hub.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "The Last One", "user": "u"})
    arguments = [str(BINARY), "listen", "--irc", f"irc://127.0.0.1:{hub.irc_port}/#MoinMaster", "--since", "0"]
    seen = run_in_terminal(arguments, b"The Last One")
    assert b"catching up [" in seen and b"events (" in seen, seen[:500]
    assert b"\x1b[33mPage 1\x1b[" in seen, "the page name in colour"
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        output = b""
        deadline = time.monotonic() + 60
        while b"The Last One" not in output:
            assert time.monotonic() < deadline
            output += process.stdout.read1(65536)
    finally:
        process.terminate()
        errors = process.communicate(timeout=20)[1]
    assert b"\x1b[" not in output and b"catching up" not in errors
    assert output.count(b"\n") >= 3001


CLEAN_ENV = {name: value for name, value in os.environ.items() if name not in ("WIKIWIRE_URL", "WIKIWIRE_TOKEN")}


def test_publish_finds_the_hub_and_its_token_in_the_configuration(tmp_path):
    """`wikiwire publish --config FILE`: the address from `[http] listen`, the token of the wiki's
    publisher, or the generated local token when the file configures no publishers."""
    # A configured publisher with a plain token.
    (tmp_path / "configured").mkdir()
    configured = Hub(tmp_path / "configured", ports=(free_port(), free_port()))
    try:
        done = subprocess.run(
            [str(BINARY), "publish", "--config", str(configured.config), "--wiki", "MoinMaster",
             "--action", "SAVE", "--page", "From The Config", "--user", "u"],
            capture_output=True, text=True, timeout=30, env=CLEAN_ENV)
        assert done.returncode == 0, done.stderr
        event = configured.event(int(done.stdout.split()[0]))
        assert event["page"] == "From The Config"
        refused = subprocess.run(
            [str(BINARY), "publish", "--config", str(configured.config), "--wiki", "NoSuchWiki",
             "--action", "SAVE"],
            capture_output=True, text=True, timeout=30, env=CLEAN_ENV)
        assert refused.returncode != 0 and "no publisher in the configuration speaks for" in refused.stderr
    finally:
        configured.stop()

    # No publishers: the hub generates `local.token` in its data directory.
    directory = tmp_path / "local"
    directory.mkdir()
    config = directory / "hub.toml"
    port = free_port()
    config.write_text(f'data_dir = "{directory / "data"}"\n[http]\nlisten = "127.0.0.1:{port}"\n[irc]\nenabled = false\n')
    hub = subprocess.Popen([str(BINARY), "serve", "--config", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(hub, port, 30, "the hub", lambda: hub.stdout.read())
        done = subprocess.run(
            [str(BINARY), "publish", "--config", str(config), "--wiki", "local", "--action", "page_changed",
             "--page", "Typed As Documented", "--user", "Alice"],
            capture_output=True, text=True, timeout=30, env=CLEAN_ENV)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[0] == "1"
    finally:
        hub.terminate()
        hub.wait(20)


def test_a_missing_configuration_file_is_said_once(tmp_path):
    missing = tmp_path / "nowhere.toml"
    for command in (["config", "check"], ["serve"], ["repair"]):
        result = subprocess.run([str(BINARY), *command, "--config", str(missing)], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode != 0, (command, result)
        said = result.stdout + result.stderr
        assert said.count(str(missing)) == 1 and said.count("No such file") == 1, (command, said)
