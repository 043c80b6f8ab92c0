"""The friendly command line (issue 6): help with examples for every subcommand, shell
completions that a real bash loads, and, for a person at a terminal only, colours and a progress
bar while `wikiwire listen` catches up (a pseudo-terminal stands in for the person)."""

import os
import pty
import select
import subprocess
import time

from conftest import BINARY

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
