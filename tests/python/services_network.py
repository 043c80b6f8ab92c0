"""A network with services, as Libera.Chat-style networks run them, from Debian packages no one
here wrote: InspIRCd 3 linked to Anope 2.0 (protocol module `inspircd3`). Anope gives NickServ
(accounts, SASL through InspIRCd's `sasl` module, nick enforcement) and ChanServ (registered
channels, access flags that voice or op on join, locked modes). Loopback ports only.

Anope's configuration is Debian's own (/etc/anope), copied and changed only where a test needs
it: the uplink, its own paths, a fast reconnect, e-mail not required, and nick protection that
renames an unidentified user of a registered nick within seconds."""

import pathlib
import re
import shutil
import socket
import subprocess
import time

from conftest import free_port, wait_for

INSPIRCD = "/usr/sbin/inspircd"
ANOPE = "/usr/sbin/anope"
LINK_PASSWORD = "link-secret-for-tests"
SERVICES = "services.wiki.test"


class ServicesNetwork:
    def __init__(self, directory, kill_after=5):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.link_port = free_port()
        self.kill_after = kill_after
        self.ircd = None
        self.services = None
        self._write_inspircd()
        self._write_anope()
        self.start_ircd()
        self.start_services()

    # --- InspIRCd -------------------------------------------------------------------------------

    def _write_inspircd(self):
        d = self.directory / "inspircd"
        d.mkdir(exist_ok=True)
        (d / "motd.txt").write_text("services test network\n")
        self.ircd_config = d / "inspircd.conf"
        self.ircd_log = d / "inspircd.log"
        self.ircd_config.write_text(f"""<config format="xml">
<server name="irc.wiki.test" description="services test network" network="WikiTest">
<admin name="test" nick="test" email="test@wiki.test">
<bind address="127.0.0.1" port="{self.port}" type="clients">
<bind address="127.0.0.1" port="{self.link_port}" type="servers">
<connect allow="*" timeout="60" pingfreq="120" hardsendq="1048576" softsendq="65536" recvq="65536"
         threshold="1000" commandrate="100000" fakelag="off" localmax="1000" globalmax="1000"
         maxchans="20" limit="1000" resolvehostnames="no" useident="no">
<link name="{SERVICES}" ipaddr="127.0.0.1" port="{self.link_port}" allowmask="127.0.0.0/8"
      sendpass="{LINK_PASSWORD}" recvpass="{LINK_PASSWORD}">
<uline server="{SERVICES}" silent="yes">
<module name="spanningtree">
<module name="services_account">
<module name="sasl">
<sasl target="{SERVICES}" requiressl="no">
<module name="cap">
<module name="ircv3">
<module name="ircv3_accounttag">
<module name="ircv3_capnotify">
<module name="ircv3_servertime">
<module name="ircv3_echomessage">
<module name="hidechans">
<module name="chghost">
<module name="chgident">
<module name="chgname">
<module name="svshold">
<module name="topiclock">
<module name="namesx">
<files motd="{d / 'motd.txt'}">
<pid file="{d / 'inspircd.pid'}">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{self.ircd_log}">
<dns timeout="1">
<limits maxchan="64" maxnick="30" maxline="512">
<security announceinvites="dynamic" hidesplits="no" hideulines="no" userstats="Pu">
""")

    def start_ircd(self):
        self.ircd = subprocess.Popen([INSPIRCD, f"--config={self.ircd_config}", "--nofork", "--runasroot", "--nopid"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _listening(self.port), 20, lambda: f"InspIRCd did not listen:\n{_tail(self.ircd_log)}")

    def stop_ircd(self):
        _stop(self.ircd)

    # --- Anope ----------------------------------------------------------------------------------

    def _write_anope(self):
        d = self.directory / "anope"
        for sub in ("conf", "data", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for conf in pathlib.Path("/etc/anope").glob("*.conf"):
            shutil.copy(conf, d / "conf" / conf.name)
        shutil.copy("/etc/anope/services.motd", d / "conf" / "services.motd")
        services = (d / "conf" / "services.conf").read_text()
        services = _in_block(services, "uplink", {"port": str(self.link_port), "password": f'"{LINK_PASSWORD}"'})
        services = _in_block(services, "serverinfo", {"name": f'"{SERVICES}"', "pid": f'"{d / "anope.pid"}"',
                                                      "motd": f'"{d / "conf" / "services.motd"}"'})
        services = _in_block(services, "networkinfo", {"networkname": '"WikiTest"', "nicklen": "30"})
        services = _in_block(services, "options", {"retrywait": "1s", "readtimeout": "2s", "timeoutcheck": "1s",
                                                   "casemap": "\"rfc1459\"", "languages": "\"\""})
        services = services.replace('value = "services.example.com"', f'value = "{SERVICES}"')
        (d / "conf" / "services.conf").write_text(services)
        nickserv = (d / "conf" / "nickserv.conf").read_text()
        nickserv = re.sub(r"\n\s*forceemail = yes", "\n\tforceemail = no", nickserv)
        nickserv = re.sub(r'\n\s*defaults = "[^"]*"', '\n\tdefaults = "killprotect kill_quick ns_secure hide_email autoop"',
                          nickserv)
        nickserv = re.sub(r"\n\s*killquick = \w+", f"\n\tkillquick = {self.kill_after}s", nickserv)
        (d / "conf" / "nickserv.conf").write_text(nickserv)
        # Every client of a test comes from 127.0.0.1: no per-address session limit.
        operserv = (d / "conf" / "operserv.conf").read_text()
        operserv, count = re.subn(r"\n\s*defaultsessionlimit = \d+", "\n\tdefaultsessionlimit = 1000", operserv)
        assert count == 1, "operserv.conf has no defaultsessionlimit"
        (d / "conf" / "operserv.conf").write_text(operserv)
        self.anope_dir = d

    def synced(self):
        """How often the IRCd finished its burst to services (once per link)."""
        return _tail(self.anope_dir / "anope.out", 10**7).count("irc.wiki.test (services test network) is done syncing")

    def wait_linked(self, before):
        wait_for(lambda: self.services.poll() is None and self.synced() > before, 30,
              lambda: f"Anope did not link:\n{self.services_output()}")

    def start_services(self):
        d = self.anope_dir
        before = self.synced() if (d / "anope.out").exists() else 0
        self.services_log = open(d / "anope.out", "ab")
        self.services = subprocess.Popen(
            [ANOPE, "--nofork", f"--confdir={d / 'conf'}", f"--dbdir={d / 'data'}", f"--logdir={d / 'logs'}", "--modulesdir=/usr/lib/anope",
             "--config=services.conf"],
            stdout=self.services_log, stderr=subprocess.STDOUT)
        self.wait_linked(before)

    def stop_services(self):
        _stop(self.services)
        self.services_log.close()

    def services_output(self):
        logs = sorted((self.anope_dir / "logs").glob("*"))
        text = (self.anope_dir / "anope.out").read_text(errors="replace")
        return text[-3000:] + "".join(_tail(log) for log in logs[-1:])

    def stop(self):
        for process in (self.services, self.ircd):
            _stop(process)


def _in_block(text, block, values):
    """Sets `key = value` lines inside the first `block { ... }` of an Anope configuration."""
    start = re.search(rf"\n{block}\s*\n\{{", text).end()
    end = text.index("\n}", start)
    body = text[start:end]
    for key, value in values.items():
        body, count = re.subn(rf"\n(\s*)#?{key}\s*=\s*[^\n]*", rf"\n\g<1>{key} = {value}", body, count=1)
        assert count == 1, f"no {key} in {block}"
    return text[:start] + body + text[end:]


def _listening(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _tail(path, size=3000):
    try:
        return pathlib.Path(path).read_text(errors="replace")[-size:]
    except FileNotFoundError:
        return ""


def _stop(process):
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
