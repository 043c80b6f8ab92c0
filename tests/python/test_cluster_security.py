"""Who may write the cluster's log (issue 24, item 3), and a node that stops when told.

NATS runs as docs/deploy/nats.conf ships it (nats_cluster.py): authorization on, the hubs with
an NKEY and the permissions of that file. Checked from outside with raw NATS protocol: a client
without credentials can neither publish into the stream nor delete it; a hub's own key cannot
delete or purge it; a message a key holder publishes on another wiki's subject, or one that is no
event at all, is a gap on every node, never served; a second process with a node's name refuses
to start; TLS with `ca_file`; SIGTERM is prompt even with the stream deleted and NATS gone."""

import json
import subprocess
import time

import pytest

from conftest import BINARY, wait_for
import nats_cluster
from nats_cluster import NatsCluster, PermissionDenied, nats  # noqa: F401 (a fixture)
from test_cluster import SseFollower, health, history, post, start_hub


def event(page, wiki="MoinMaster"):
    return {"wiki": wiki, "action": "SAVE", "page": page, "user": "u"}


def stream_messages(nats):
    return nats.js_api("$JS.API.STREAM.INFO.WIKIWIRE")["state"]["messages"]


def test_only_hub_keys_write_the_log_and_no_hub_key_deletes_it(tmp_path, nats):
    hubs = [start_hub(tmp_path, nats, node) for node in ("a", "b")]
    status, body, _, _ = post(hubs[0].http, [event("First")])
    assert status == 201, body
    # A payload exactly as a node publishes it (the event without its id).
    first = history(hubs[0].http)[0]
    forged = json.dumps({key: value for key, value in first.items() if key != "id"} | {"page": "Forged"}).encode()

    # No credentials: not even connected, so nothing is published and nothing deleted.
    for subject, payload in (("wikiwire.events.moinmaster.n", forged), ("$JS.API.STREAM.DELETE.WIKIWIRE", b"")):
        with pytest.raises(PermissionDenied, match="Authorization Violation"):
            nats.js_api(subject, payload, user=None)
    # A hub's key: the JetStream API for its streams, but no deleting or purging them.
    for subject in ("$JS.API.STREAM.DELETE.WIKIWIRE", "$JS.API.STREAM.PURGE.WIKIWIRE",
                    "$JS.API.STREAM.MSG.DELETE.WIKIWIRE", "$JS.API.STREAM.DELETE.KV_WIKIWIRE_leases"):
        with pytest.raises(PermissionDenied, match="Permissions Violation"):
            nats.js_api(subject, json.dumps({"seq": 1}).encode(), user="hub")
    assert stream_messages(nats) == 1, "nothing was published or removed"

    # Whoever holds a hub key can publish, but only as the node would: an event of MoinMaster on
    # DokuWiki's subject, and a message that is no event, are gaps on every node, for followers
    # already live as for those that read them later.
    live = [SseFollower([hub.http], since=0) for hub in hubs]
    for follower in live:
        follower.wait_for(1, 20)
    wrong_subject = nats.js_api("wikiwire.events.dokuwiki.n", forged, user="hub")["seq"]
    not_an_event = nats.js_api("wikiwire.events.moinmaster.n", b"\x00 not an event", user="hub")["seq"]
    status, body, _, _ = post(hubs[1].http, [event("Sentinel")])
    assert status == 201 and body["ids"] == [not_an_event + 1], body
    for hub, earlier in zip(hubs, live):
        later = SseFollower([hub.http], since=0)
        for follower in (earlier, later):
            follower.wait_for(not_an_event + 1, 20)
            follower.stop()
            assert follower.ids == [1, not_an_event + 1], follower.ids
            gaps = [(gap["from"], gap["to"]) for gap in follower.gaps]
            assert gaps == [(wrong_subject, wrong_subject), (not_an_event, not_an_event)], follower.gaps
            assert follower.reconnects == 0
        assert [item["page"] for item in history(hub.http)] == ["First", "Sentinel"]
        assert hub.metric("wikiwire_cluster_unreadable_total") == 2
        assert "not an event" in (hub.directory / "hub.log").read_text()
        assert health(hub)[0] == 200, "the node serves on"
    for hub in hubs:
        hub.stop()


def test_a_second_process_with_a_nodes_name_refuses_to_start(tmp_path, nats):
    first = start_hub(tmp_path, nats, "a")
    twin_directory = tmp_path / "twin"
    twin_directory.mkdir()
    config = twin_directory / "wikiwire.toml"
    config.write_text(first.config.read_text().replace(str(tmp_path / "a"), str(twin_directory)))
    started = time.monotonic()
    result = subprocess.run([str(BINARY), "serve", "--config", str(config)], capture_output=True, timeout=60)
    took = time.monotonic() - started
    assert result.returncode != 0
    assert b'another wikiwire process is running as node "a"' in result.stderr, result.stderr[-2000:]
    nats_cluster.report(f"a second process as node a refused after {took:.1f} s", "cluster-security.txt")
    assert health(first)[0] == 200, "the first runs on"
    first.stop()


def test_hubs_reach_nats_over_tls_with_a_private_ca(tmp_path):
    cluster = NatsCluster(tmp_path / "nats-tls", tls=True)
    try:
        assert all(url.startswith("tls://") for url in cluster.urls)
        hubs = [start_hub(tmp_path, cluster, node) for node in ("a", "b")]
        assert 'ca_file = "' in hubs[0].config.read_text()
        status, body, _, _ = post(hubs[0].http, [event("Over TLS")])
        assert status == 201, body
        wait_for(lambda: [item["page"] for item in history(hubs[1].http)] == ["Over TLS"], 20, "the event on b")
        with pytest.raises(PermissionDenied, match="Permissions Violation"):
            cluster.js_api("$JS.API.STREAM.DELETE.WIKIWIRE", user="hub")
        for hub in hubs:
            hub.stop()
    finally:
        cluster.close()


def test_sigterm_is_prompt_with_the_stream_deleted_and_nats_gone(tmp_path, nats):
    hub = start_hub(tmp_path, nats, "a")
    assert post(hub.http, [event("One")])[0] == 201
    assert nats.js_api("$JS.API.STREAM.DELETE.WIKIWIRE").get("success")
    for index in range(nats.size):
        nats.kill9(index)
    wait_for(lambda: health(hub)[0] == 503, 15, "the node unready")
    started = time.monotonic()
    hub.stop(timeout=30)  # before: still running after 60 s (closing waited for NATS to answer)
    took = time.monotonic() - started
    nats_cluster.report(f"SIGTERM with the stream deleted and NATS gone: stopped in {took:.1f} s", "cluster-security.txt")
    assert took < 12, took
