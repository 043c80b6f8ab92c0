"""Jobs that must run once in a cluster (issue 11): a relay configured on every hub node runs on
exactly one, moves to another node when its node dies or is paused, and its channel on the other
network (ngIRCd from Debian) gets every event in order, at most the one line in flight twice.

The Jabber bot (issue 29), with and without stream management on Prosody: kill -9 of its node
under load, SIGSTOP past its lease, a rolling restart, and a single hub killed and restarted.
Nothing acknowledged is lost; a notification comes twice only when the server had taken it from
one run of the bot and the next run sent it again (never twice from one session), and never more
than the dispatcher has in flight.

Real three-node NATS cluster, hub processes killed or stopped by their PIDs. Takeover times and
delivered / twice / lost per scenario are written to target/test-artifacts/cluster-jobs.txt."""

import json
import os
import signal
import threading
import time

import pytest

from conftest import MOIN_TOKEN, Hub, NgIrcd, parse, wait_for
import nats_cluster
from nats_cluster import nats  # noqa: F401 (a fixture)
from test_relay import Observer

TTL = 4


def report(line):
    nats_cluster.report(line, "cluster-jobs.txt")


def job_node(tmp_path, nats, node, ngircd=None, prosody=None):
    """A hub node of the cluster with the relay to `ngircd` and the bot on `prosody`, when given."""
    directory = tmp_path / node
    directory.mkdir(exist_ok=True)
    extra = nats.toml_section(node) + f'lease_ttl = "{TTL}s"\n\n'
    if ngircd:
        extra += (
            f'[[relay]]\nurl = "irc://127.0.0.1:{ngircd.port}/#wiki-feed"\nnick = "wikirelay"\n'
            'format = "packed"\nfilter = "wiki=MoinMaster"\nrate = 2\n'
        )
    if prosody:
        extra += prosody.hub_config()
    return Hub(directory, extra=extra)


def gauge_is_one(hub, name):
    """Whether the node's gauge says 1; a stopped or dead node is not asked."""
    try:
        return hub.metric(name) == 1
    except Exception:
        return False


def relaying(hub):
    return gauge_is_one(hub, "wikiwire_relay_connected")


def bot_connected(hub):
    return gauge_is_one(hub, "wikiwire_xmpp_connected")


class Load(threading.Thread):
    """Sends item after item, every `pause` seconds, to the first node that takes it:
    `send(hub, n)` returns what the node acknowledged (kept in `acked`), or None. Every attempt
    has its own `n`: a call whose answer was lost (its node killed) may have been stored, and
    sending the same item again would be a repeat the hub did not make."""

    def __init__(self, hubs, send, pause):
        super().__init__(daemon=True)
        self.hubs, self.send, self.pause = hubs, send, pause
        self.acked = []
        self.stopping = threading.Event()

    def run(self):
        n = 0
        while not self.stopping.is_set():
            for hub in list(self.hubs):
                try:
                    acked = self.send(hub, n)
                except Exception:
                    acked = None
                n += 1
                if acked is not None:
                    self.acked.extend(acked)
                    break
            time.sleep(self.pause)


def Publisher(hubs, pause=0.25):
    """One MoinMaster event per request; `acked` holds the ids. Each event has a key, as a wiki's
    would: an attempt refused with 503 (or cut off) during a failover may still have stored it, and
    the retry then gets the first id back instead of storing the change a second time."""
    def send(hub, n):
        event = {"wiki": "MoinMaster", "action": "SAVE", "page": f"Relayed {n}", "user": "u", "key": f"relayed-{n}"}
        status, body = hub.request("POST", "/api/v1/events", [event], token=MOIN_TOKEN)
        return json.loads(body)["ids"] if status in (200, 201) else None
    return Load(hubs, send, pause)


class Watcher(threading.Thread):
    """The observer in the channel, reading all the time (the relay must never wait on it)."""

    def __init__(self, observer):
        super().__init__(daemon=True)
        self.observer = observer
        self.lines = []  # (time, nick, id)
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            line = self.observer.raw.read_line(0.2)
            if line is None:
                continue
            tags, source, verb, params = parse(line)
            if verb == "PRIVMSG":
                self.observer.take(line)
                self.lines.append((time.monotonic(), source.split("!")[0], self.observer.ids[-1]))


def check_channel(watcher, published):
    """Every published event in the channel, in order; at most the one line in flight twice."""
    ids = [event_id for _, _, event_id in watcher.lines]
    assert sorted(set(ids)) == sorted(published), (sorted(set(published) - set(ids)), ids)
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == sorted(first_seen), ids
    repeats = len(ids) - len(set(ids))
    assert repeats <= 1, ids
    return repeats


def two_nodes(tmp_path, nats, holds, job, **services):
    """Nodes a and b; once exactly one of them `holds` the job, and still alone a second later:
    both nodes, that holder and the other."""
    hubs = [job_node(tmp_path, nats, node, **services) for node in ("a", "b")]
    wait_for(lambda: sum(holds(hub) for hub in hubs) == 1, 30, f"one node running {job}")
    time.sleep(1)
    assert sum(holds(hub) for hub in hubs) == 1, f"exactly one node runs {job}"
    holder = next(hub for hub in hubs if holds(hub))
    other = next(hub for hub in hubs if hub is not holder)
    return hubs, holder, other


def start(tmp_path, nats):
    ngircd = NgIrcd(tmp_path / "ngircd")
    observer = Observer(ngircd.port, "#wiki-feed")
    watcher = Watcher(observer)
    watcher.start()
    hubs, holder, other = two_nodes(tmp_path, nats, relaying, "the relay", ngircd=ngircd)
    return ngircd, watcher, hubs, holder, other


def finish(publisher, watcher, hubs, ngircd, timeout=90):
    publisher.stopping.set()
    publisher.join(10)
    # A sentinel after the load: the relay sends in id order, so once the sentinel is in the
    # channel, a late repeat of any line before it would be there too.
    sentinel = None
    for hub in publisher.hubs:
        try:
            sentinel = publisher.send(hub, "sentinel")
        except Exception:
            continue
        if sentinel:
            break
    assert sentinel, "the sentinel was published"
    publisher.acked.extend(sentinel)
    last = max(publisher.acked)
    wait_for(lambda: last in [event_id for _, _, event_id in watcher.lines], timeout, f"event {last} in the channel")
    watcher.stopping.set()
    watcher.join(5)
    for hub in hubs:
        hub.stop(signal.SIGKILL)
    ngircd.stop()


def test_the_relay_moves_when_its_node_is_killed(tmp_path, nats):
    ngircd, watcher, hubs, holder, other = start(tmp_path, nats)
    publisher = Publisher([other])
    publisher.start()
    try:
        wait_for(lambda: len(watcher.lines) >= 8, 60, "lines before the kill")
        killed_at = time.monotonic()
        holder.stop(signal.SIGKILL)
        wait_for(lambda: relaying(other), TTL + 20, "the other node to take the relay")
        joined = time.monotonic() - killed_at
        wait_for(lambda: any(at > killed_at + joined for at, _, _ in watcher.lines), 30, "a line after the takeover")
        first_line = min(at for at, _, _ in watcher.lines if at > killed_at) - killed_at
        wait_for(lambda: len(publisher.acked) >= 30, 60, "30 events published")
    finally:
        finish(publisher, watcher, hubs, ngircd)
    repeats = check_channel(watcher, publisher.acked)
    report(f"relay, kill -9 of its node (lease ttl {TTL} s): the other node joined after {joined:.1f} s, "
           f"first line after {first_line:.1f} s; {len(publisher.acked)} events, {repeats} line(s) repeated")


def pause_past_lease(holder, taken_over, what):
    """SIGSTOP of the holder's node for twice the lease TTL, or longer until `taken_over()` holds
    (at most 10 s more); returns when the pause began and how long until it was taken over."""
    stopped_at = time.monotonic()
    os.kill(holder.process.pid, signal.SIGSTOP)
    try:
        wait_for(taken_over, TTL * 2 + 10, what)
        taken = time.monotonic() - stopped_at
        time.sleep(max(0, TTL * 2 - (time.monotonic() - stopped_at)))
    finally:
        os.kill(holder.process.pid, signal.SIGCONT)
    return stopped_at, taken


def test_a_paused_holder_sends_nothing_after_it_wakes(tmp_path, nats):
    ngircd, watcher, hubs, holder, other = start(tmp_path, nats)
    publisher = Publisher([other])
    publisher.start()
    try:
        wait_for(lambda: len(watcher.lines) >= 5, 60, "lines before the pause")
        # The new holder may take longer: about 3 s of nick collision with the sleeping connection
        # come on top of the TTL.
        stopped_at, taken = pause_past_lease(
            holder, lambda: relaying(other), "the other node to take the relay while the holder sleeps")
        woke_at = time.monotonic()
        nicks_before = {nick for at, nick, _ in watcher.lines if at < stopped_at}
        wait_for(lambda: len(publisher.acked) >= 30, 60, "30 events published")
        wait_for(lambda: not relaying(holder), 15, "the woken node to stop relaying")
        assert relaying(other), "the new holder keeps the relay"
    finally:
        finish(publisher, watcher, hubs, ngircd)
    check_channel(watcher, publisher.acked)
    # The old holder's nick spoke only before its pause (the new one joined under another nick,
    # the old connection still holding "wikirelay" while it slept), and nothing came from it
    # after it woke: exactly one holder throughout.
    (old_nick,) = nicks_before
    late = [(at - woke_at, event_id) for at, nick, event_id in watcher.lines if nick == old_nick and at > stopped_at + 1]
    assert not late, f"the paused holder spoke after its pause: {late}"
    log = (holder.directory / "hub.log").read_text()
    assert "the relay's lease was lost" in log, log[-3000:]
    assert any(reason in log for reason in (
        "lease not renewed in time", "lease taken over by another node", "cursor was moved by another node")), log[-3000:]
    report(f"relay, SIGSTOP of its node for {woke_at - stopped_at:.1f} s: the other node took over after {taken:.1f} s; "
           f"the woken node sent nothing more")


def ready(hub):
    try:
        return hub.request("GET", "/healthz")[0] == 200
    except Exception:
        return False


def restart_everything(nats, hubs):
    """Every NATS server, then every hub node (SIGTERM: it hands its jobs over), one at a time."""
    steps = nats.rolling_restart()
    for hub in hubs:
        began = time.monotonic()
        assert hub.stop() == 0
        hub.start()
        wait_for(lambda: ready(hub), 60, "the restarted node ready")
        steps.append(f"hub {hub.directory.name} {time.monotonic() - began:.1f} s")
    return steps


def test_rolling_restart_of_every_nats_and_hub_node_under_load(tmp_path, nats):
    ngircd, watcher, hubs, holder, other = start(tmp_path, nats)
    publisher = Publisher(hubs)
    publisher.start()
    try:
        wait_for(lambda: len(watcher.lines) >= 3, 60, "lines before the restarts")
        steps = restart_everything(nats, hubs)
        wait_for(lambda: sum(relaying(hub) for hub in hubs) == 1, 60, "one node relaying after the restarts")
        published = len(publisher.acked)
        wait_for(lambda: len(publisher.acked) >= published + 5, 60, "publishing after the restarts")
    finally:
        finish(publisher, watcher, hubs, ngircd)
    repeats = check_channel(watcher, publisher.acked)
    takeovers = sum((hub.directory / "hub.log").read_text().count("this node runs the relay") for hub in hubs)
    report(f"relay, rolling restart ({', '.join(steps)}): {len(publisher.acked)} events, "
           f"the relay started {takeovers} times across the nodes, {repeats} line(s) repeated")


# The Jabber bot: configured on every node, delivered by the node holding its lease; the wikis'
# XML-RPC calls are taken by any node and stored in NATS.

def prosody_server(tmp_path, smacks=True, hibernation=60):
    from xmpp_support import Prosody
    server = Prosody(tmp_path / "prosody", smacks=smacks, hibernation=hibernation)
    server.register("bot", "bot-password-Xq7")
    server.register("alice", "alice-password-1")
    return server


@pytest.fixture
def prosody(tmp_path):
    server = prosody_server(tmp_path)
    yield server
    server.stop()


@pytest.fixture(params=[True, False], ids=["smacks", "no-smacks"])
def any_prosody(request, tmp_path):
    """Prosody with stream management (XEP-0198, mod_smacks) and without."""
    server = prosody_server(tmp_path, smacks=request.param)
    server.smacks = request.param
    yield server
    server.stop()


# wikiwire_xmpp::bot::outbox::IN_FLIGHT: the most items a run of the bot has handed to the
# server and not yet removed from the outbox, so the most the next run can send again.
IN_FLIGHT = 100


def Notifier(hubs, alice, pause=0.1, per_call=1):
    """A wiki calling send_notification for alice, `per_call` pages per request (one
    system.multicall, as MoinMoin sends them); `acked` holds the page numbers."""
    import xmlrpc.client
    from xmpp_support import SECRET

    def send(hub, n):
        calls = xmlrpc.client.MultiCall(xmlrpc.client.ServerProxy(hub.xmlrpc))
        pages = [n * per_call + k for k in range(per_call)]
        for page in pages:
            calls.send_notification(SECRET, [alice], {
                "action": "page_changed", "subject": f"[Wiki] Update of N{page}",
                "text": f"N{page} has been changed.", "editor": "Alice", "page_name": f"N{page}", "url_list": []})
        return pages if all(answer is True for answer in calls()) else None
    return Load(hubs, send, pause)


# The bot's scenarios run under this load: 10 notifications a request, 10 requests a second, so
# that some of the outbox is out whenever the holder dies.
BURST = 10


def received(alice, senders=False):
    """Page numbers of the notifications alice got, in order (with the sending resource)."""
    import re
    pages = []
    for message in alice.notifications():
        found = re.search(r"\bN(\d+) has been changed", str(message["body"]))
        if found:
            page = int(found.group(1))
            pages.append((page, str(message["from"])) if senders else page)
    return pages


def tally(alice, notifier, timeout=60):
    """Stops the load and waits for every acknowledged notification; returns (delivered, twice,
    lost) and checks the bound: nothing lost, no session sent a page twice (a repeat is one run
    of the bot sending what the run before it had sent), at most IN_FLIGHT repeats."""
    notifier.stopping.set()
    notifier.join(10)
    acked = set(notifier.acked)
    try:
        wait_for(lambda: acked <= set(received(alice)), timeout, "every acknowledged notification delivered")
    except AssertionError:
        pass  # counted as lost below, and asserted after the figures are out
    pages = received(alice, senders=True)
    numbers = [page for page, _ in pages]
    delivered = len(acked & set(numbers))
    twice = len(numbers) - len(set(numbers))
    lost = sorted(acked - set(numbers))
    same_session = sorted({page for page, sender in pages if pages.count((page, sender)) > 1})
    return delivered, twice, lost, same_session


def tally_after(alice, notifier, more, what):
    """The tally once `more` notifications have been acknowledged from now on."""
    acked = len(notifier.acked)
    wait_for(lambda: len(notifier.acked) >= acked + more, 60, what)
    return tally(alice, notifier)


def check_tally(figures, smacks):
    delivered, twice, lost, same_session = figures
    assert not lost, f"acknowledged and never delivered: {lost}"
    if smacks:
        # XEP-0198: the next run resumes the stream, and the server's count says which of the
        # last run's items it took. (A resumed stream keeps its resource, so a repeat would look
        # like one session's: exactly once is the whole check.)
        assert twice == 0, f"{twice} delivered twice with stream management: {same_session}"
        return
    assert not same_session, f"sent twice by one session: {same_session}"
    assert twice <= IN_FLIGHT, f"{twice} repeats: more than the {IN_FLIGHT} a run has in flight"


def figures(figures):
    delivered, twice, lost, _ = figures
    return f"{delivered} delivered, {twice} twice, {len(lost)} lost"


def mode(prosody):
    return "with stream management" if prosody.smacks else "without stream management"


def stop_bots(notifier, alice, *hubs):
    """Teardown: the notifier stops, alice leaves, the hubs are killed (-9)."""
    notifier.stopping.set()
    alice.close()
    for hub in hubs:
        hub.stop(signal.SIGKILL)


def start_bots(tmp_path, nats, prosody):
    from xmpp_support import DOMAIN, Jabber
    alice = Jabber(prosody, f"alice@{DOMAIN}", "alice-password-1")
    hubs, holder, other = two_nodes(tmp_path, nats, bot_connected, "the bot", prosody=prosody)
    return alice, hubs, holder, other


def test_the_bot_moves_when_its_node_is_killed(tmp_path, nats, any_prosody):
    prosody = any_prosody
    alice, hubs, holder, other = start_bots(tmp_path, nats, prosody)
    notifier = Notifier([other, holder], f"alice@{prosody_domain()}", per_call=BURST)
    notifier.start()
    try:
        wait_for(lambda: len(received(alice)) >= 10, 60, "notifications before the kill")
        killed_at = time.monotonic()
        before = len(alice.messages)
        holder.stop(signal.SIGKILL)
        wait_for(lambda: bot_connected(other), TTL + 30, "the other node to take the bot")
        taken = time.monotonic() - killed_at
        wait_for(lambda: len(alice.messages) > before + 5, 60, "notifications after the takeover")
        wait_for(lambda: len(notifier.acked) >= 80, 60, "80 notifications acknowledged")
        counted = tally(alice, notifier)
    finally:
        stop_bots(notifier, alice, *hubs)
    report(f"bot {mode(prosody)}, kill -9 of its node under load (lease ttl {TTL} s): the other node was "
           f"online after {taken:.1f} s; {len(notifier.acked)} acknowledged: {figures(counted)}")
    check_tally(counted, prosody.smacks)


def test_a_paused_bot_node_sends_nothing_after_it_wakes(tmp_path, nats, any_prosody):
    prosody = any_prosody
    alice, hubs, holder, other = start_bots(tmp_path, nats, prosody)
    notifier = Notifier([other], f"alice@{prosody_domain()}", per_call=BURST)
    notifier.start()
    try:
        wait_for(lambda: len(received(alice)) >= 10, 60, "notifications before the pause")
        old_senders = {str(message["from"]) for message in alice.notifications()}
        _, taken = pause_past_lease(holder, lambda: bot_connected(other), "the other node to take the bot")
        woke = len(alice.messages)
        wait_for(lambda: not bot_connected(holder), 20, "the woken node to stop its bot")
        wait_for(lambda: len(notifier.acked) >= 80, 60, "80 notifications acknowledged")
        counted = tally(alice, notifier)
        assert bot_connected(other), "the new holder keeps the bot"
        if not prosody.smacks:
            # Each session has its own resource: nothing came from the paused node's after it woke.
            # (With stream management the new holder resumes that very session, resource and all:
            # anything the woken node sent would be a repeat, which check_tally rules out.)
            late = [str(message["body"])[:40] for message in alice.messages[woke:] if str(message["from"]) in old_senders]
            assert len(old_senders) == 1 and not late, (old_senders, late)
    finally:
        stop_bots(notifier, alice, *hubs)
    log = (holder.directory / "hub.log").read_text()
    assert "the bot's lease was lost" in log, log[-3000:]
    report(f"bot {mode(prosody)}, SIGSTOP of its node for {2 * TTL} s: the other node was online after "
           f"{taken:.1f} s; {len(notifier.acked)} acknowledged: {figures(counted)}")
    check_tally(counted, prosody.smacks)


def prosody_domain():
    from xmpp_support import DOMAIN
    return DOMAIN


def test_rolling_restart_under_notifications_loses_none(tmp_path, nats, any_prosody):
    prosody = any_prosody
    alice, hubs, holder, other = start_bots(tmp_path, nats, prosody)
    notifier = Notifier(hubs, f"alice@{prosody_domain()}", per_call=BURST)
    notifier.start()
    try:
        wait_for(lambda: len(received(alice)) >= 5, 60, "notifications before the restarts")
        steps = restart_everything(nats, hubs)
        wait_for(lambda: sum(bot_connected(hub) for hub in hubs) == 1, 60, "one node running the bot after the restarts")
        counted = tally_after(alice, notifier, 10, "notifications after the restarts")
    finally:
        stop_bots(notifier, alice, *hubs)
    runs = sum((hub.directory / "hub.log").read_text().count("this node runs the Jabber bot") for hub in hubs)
    report(f"bot {mode(prosody)}, rolling restart ({', '.join(steps)}): the bot started {runs} times "
           f"across the nodes; {len(notifier.acked)} acknowledged: {figures(counted)}")
    check_tally(counted, prosody.smacks)


def test_subscriptions_and_the_roster_follow_the_bot_to_another_node(tmp_path, nats, prosody):
    import xmlrpc.client
    from xmpp_support import SECRET
    alice, hubs, holder, other = start_bots(tmp_path, nats, prosody)
    jid = f"alice@{prosody_domain()}"
    try:
        # Taken by the node that does not run the bot, delivered by the one that does.
        assert xmlrpc.client.ServerProxy(other.xmlrpc).addJIDToRoster(SECRET, jid) is True
        assert "MoinMaster" in alice.reply_to('subscribe MoinMaster "Help/*"')["body"]
        holder.stop(signal.SIGKILL)
        wait_for(lambda: bot_connected(other), TTL + 30, "the other node to take the bot")
        assert "Help/*" in alice.reply_to("subscriptions", timeout=30)["body"], "the subscription is in NATS"
        other.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "Help/After Takeover", "user": "Bob"})
        alice.wait_message(lambda m: m["type"] == "normal" and "Help/After Takeover" in m["body"], 60)
    finally:
        alice.close()
        for hub in hubs:
            hub.stop(signal.SIGKILL)


def test_kill_9_of_the_node_running_both_the_bot_and_a_relay_while_both_are_busy(tmp_path, nats, prosody):
    from xmpp_support import DOMAIN, Jabber
    ngircd = NgIrcd(tmp_path / "ngircd")
    observer = Observer(ngircd.port, "#wiki-feed")
    watcher = Watcher(observer)
    watcher.start()
    alice = Jabber(prosody, f"alice@{DOMAIN}", "alice-password-1")

    # The first node takes both jobs before the second exists.
    first = job_node(tmp_path, nats, "a", ngircd, prosody)
    wait_for(lambda: relaying(first) and bot_connected(first), 30, "the first node running both jobs")
    second = job_node(tmp_path, nats, "b", ngircd, prosody)
    hubs = [first, second]
    publisher = Publisher([second])
    notifier = Notifier([second], f"alice@{DOMAIN}")
    publisher.start()
    notifier.start()
    try:
        wait_for(lambda: len(watcher.lines) >= 5 and len(received(alice)) >= 10, 60, "both jobs busy")
        assert not relaying(second) and not bot_connected(second), "one holder per job"
        killed_at = time.monotonic()
        first.stop(signal.SIGKILL)
        wait_for(lambda: relaying(second) and bot_connected(second), TTL + 30, "the second node taking both jobs")
        taken = time.monotonic() - killed_at
        wait_for(lambda: len(publisher.acked) >= 30 and len(notifier.acked) >= 80, 90, "load after the kill")
        counted = tally(alice, notifier)
    finally:
        notifier.stopping.set()
        alice.close()
        finish(publisher, watcher, hubs, ngircd)
    repeats = check_channel(watcher, publisher.acked)
    report(f"bot and relay on one node, kill -9: the other node ran both after {taken:.1f} s; relay "
           f"{len(publisher.acked)} events, {repeats} repeated; bot with stream management, "
           f"{len(notifier.acked)} acknowledged: {figures(counted)}")
    check_tally(counted, smacks=True)


def single_bot(tmp_path, prosody, port=None):
    """One hub (no cluster) running the bot on `prosody` (through `port` when given), online;
    alice, and a wiki that will notify her (not started)."""
    from xmpp_support import DOMAIN, Jabber
    alice = Jabber(prosody, f"alice@{DOMAIN}", "alice-password-1")
    (tmp_path / "single").mkdir()
    hub = Hub(tmp_path / "single", extra=prosody.hub_config(port=port))
    wait_for(lambda: bot_connected(hub), 30, "the bot online")
    return alice, hub, Notifier([hub], f"alice@{DOMAIN}", per_call=BURST)


def test_a_single_hub_killed_and_restarted_under_notifications(tmp_path, any_prosody):
    """One node, its outbox in xmpp.sqlite: kill -9 under load, started again on the same data."""
    prosody = any_prosody
    alice, hub, notifier = single_bot(tmp_path, prosody)
    try:
        notifier.start()
        # Killed in full flow, and loaded again after the restart.
        wait_for(lambda: len(received(alice)) >= 200, 60, "notifications before the kill")
        killed_at = time.monotonic()
        hub.stop(signal.SIGKILL)
        hub.start()
        wait_for(lambda: bot_connected(hub), 30, "the bot online again")
        back = time.monotonic() - killed_at
        counted = tally_after(alice, notifier, 200, "notifications after the restart")
    finally:
        stop_bots(notifier, alice, hub)
    report(f"bot {mode(prosody)}, a single hub killed (-9) and restarted: online again after {back:.1f} s; "
           f"{len(notifier.acked)} acknowledged: {figures(counted)}")
    check_tally(counted, prosody.smacks)


def test_the_bots_connection_cut_under_notifications(tmp_path, any_prosody):
    """One node: the TCP connection to the XMPP server (through a balancer the test can cut) is
    reset three times under load while the server stays up. With stream management the bot
    resumes its own stream and sends only what the server had not taken."""
    prosody = any_prosody
    from test_cluster import Balancer
    cable = Balancer([prosody.port])
    alice, hub, notifier = single_bot(tmp_path, prosody, cable.port)
    try:
        notifier.start()
        for cut in range(3):
            wait_for(lambda: len(received(alice)) >= 100 * (cut + 1), 60, f"notifications before cut {cut + 1}")
            assert cable.cut() == 1, "the bot's one connection"
            wait_for(lambda: bot_connected(hub), 60, "the bot online again")
        counted = tally_after(alice, notifier, 100, "notifications after the cuts")
    finally:
        stop_bots(notifier, alice, hub)
        cable.close()
    log = (tmp_path / "single" / "hub.log").read_text()
    resumed = log.count("XMPP stream resumed")
    report(f"bot {mode(prosody)}, its connection to the XMPP server reset 3 times under load: resumed "
           f"{resumed} times; {len(notifier.acked)} acknowledged: {figures(counted)}")
    if prosody.smacks:
        assert resumed == 3, log[-3000:]
    check_tally(counted, prosody.smacks)


def test_a_single_hub_back_after_the_server_dropped_its_stream(tmp_path):
    """Stream management, one node killed (-9) and started again only after Prosody stopped
    keeping its stream (hibernation 2 s): the resumption is refused, but Prosody's <failed h/>
    still counts what it took, so nothing repeats."""
    prosody = prosody_server(tmp_path, hibernation=2)
    try:
        alice, hub, notifier = single_bot(tmp_path, prosody)
        try:
            notifier.start()
            wait_for(lambda: len(received(alice)) >= 200, 60, "notifications before the kill")
            hub.stop(signal.SIGKILL)
            time.sleep(5)
            hub.start()
            wait_for(lambda: bot_connected(hub), 30, "the bot online again")
            counted = tally_after(alice, notifier, 100, "notifications after the restart")
        finally:
            stop_bots(notifier, alice, hub)
    finally:
        prosody.stop()
    log = (tmp_path / "single" / "hub.log").read_text()
    assert "did not resume the stream" in log, log[-3000:]
    report(f"bot with stream management, a single hub killed (-9) and restarted after its stream's "
           f"hibernation ended: {len(notifier.acked)} acknowledged: {figures(counted)}")
    check_tally(counted, smacks=True)
