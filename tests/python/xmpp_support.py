"""XMPP test parts no one here wrote: Prosody (Debian) as the server, with its own test domain,
certificates from a private CA and accounts; slixmpp users, each in its own thread with its own
event loop, recording every message they get. Waits have deadlines; nothing sleeps for
readiness."""

import asyncio
import gc
import pathlib
import subprocess
import threading
import time

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

from conftest import free_port, make_certificates, wait_for, wait_for_port

DOMAIN = "wikiwire.test"
ROOMS = "conference." + DOMAIN
BOT = "bot@" + DOMAIN
BOT_PASSWORD = "bot-password-Xq7"
SECRET = "xmlrpc-secret-Zr81"


class Prosody:
    """Prosody on a free port, foreground, with offline storage, a MUC component and (unless
    `smacks=False`) XEP-0198 stream management, which keeps a broken stream `hibernation`
    seconds."""

    def __init__(self, directory, port=None, smacks=True, hibernation=60):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "data").mkdir(exist_ok=True)
        self.port = port or free_port()
        self.ca, self.certificate, self.key = make_certificates(self.directory, names=f"DNS:{DOMAIN},DNS:{ROOMS},DNS:localhost")
        self.config = self.directory / "prosody.cfg.lua"
        self.config.write_text(f"""
run_as_root = true
data_path = "{self.directory / 'data'}"
pidfile = "{self.directory / 'prosody.pid'}"
log = {{ debug = "{self.directory / 'prosody.log'}" }}
c2s_ports = {{ {self.port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{}}
legacy_ssl_ports = {{}}
s2s_ports = {{}}
component_ports = {{}}
http_ports = {{}}
https_ports = {{}}
c2s_require_encryption = true
allow_registration = false
authentication = "internal_hashed"
smacks_hibernation_time = {hibernation}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "offline"; {'"smacks";' if smacks else ''} "posix"; }}
modules_disabled = {{ "s2s" }}
ssl = {{ key = "{self.key}"; certificate = "{self.certificate}" }}
VirtualHost "{DOMAIN}"
VirtualHost "localhost"
Component "{ROOMS}" "muc"
    restrict_room_creation = false
""")
        self.process = None
        self.start()

    def register(self, user, password, domain=DOMAIN):
        subprocess.run(
            ["prosodyctl", "--config", str(self.config), "register", user, domain, password],
            check=True,
            capture_output=True,
        )
        return f"{user}@{domain}"

    def start(self):
        self.log = open(self.directory / "prosody.out", "a")
        self.process = subprocess.Popen(
            ["prosody", "--config", str(self.config), "-F"], stdout=self.log, stderr=self.log
        )
        wait_for_port(self.process, self.port, 20, "Prosody", self.read_log)

    def read_log(self):
        path = self.directory / "prosody.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def hub_config(self, xmlrpc=True, extra="", jid=BOT, port=None):
        """The `[xmpp]` (and `[xmlrpc]`) sections for a hub that uses this server (reached
        through `port` when given, e.g. a balancer in front of it)."""
        text = f"""
[xmpp]
jid = "{jid}"
password = "{BOT_PASSWORD}"
server = "127.0.0.1"
port = {port or self.port}
ca_file = "{self.ca}"
keepalive = "5s"
{extra}
"""
        if xmlrpc:
            text += f'\n[xmlrpc]\nlisten = "127.0.0.1:0"\nsecret = "{SECRET}"\n'
        return text


class Jabber:
    """A slixmpp user. `forms=False` leaves out Data Forms (XEP-0004) and, unless `oob=True`,
    OOB (XEP-0066), as a plain client would; `muc=True` can join rooms (XEP-0045)."""

    def __init__(self, prosody, jid, password, forms=True, resource="test", oob=None, muc=False):
        self.jid = jid
        self.messages = []
        self.presences = []
        self.iqs = []
        self.online = threading.Event()
        self.failed = None
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            client = slixmpp.ClientXMPP(f"{jid}/{resource}", password)
            client.ca_certs = pathlib.Path(prosody.ca)
            client.register_plugin("xep_0030")
            client.register_plugin("xep_0199")
            if muc:  # slixmpp's MUC plugin brings Data Forms with it
                client.register_plugin("xep_0045")
            if forms:
                client.register_plugin("xep_0004")
            if forms if oob is None else oob:
                client.register_plugin("xep_0066")
            client.add_event_handler("session_start", self._session_start)
            client.add_event_handler("message", lambda message: self.messages.append(message))
            client.add_event_handler("presence", lambda presence: self.presences.append(presence))
            client.add_event_handler("failed_auth", lambda *_: setattr(self, "failed", "auth"))
            self.client = client
            client.connect(host="127.0.0.1", port=prosody.port)
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        assert self.online.wait(20), f"{jid} did not come online ({self.failed})"

    async def _session_start(self, _event):
        await self.client.get_roster()
        self.client.send_presence()
        self.online.set()

    def call(self, coroutine, timeout=20):
        """Runs a coroutine on the client's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def do(self, function, *args, **kwargs):
        """Calls a client method on its loop."""
        async def run():
            return function(*args, **kwargs)
        return self.call(run())

    def send(self, to, body, kind="chat"):
        self.do(self.client.send_message, mto=to, mbody=body, mtype=kind)

    def send_raw(self, xml):
        self.do(self.client.send_raw, xml)

    def join_room(self, room, nick):
        """Joins a multi-user chat room (XEP-0045) and returns once in it."""
        self.call(self.client.plugin["xep_0045"].join_muc_wait(room, nick, maxstanzas=0), timeout=30)

    def make_members_only_room(self, room, nick):
        """Creates `room` as its owner and makes it members-only."""
        async def run():
            muc = self.client.plugin["xep_0045"]
            await muc.join_muc_wait(room, nick, maxstanzas=0)
            form = await muc.get_room_config(room)
            form["type"] = "submit"
            form.field["muc#roomconfig_membersonly"]["value"] = True
            await muc.set_room_config(room, form)
        self.call(run(), timeout=30)

    def make_member(self, room, jid):
        self.call(self.client.plugin["xep_0045"].set_affiliation(room, "member", jid=jid), timeout=30)

    def room_occupants(self, room):
        return self.do(self.client.plugin["xep_0045"].get_roster, room)

    def submit_form(self, to, fields, form_type):
        """Sends a filled-in Data Form (type `submit`) in a chat message."""
        async def run():
            message = self.client.make_message(mto=to, mtype="chat")
            form = self.client.plugin["xep_0004"].make_form(ftype="submit")
            form.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
            for var, value in fields.items():
                form.add_field(var=var, value=value)
            message.append(form)
            message.send()
        self.call(run())

    def wait_message(self, predicate=lambda message: True, timeout=20, start=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self.messages[start:]):
                if predicate(message):
                    return message
            time.sleep(0.02)
        summary = [(str(m["from"]), m["type"], m["body"][:80]) for m in self.messages[-10:]]
        raise AssertionError(f"{self.jid}: no matching message in {timeout}s; last: {summary}")

    def reply_to(self, command, timeout=20):
        """Sends a command to the bot and returns the text of its reply."""
        start = len(self.messages)
        self.send(BOT, command)
        reply = self.wait_message(lambda m: str(m["from"]).startswith(BOT) and m["type"] == "chat", timeout, start)
        return reply

    def notifications(self):
        return [m for m in self.messages if str(m["from"]).startswith(BOT) and m["type"] == "normal"]

    def roster_items(self):
        async def fetch():
            await self.client.get_roster()
            roster = self.client.client_roster
            return {str(jid): {"subscription": roster[jid]["subscription"], "removed": roster[jid]["removed"]}
                    for jid in roster.keys()}
        return self.call(fetch())

    def close(self):
        async def stop():
            self.client.disconnect(wait=1)
        try:
            self.call(stop(), timeout=5)
        except Exception:
            pass
        deadline = time.monotonic() + 5
        while self.client.transport is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if self.thread.is_alive():
            return

        # slixmpp's tasks and objects are finished while their loop is still open, so nothing
        # of theirs runs on a closed loop later.
        async def cancel_all():
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.loop.run_until_complete(cancel_all())
        self.client = None
        gc.collect()
        self.loop.close()


def form_fields(message):
    """The fields of a notification form, or None: {var: value}."""
    form = message.xml.find("{jabber:x:data}x")
    if form is None:
        return None
    fields = {}
    for field in form.findall("{jabber:x:data}field"):
        value = field.find("{jabber:x:data}value")
        fields[field.get("var")] = value.text if value is not None else None
    return fields


def oob_urls(message):
    return [x.findtext("{jabber:x:oob}url") for x in message.xml.findall("{jabber:x:oob}x")]


__all__ = ["Prosody", "Jabber", "wait_for", "form_fields", "oob_urls", "IqError", "IqTimeout",
           "DOMAIN", "ROOMS", "BOT", "BOT_PASSWORD", "SECRET"]
