"""Benchmark (figures, no assertions): how many notifications per second the Jabber bot delivers
to Prosody, and how fast they reach a client.

    cargo build --release -p wikiwire && python3 tests/python/bench_xmpp.py [COUNT] [--no-smacks]

It starts Prosody from Debian and the real `wikiwire serve` (release build if there is one),
sends COUNT notifications through the XML-RPC API the way MoinMoin does (`system.multicall`,
100 calls a request, one recipient each), and reports:

With `--no-smacks` Prosody runs without stream management (XEP-0198), and an answered ping
after each batch stands in for the acknowledgements.

* accepted: notifications per second stored in the outbox (XML-RPC `true`);
* to the server: notifications per second acknowledged by Prosody (stream management), with
  the recipient offline, so Prosody keeps them (mod_offline) — while they are being sent, and
  from a full outbox (sent while Prosody was down), which is the bot's own pace;
* to a client: the same with a slixmpp client online, until the client has every message.
"""

import os
import pathlib
import sys
import tempfile
import time
import xmlrpc.client

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
release = HERE.parents[1] / "target" / "release" / "wikiwire"
if "WIKIWIRE_BIN" not in os.environ and release.exists():
    os.environ["WIKIWIRE_BIN"] = str(release)
os.environ.setdefault("RUST_LOG", "warn")

from conftest import BINARY, Hub  # noqa: E402
from xmpp_support import BOT_PASSWORD, SECRET, Jabber, Prosody, wait_for  # noqa: E402


def send(rpc, jid, count, tag):
    started = time.monotonic()
    for first in range(0, count, 100):
        calls = xmlrpc.client.MultiCall(rpc)
        for n in range(first, min(first + 100, count)):
            calls.send_notification(SECRET, [jid], {
                "action": "page_changed",
                "subject": f"[Wiki] Update of Page {tag} {n}",
                "text": f"Page {tag} {n} has been changed by Alice.",
                "url_list": [{"url": f"http://wiki.example/Page{n}?action=diff", "description": "Changes"}],
                "editor": "Alice",
                "page_name": f"Page {tag} {n}",
                "revision": str(n),
            })
        assert all(calls())
    return time.monotonic() - started


def main():
    arguments = [argument for argument in sys.argv[1:] if not argument.startswith("--")]
    smacks = "--no-smacks" not in sys.argv[1:]
    count = int(arguments[0]) if arguments else 5000
    print(f"binary: {BINARY}; stream management: {'on' if smacks else 'off'}")
    with tempfile.TemporaryDirectory() as directory:
        directory = pathlib.Path(directory)
        prosody = Prosody(directory / "prosody", smacks=smacks)
        prosody.register("bot", BOT_PASSWORD)
        alice = prosody.register("alice", "alice-pw")
        (directory / "hub").mkdir()
        hub = Hub(directory / "hub", extra=prosody.hub_config())
        try:
            rpc = xmlrpc.client.ServerProxy(hub.xmlrpc)
            wait_for(lambda: hub.metric("wikiwire_xmpp_connected") == 1, 30, "the bot online")
            assert rpc.addJIDToRoster(SECRET, alice)
            wait_for(lambda: hub.metric("wikiwire_xmpp_delivered_total") >= 0, 5)

            base = hub.metric("wikiwire_xmpp_delivered_total")
            started = time.monotonic()
            accepted = send(rpc, alice, count, "offline")
            wait_for(lambda: hub.metric("wikiwire_xmpp_delivered_total") >= base + count, 600, "delivery")
            elapsed = time.monotonic() - started
            print(f"{count} notifications, recipient offline:")
            print(f"  accepted (stored in the outbox): {count / accepted:,.0f}/s")
            print(f"  acknowledged by Prosody:         {count / elapsed:,.0f}/s ({elapsed:.2f} s in all)")

            # The bot's own pace: a full outbox, filled while Prosody was down.
            prosody.stop()
            wait_for(lambda: hub.metric("wikiwire_xmpp_connected") == 0, 60, "the bot to notice")
            base = hub.metric("wikiwire_xmpp_delivered_total")
            send(rpc, alice, count, "backlog")
            prosody.start()
            wait_for(lambda: hub.metric("wikiwire_xmpp_connected") == 1, 120, "the bot back online")
            started = time.monotonic()
            wait_for(lambda: hub.metric("wikiwire_xmpp_delivered_total") >= base + count, 600, "delivery")
            elapsed = time.monotonic() - started
            print(f"{count} notifications waiting in the outbox when Prosody came back:")
            print(f"  acknowledged by Prosody:         {count / elapsed:,.0f}/s ({elapsed:.2f} s in all)")

            user = Jabber(prosody, alice, "alice-pw", forms=False)
            try:
                # The offline messages arrive first; wait for them before measuring.
                wait_for(lambda: len(user.messages) >= 2 * count, 600, "offline messages")
                user.messages.clear()
                base = hub.metric("wikiwire_xmpp_delivered_total")
                started = time.monotonic()
                send(rpc, alice, count, "online")
                wait_for(lambda: hub.metric("wikiwire_xmpp_delivered_total") >= base + count, 600, "delivery")
                to_server = time.monotonic() - started
                wait_for(lambda: len(user.notifications()) >= count, 600, "every message at the client")
                to_client = time.monotonic() - started
                print(f"{count} notifications, recipient online (slixmpp):")
                print(f"  acknowledged by Prosody: {count / to_server:,.0f}/s")
                print(f"  received by the client:  {count / to_client:,.0f}/s ({to_client:.2f} s in all)")
            finally:
                user.close()
        finally:
            hub.stop()
            prosody.stop()


if __name__ == "__main__":
    main()
