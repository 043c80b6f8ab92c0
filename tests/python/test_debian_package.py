"""The Debian package (issue 28): built from the repository with packaging/debian/build.sh,
installed with apt on this machine, run as its service would run it (this machine runs no systemd:
the unit's own ExecStart line, as the unit's user), upgraded over itself keeping the event log, the
edited configuration and the ownership, reinstalled and downgraded cleanly, removed (data and
configuration kept), and purged (both gone). The machine is left as it was found."""

import configparser
import grp
import json
import os
import pathlib
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import urllib.request

import pytest

from conftest import ROOT, free_port, wait_for

APT = ["apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
CONFIG = pathlib.Path("/etc/wikiwire/wikiwire.toml")
DATA = pathlib.Path("/var/lib/wikiwire")
UNIT = pathlib.Path("/usr/lib/systemd/system/wikiwire.service")


def run(*command, check=True):
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    if check:
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done


def build(version, directory):
    run(str(ROOT / "packaging/debian/build.sh"), "--profile", "dev", "--deb-version", version,
        "--output", str(directory))
    [package] = directory.glob(f"wikiwire_{version}_*.deb")
    return package


def installed_version():
    done = run("dpkg-query", "-W", "-f=${Status} ${Version}", "wikiwire", check=False)
    return done.stdout if done.returncode == 0 else ""


def owner(path):
    info = path.stat()
    return pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name, stat.S_IMODE(info.st_mode)


class Service:
    """The packaged hub started the way its unit starts it: ExecStart, User, Group, WorkingDirectory."""

    def __init__(self):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.read_string(UNIT.read_text())
        service = unit["Service"]
        self.command = shlex.split(service["ExecStart"])
        self.check = shlex.split(service["ExecStartPre"])
        user, group = service["User"], service["Group"]
        self.as_user = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--"]
        self.directory = service["WorkingDirectory"]
        self.process = None

    def start(self, http_port):
        done = subprocess.run(self.as_user + self.check, capture_output=True, text=True, cwd=self.directory)
        assert done.returncode == 0, done.stdout + done.stderr
        self.process = subprocess.Popen(self.as_user + self.command, cwd=self.directory,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.http = f"http://127.0.0.1:{http_port}"
        wait_for(lambda: self.process.poll() is None and self.healthy(), timeout=30,
                 what=lambda: f"the packaged hub answering (exit {self.process.poll()})")

    def healthy(self):
        try:
            with urllib.request.urlopen(self.http + "/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def publish(self, page):
        token = (DATA / "local.token").read_text().strip()
        body = json.dumps({"wiki": "local", "action": "page_changed", "page": page, "user": "Alice"}).encode()
        request = urllib.request.Request(self.http + "/api/v1/events", data=body, method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["ids"]

    def pages(self):
        with urllib.request.urlopen(self.http + "/api/v1/events?since=0", timeout=10) as response:
            return [event["page"] for event in json.loads(response.read())["events"]]

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(30) == 0, self.process.stderr.read().decode()


@pytest.fixture
def clean_machine():
    """No wikiwire package before; after, purged, and its user gone unless it was there before."""
    # Installing a package system-wide takes root and apt (Debian and Ubuntu, where the package is
    # for): not a reason to pass without trying.
    assert os.geteuid() == 0, "the package test installs with apt: run scripts/test.sh as root (CI does)"
    assert shutil.which("apt-get"), "the package test needs apt (Debian or Ubuntu)"
    if installed_version():
        run(*APT, "purge", "wikiwire")
    user_before = run("getent", "passwd", "wikiwire", check=False).returncode == 0
    yield
    run(*APT, "purge", "wikiwire", check=False)
    if not user_before and run("getent", "passwd", "wikiwire", check=False).returncode == 0:
        run("deluser", "--system", "--quiet", "wikiwire", check=False)
        run("delgroup", "--system", "--quiet", "wikiwire", check=False)


def test_the_package_installs_runs_upgrades_and_purges(tmp_path, clean_machine):
    first, second = build("0.1.0-1", tmp_path), build("0.1.0-2", tmp_path)

    # What is inside, and what dpkg is told.
    fields = run("dpkg-deb", "-f", str(first)).stdout
    assert "Package: wikiwire" in fields and "Version: 0.1.0-1" in fields, fields
    assert "adduser" in fields and "libc6" in fields, fields
    contents = run("dpkg-deb", "-c", str(first)).stdout
    for path in ["./usr/bin/wikiwire", "./etc/wikiwire/wikiwire.toml", "./usr/lib/systemd/system/wikiwire.service",
                 "./usr/share/bash-completion/completions/wikiwire", "./usr/share/zsh/vendor-completions/_wikiwire",
                 "./usr/share/fish/vendor_completions.d/wikiwire.fish", "./usr/share/doc/wikiwire/copyright",
                 "./usr/share/doc/wikiwire/OPERATING.md", "./usr/share/doc/wikiwire/examples/wikiwire.example.toml"]:
        assert f" {path}\n" in contents, f"{path} missing:\n{contents}"
    control = tmp_path / "control"
    run("dpkg-deb", "-e", str(first), str(control))
    assert (control / "conffiles").read_text().split() == [str(CONFIG)]

    # Install: the user, the private data directory, the configuration readable by the hub only,
    # the unit enabled (no systemd runs here: nothing is started, nothing fails).
    run(*APT, "install", str(first))
    assert installed_version() == "install ok installed 0.1.0-1"
    assert owner(DATA) == ("wikiwire", "wikiwire", 0o700)
    assert owner(CONFIG) == ("root", "wikiwire", 0o640)
    assert pwd.getpwnam("wikiwire").pw_shell == "/usr/sbin/nologin"
    assert pathlib.Path("/etc/systemd/system/multi-user.target.wants/wikiwire.service").is_symlink()
    copyright_file = pathlib.Path("/usr/share/doc/wikiwire/copyright").read_text()
    assert "License: Apache-2.0" in copyright_file and "tokio" in copyright_file and "SQLite" in copyright_file
    if shutil.which("systemd-analyze"):
        verified = run("systemd-analyze", "verify", str(UNIT), check=False)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    bash_completion = run("bash", "-c", "source /usr/share/bash-completion/completions/wikiwire && "
                                        "complete -p wikiwire").stdout
    assert "wikiwire" in bash_completion

    # The operator's edit: other ports (this machine's tests may hold 8080).
    http_port, irc_port = free_port(), free_port()
    text = CONFIG.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
    CONFIG.write_text(text.replace("127.0.0.1:6667", f"127.0.0.1:{irc_port}"))
    service = Service()
    service.start(http_port)
    assert service.publish("Before the upgrade") == [1]
    service.stop()
    assert owner(DATA / "events.sqlite")[0] == "wikiwire"

    # Upgrade: configuration edit, event log and ownership survive.
    run(*APT, "install", str(second))
    assert installed_version() == "install ok installed 0.1.0-2"
    assert f"127.0.0.1:{http_port}" in CONFIG.read_text(), "the edited configuration was replaced"
    assert owner(DATA) == ("wikiwire", "wikiwire", 0o700) and owner(CONFIG) == ("root", "wikiwire", 0o640)
    service.start(http_port)
    assert service.pages() == ["Before the upgrade"]
    assert service.publish("After the upgrade") == [2]
    service.stop()

    # The same version again, and a downgrade: both go through cleanly and keep everything.
    run(*APT, "install", "--reinstall", str(second))
    run(*APT, "install", "--allow-downgrades", str(first))
    assert installed_version() == "install ok installed 0.1.0-1"
    service.start(http_port)
    assert service.pages() == ["Before the upgrade", "After the upgrade"]
    service.stop()

    # Remove keeps the configuration and the log; purge removes both.
    run(*APT, "remove", "wikiwire")
    assert not pathlib.Path("/usr/bin/wikiwire").exists()
    assert installed_version().startswith("deinstall ok config-files")
    assert f"127.0.0.1:{http_port}" in CONFIG.read_text() and (DATA / "events.sqlite").exists()
    run(*APT, "purge", "wikiwire")
    assert installed_version() == ""
    assert not CONFIG.exists() and not CONFIG.parent.exists() and not DATA.exists()
