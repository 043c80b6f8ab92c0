"""Test harness: the real `wikiwire serve` binary on ports chosen by the kernel, and clients to
drive it — the `irc` library (a client this project did not write) and raw sockets for the
nasty cases. Every wait has a deadline; nothing sleeps to wait for readiness."""

import base64
import http.client
import json
import os
import pathlib
import random
import re
import select
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import irc.client
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("WIKIWIRE_BIN", ROOT / "target" / "debug" / "wikiwire"))

MOIN_TOKEN = "wwt_moin-token-for-the-python-tests"
DOKU_TOKEN = "wwt_doku-token-for-the-python-tests"

BASE_CONFIG = """
[http]
listen = "127.0.0.1:0"

[irc]
listen = "127.0.0.1:0"
server_name = "irc.test.example"
network = "TestNet"
{irc}

[[publisher]]
name = "moin"
token = "{moin_token}"
wikis = ["MoinMaster", "HelpWiki"]
engine = "moin"
base_url = "https://master.example/"

[[publisher]]
name = "doku"
token = "{doku_token}"
wikis = ["DokuWiki"]
engine = "dokuwiki"
base_url = "https://doku.example/"

[[channel]]
name = "#antispam"
format = "text"
filter = "wiki=MoinMaster,DokuWiki&action=antispam_updated"

{extra}
"""


class Hub:
    """A running hub process."""

    def __init__(self, directory, irc="", extra="", started_timeout=30, ports=None, publishers=None, command="serve",
                 http=""):
        """`ports=(http, irc)` fixes the ports, so a restarted hub is found where it was.
        `publishers` replaces the standard publishers and channels (moin, doku, #antispam).
        `http`, when given, replaces the standard `[http]` table (an `[http]` table, maybe more
        tables after it)."""
        self.directory = pathlib.Path(directory)
        self.config = self.directory / "wikiwire.toml"
        template = BASE_CONFIG
        if publishers is not None:
            template = template[: template.index("[[publisher]]")] + publishers + "\n{extra}\n"
        text = f'data_dir = "{self.directory / "data"}"\n' + template.format(
            irc=irc, extra=extra, moin_token=MOIN_TOKEN, doku_token=DOKU_TOKEN
        )
        if http:
            text = text.replace('[http]\nlisten = "127.0.0.1:0"\n', http, 1)
        if ports:
            text = text.replace('[http]\nlisten = "127.0.0.1:0"', f'[http]\nlisten = "127.0.0.1:{ports[0]}"')
            text = text.replace('[irc]\nlisten = "127.0.0.1:0"', f'[irc]\nlisten = "127.0.0.1:{ports[1]}"')
        self.config.write_text(text)
        self.started_timeout = started_timeout
        self.command = command
        self.start()

    def start(self):
        self.log = open(self.directory / "hub.log", "a")
        self.process = subprocess.Popen(
            [str(BINARY), self.command, "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
        self.http = None
        self.xmlrpc = None
        self.irc_port = None
        self.ircs_port = None
        self.rcfeeds = []
        deadline = time.monotonic() + self.started_timeout
        descriptor = self.process.stdout.fileno()
        pending = b""
        # Everything the hub prints on its standard output (the demo's advice, for example).
        self.output = bytearray()
        while True:
            if b"\n" not in pending:
                remaining = deadline - time.monotonic()
                ready, _, _ = select.select([descriptor], [], [], max(remaining, 0))
                if not ready:
                    raise AssertionError(f"hub did not start; log:\n{self.read_log()}")
                chunk = os.read(descriptor, 4096)
                if not chunk:
                    raise AssertionError(f"hub exited with {self.process.wait()}; log:\n{self.read_log()}")
                pending += chunk
                continue
            raw_line, pending = pending.split(b"\n", 1)
            self.output += raw_line + b"\n"
            if raw_line.startswith(b"Stop it with"):
                break
            words = raw_line.decode().split()
            if words[:1] == ["HTTP"]:
                self.http = words[1].rstrip("/")
            elif words[:1] == ["IRC"]:
                self.irc_port = int(words[1].rstrip("/").rsplit(":", 1)[1])
            elif words[:1] == ["IRCS"]:
                self.ircs_port = int(words[1].rstrip("/").rsplit(":", 1)[1])
            elif words[:1] == ["XMLRPC"]:
                self.xmlrpc = words[1]
            elif words[:1] == ["RCFEED"]:
                self.rcfeeds.append(int(words[1].rsplit(":", 1)[1]))
        # Keep reading stdout so the hub never blocks on a full pipe (until it is closed).
        self.output += pending

        def drain():
            try:
                while chunk := os.read(descriptor, 4096):
                    if len(self.output) < 1 << 20:
                        self.output += chunk
            except OSError:
                pass
        threading.Thread(target=drain, daemon=True).start()

    def read_log(self):
        self.log.flush()
        return (self.directory / "hub.log").read_text()[-4000:]

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("hub did not stop in time")
        self.log.close()
        return self.process.returncode

    def request(self, method, path, body=None, token=None, content_type="application/json", source=None, headers=False):
        """`source`: the loopback address to connect from; `headers=True` adds the answer's headers."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        if source:
            host, port = self.http.split("://")[1].split(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
            request_headers = {"Content-Type": content_type} if data is not None else {}
            if token:
                request_headers["Authorization"] = f"Bearer {token}"
            connection.request(method, path, body=data, headers=request_headers)
            response = connection.getresponse()
            answer = (response.status, response.read())
            connection.close()
            return answer + ({name.lower(): value for name, value in response.getheaders()},) if headers else answer
        request = urllib.request.Request(self.http + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = (response.status, response.read(), {name.lower(): value for name, value in response.headers.items()})
        except urllib.error.HTTPError as error:
            answer = (error.code, error.read(), {name.lower(): value for name, value in error.headers.items()})
        return answer if headers else answer[:2]

    def get(self, path):
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def publish(self, *events, token=MOIN_TOKEN):
        status, body = self.request("POST", "/api/v1/events", list(events), token=token)
        assert status in (200, 201), (status, body)
        return json.loads(body)["ids"]

    def event(self, event_id):
        return self.get(f"/api/v1/events/{event_id}")

    def last_id(self):
        return self.get("/healthz")["last_id"]

    def metric(self, name):
        status, body = self.request("GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")


def wait_for_port(process, port, timeout, name, read_log):
    """Waits until a server we started accepts connections on `port`; fails with its log if it
    exits or does not listen within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None, read_log()
            assert time.monotonic() < deadline, f"{name} did not start:\n" + read_log()
            time.sleep(0.05)


def wait_for(condition, timeout=30, what="condition"):
    """Waits until `condition()` is true and returns its value; fails saying what never came
    (`what` may be a function, called only then: a server's log, say)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, what() if callable(what) else f"{what} not reached in {timeout}s"
        time.sleep(0.05)


def free_port():
    """A free port for a server a test starts, below the kernel's range for outgoing connections:
    a server stopped and started again on its port (a hub or NATS node restarted) finds it still
    free, where a port from that range could meanwhile be the local end of any outgoing connection
    (seen: a restarted NATS node's cluster port taken, "bind: address already in use")."""
    low = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low > 10000:  # else no room below the range: the kernel picks one
        for _ in range(100):
            port = random.randrange(10000, low)
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def hub(tmp_path):
    running = Hub(tmp_path)
    yield running
    running.stop()


def parse(line):
    """(tags, source, verb, params) of one IRC line, tag values unescaped."""
    tags = {}
    if line.startswith("@"):
        raw, line = line[1:].split(" ", 1)
        for item in raw.split(";"):
            name, _, value = item.partition("=")
            out, escaped = [], False
            for char in value:
                if escaped:
                    out.append({":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}.get(char, char))
                    escaped = False
                elif char == "\\":
                    escaped = True
                else:
                    out.append(char)
            tags[name] = "".join(out)
    source = None
    if line.startswith(":"):
        source, line = line[1:].split(" ", 1)
    trailing = None
    if " :" in line:
        line, trailing = line.split(" :", 1)
    words = line.split()
    params = words[1:] + ([trailing] if trailing is not None else [])
    return tags, source, words[0], params


class Raw:
    """A line-based client on a plain socket, for exact bytes and abuse."""

    def __init__(self, hub_or_port, tls=None, receive_buffer=None, source="127.0.0.1"):
        """`source`: the loopback address to connect from (the hub sees another client address)."""
        port = hub_or_port if isinstance(hub_or_port, int) else hub_or_port.irc_port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        if tls:
            sock = tls.wrap_socket(sock, server_hostname="irc.test.example")
        self.sock = sock
        self.buffer = b""
        self.seen = []
        self.closed = False

    def send(self, *lines):
        data = b"".join((line if isinstance(line, bytes) else line.encode()) + b"\r\n" for line in lines)
        self.sock.sendall(data)

    def read_line(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except (ConnectionResetError, ssl.SSLError, OSError):
                chunk = b""
            if not chunk:
                self.closed = True
                if not self.buffer:
                    return None
                chunk = b"\n"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.seen.append(text)
        return text

    def expect(self, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            line = self.read_line(max(deadline - time.monotonic(), 0))
            if line is None:
                recent = "\n".join(seen[:300] for seen in self.seen[-30:])
                raise AssertionError(f"no line matching {pattern!r} (closed={self.closed}); last lines:\n{recent}")
            if regex.search(line):
                return line

    def lines_until(self, pattern, timeout=10):
        start = len(self.seen)
        self.expect(pattern, timeout)
        return self.seen[start:]

    def drain(self, timeout=0.3):
        lines = []
        while (line := self.read_line(timeout)) is not None:
            lines.append(line)
        return lines

    def wait_closed(self, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.closed:
            if self.read_line(max(deadline - time.monotonic(), 0)) is None and not self.closed:
                raise AssertionError("connection still open; last lines:\n" + "\n".join(seen[:300] for seen in self.seen[-20:]))
        return self.seen

    def register(self, nick, caps=(), sasl=None, password=None):
        lines = ["CAP LS 302"]
        if password:
            lines.append(f"PASS {password}")
        lines += [f"NICK {nick}", f"USER {nick.lower()} 0 * :{nick} the tester"]
        wanted = list(caps) + (["sasl"] if sasl else [])
        if wanted:
            lines.append("CAP REQ :" + " ".join(wanted))
        self.send(*lines)
        if wanted:
            self.expect(r" CAP \S+ ACK ")
        if sasl:
            name, token = sasl
            self.send("AUTHENTICATE PLAIN")
            self.expect(r"^AUTHENTICATE \+")
            self.send("AUTHENTICATE " + base64.b64encode(f"\0{name}\0{token}".encode()).decode())
            self.expect(r" 903 ")
        self.send("CAP END")
        self.expect(r" 001 ")
        self.expect(r" (376|422) ")
        return self

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Lib:
    """A client of the `irc` library, driven from the test thread."""

    def __init__(self, hub, nick, **connect):
        self.reactor = irc.client.Reactor()
        self.events = []
        self.reactor.add_global_handler("all_events", lambda connection, event: self.events.append(event), -100)
        self.connection = self.reactor.server().connect("127.0.0.1", hub.irc_port, nick, **connect)

    def wait(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        checked = 0
        while time.monotonic() < deadline:
            while checked < len(self.events):
                event = self.events[checked]
                checked += 1
                if predicate(event):
                    return event
            self.reactor.process_once(0.05)
        kinds = [(event.type, event.arguments) for event in self.events[-20:]]
        raise AssertionError(f"no matching event in {timeout}s; last events: {kinds}")

    def wait_type(self, kind, timeout=10, **matching):
        return self.wait(
            lambda event: event.type == kind
            and all(getattr(event, key) == value for key, value in matching.items()),
            timeout,
        )

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.reactor.process_once(0.05)

    def close(self):
        try:
            self.connection.disconnect("bye")
        except irc.client.ServerNotConnectedError:
            pass


def tag(event, name):
    """A tag of an `irc` library event."""
    for item in event.tags or []:
        if item["key"] == name:
            return item["value"]
    return None


class NgIrcd:
    """A real IRC server no one here wrote (ngIRCd from Debian), on its own port."""

    def __init__(self, directory, port=None):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = self.directory / "ngircd.conf"
        self.config.write_text(
            "[Global]\nName = irc.relay.test\nInfo = relay test network\nListen = 127.0.0.1\n"
            f"Ports = {self.port}\nMotdPhrase = \"relay tests\"\n"
            "[Limits]\nMaxConnectionsIP = 0\nPingTimeout = 120\nMaxNickLength = 16\n"
            "[Options]\nDNS = no\nIdent = no\nPAM = no\n"
        )
        self.process = None
        self.start()

    def start(self):
        self.log = open(self.directory / "ngircd.log", "a")
        self.process = subprocess.Popen(["ngircd", "--nodaemon", "--config", str(self.config)], stdout=self.log, stderr=self.log)
        wait_for_port(self.process, self.port, 15, "ngIRCd", lambda: (self.directory / "ngircd.log").read_text())

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()


_SESSION_CA = None


def session_ca():
    """The one private CA of this test session: (ca.pem, ca.key), made on first use."""
    global _SESSION_CA
    if _SESSION_CA is None:
        directory = pathlib.Path(tempfile.mkdtemp(prefix="wikiwire-test-ca-"))
        ca, ca_key = directory / "ca.pem", directory / "ca.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
                        "-subj", "/CN=wikiwire test CA"], check=True, capture_output=True)
        _SESSION_CA = (ca, ca_key)
    return _SESSION_CA


def make_certificates(directory, names="IP:127.0.0.1,DNS:irc.test.example"):
    """A server certificate for `names`, signed by the session's CA: (ca.pem, cert.pem, key.pem)."""
    directory = pathlib.Path(directory)
    ca, ca_key = session_ca()
    key, request, certificate = (directory / name for name in ["key.pem", "server.csr", "cert.pem"])
    extensions = directory / "server.ext"
    extensions.write_text(f"subjectAltName={names}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                          "extendedKeyUsage=serverAuth\n")
    commands = [
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(request), "-subj", "/CN=irc.test.example"],
        ["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
         "-CAserial", str(directory / "ca.srl"), "-out", str(certificate), "-days", "2", "-extfile", str(extensions)],
    ]
    for command in commands:
        subprocess.run(command, check=True, capture_output=True)
    return ca, certificate, key
