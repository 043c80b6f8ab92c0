"""The README's and the operator guide's commands, run as written, so the docs cannot drift from
the program. Each ```sh block is read from the file; every block a user can run on one machine
is run here line by line with bash, against a hub started the way the README says (the bare
hub on its embedded defaults, in an empty directory). `alias wikiwire='cargo run ...'` is the
one line replaced: `wikiwire` is then the binary under test. A `# → TEXT` comment is what the
line must print. Lines that never end by themselves (a live stream, a listener) run for a few
seconds and must have printed what they promise by then.

Blocks not run here, and why, are listed in SKIPPED; a new block must be added to one or the
other, so nothing in the docs goes untried by accident."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BINARY, ROOT, wait_for_port

# (file, first words of the block) → why it is not run here.
SKIPPED = {
    ("README.md", "cargo run --release -p wikiwire -- serve"):
        "the two set-up commands: the test suite is the second; the first is `serve` on the "
        "embedded defaults, which this file starts with the binary under test",
    ("README.md", "weechat -r"): "interactive clients: tests/python/test_terminal_clients.py drives them in tmux",
    ("README.md", "cargo run --release -p wikiwire-bench"): "benchmarks take minutes; figures in docs/PERFORMANCE.md",
    ("docs/OPERATING.md", "/srv/moin/venv/bin/pip install"):
        "installs into a wiki's virtualenv under /srv (scripts/test.sh installs the plug-in the same way "
        "into target/moin2-venv, and test_moin2.py runs the wiki with it)",
    ("docs/OPERATING.md", "* * * * *"): "a crontab line for a DokuWiki install (test_contrib.py runs the script)",
    ("docs/OPERATING.md", "wikiwire migrate"): "needs a NATS cluster and /etc/wikiwire (test_cluster.py migrates)",
    ("docs/OPERATING.md", "sqlite3 /var/lib/wikiwire"): "a deployed hub's paths under /var/lib",
    ("docs/OPERATING.md", "packaging/debian/build.sh"):
        "installs a package system-wide (test_debian_package.py builds, installs, upgrades and purges it)",
    ("docs/OPERATING.md", "wikiwire repair"): "a deployed hub's /etc configuration (test_damage.py repairs)",
    ("docs/OPERATING.md", "install -m 600"):
        "NATS's `nk` tool and /etc/wikiwire (nats_cluster.py makes the same NKEYs in Python, and the "
        "cluster tests run with them)",
    ("docs/OPERATING.md", "openssl req -x509"):
        "writes a CA into the current directory; nats_cluster.make_certificates runs these commands",
}


def blocks(path):
    """The ```sh blocks of a Markdown file: lists of commands, backslash continuations joined."""
    found, current, command = [], None, ""
    for line in (ROOT / path).read_text().splitlines():
        if line.strip() == "```sh":
            current = []
        elif line.strip() == "```" and current is not None:
            found.append(current)
            current = None
        elif current is not None:
            command += line.strip() + "\n"
            if line.rstrip().endswith("\\"):
                continue
            if command.strip():
                current.append(command.strip())
            command = ""
    return found


def skipped(path, block):
    return next((why for (file, start), why in SKIPPED.items() if file == path and block[0].startswith(start)), None)


def test_every_block_is_run_or_skipped_for_a_reason():
    for path in ("README.md", "docs/OPERATING.md"):
        for block in blocks(path):
            assert block, f"an empty block in {path}"
            runnable = block[0].startswith(("alias wikiwire=", "TOKEN=", "wikiwire ", "cargo run --release -p wikiwire -- demo"))
            assert runnable or skipped(path, block), f"{path}: a block neither run nor skipped: {block[0]}"


def run(command, cwd, env, seconds=None, meanwhile=None):
    """One line with bash. With `seconds`, it runs that long (it would run on: a stream, a
    listener), `meanwhile` is called after a moment (an edit for a listener that follows from
    now), and what it printed by then is returned."""
    script = 'wikiwire() { "$WIKIWIRE_BIN" "$@"; }\n' + command
    if seconds is None:
        done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{command!r} failed:\n{done.stderr}"
        return done.stdout
    process = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        time.sleep(seconds / 2)
        if meanwhile:
            meanwhile()
        time.sleep(seconds / 2)
        assert process.poll() is None, f"{command!r} ended:\n{process.stderr.read()}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    return output


def endless(command):
    return "/api/v1/stream" in command or command.startswith("wikiwire listen")


def check(command, output):
    """What a line promises: its `# → ...` comment, else output of the kind it names."""
    promised = re.search(r"# → (.+)$", command)
    if promised:
        assert json.loads(output) == json.loads(promised.group(1)), (command, output)
    elif command.startswith("wikiwire publish"):
        assert output.split()[0].isdigit(), (command, output)
    elif "/api/v1/stream" in command:
        assert "id: " in output and "data: " in output, (command, output)
    elif "action=changes" in command or ".atom" in command:
        assert output.lstrip().startswith("<?xml"), (command, output)
    elif "/api/v1/events" in command and "-d " not in command:
        assert json.loads(output)["events"], (command, output)
    else:
        assert output.strip(), f"{command!r} printed nothing"


def edit(directory):
    """A wiki edit while a listener runs (published the way the README says, by HTTP)."""
    token = (directory / "wikiwire-data" / "local.token").read_text().strip()
    body = json.dumps({"wiki": "local", "action": "page_changed", "page": "Edited Meanwhile", "user": "Carol"})
    subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
                    "-d", body, "localhost:8080/api/v1/events"], check=True, capture_output=True, timeout=10)


def assert_default_ports_free():
    """The hub on its embedded defaults listens on 8080 and 6667: nothing else may."""
    for port in (8080, 6667):
        probe = subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True)
        assert probe.returncode != 0, f"port {port} is taken: the hub on its embedded defaults needs it"


@pytest.fixture
def bare_hub(tmp_path):
    """`wikiwire serve` with no configuration, in an empty directory: loopback, 8080 and 6667."""
    assert_default_ports_free()
    log = open(tmp_path / "hub.log", "w")
    hub = subprocess.Popen([str(BINARY), "serve"], cwd=tmp_path, stdout=log, stderr=log)
    try:
        wait_for_port(hub, 8080, 30, "the bare hub", lambda: (tmp_path / "hub.log").read_text())
        wait_for_port(hub, 6667, 30, "the bare hub", lambda: (tmp_path / "hub.log").read_text())
        yield tmp_path
    finally:
        hub.terminate()
        hub.wait(20)
        log.close()


def test_the_readme_runs_as_written(bare_hub):
    assert shutil.which("jq"), "jq is installed by scripts/test.sh (the README pipes events to it)"
    env = {**os.environ, "WIKIWIRE_BIN": str(BINARY)}
    env.pop("WIKIWIRE_URL", None)
    env.pop("WIKIWIRE_TOKEN", None)
    ran = 0
    for block in blocks("README.md"):
        if skipped("README.md", block):
            continue
        variables = ""
        for command in block:
            if command.startswith("alias wikiwire="):
                assert "-p wikiwire" in command, command
                continue
            if re.match(r"^[A-Z_]+=\$\(", command):
                variables += command + "\n"
                continue
            # A listener without --since follows from now: it needs an edit while it runs.
            from_now = command.startswith("wikiwire listen") and "--since" not in command
            output = run(variables + command, bare_hub, env, seconds=4 if endless(command) else None,
                         meanwhile=(lambda: edit(bare_hub)) if from_now else None)
            check(command, output)
            ran += 1
    assert ran >= 10, f"only {ran} README commands ran"


def test_the_operator_guides_demo_runs_as_written(tmp_path):
    (block,) = [block for block in blocks("docs/OPERATING.md") if block[0].startswith("cargo run --release -p wikiwire -- demo")]
    assert block == ["cargo run --release -p wikiwire -- demo"]
    assert_default_ports_free()
    demo = subprocess.Popen([str(BINARY), "demo"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(demo, 8080, 30, "the demo", lambda: "")
        deadline = time.monotonic() + 30
        while True:
            page = json.loads(subprocess.run(["curl", "-s", "localhost:8080/api/v1/events"], capture_output=True,
                                             text=True, timeout=10).stdout)
            if page["events"]:
                break
            assert time.monotonic() < deadline, "the demo published nothing"
            time.sleep(0.5)
    finally:
        demo.terminate()
        demo.wait(20)
