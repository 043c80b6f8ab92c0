"""Failed logins slow their address down (issue 15, item 8): after five wrong secrets an address
must wait before it may try again — even with the right secret, which is not looked at — longer
after each further failure; other addresses are not affected; both are counted in /metrics.
Issue 24, item 5: failures also count per network (IPv4 /24), so fresh addresses do not each get
free guesses, and a success clears only the failures it proves (not guesses at other tokens).
IRC PASS and SASL and HTTP tokens here; the XML-RPC secret in test_xmpp.py."""

import base64
import time

from conftest import Hub, MOIN_TOKEN, Raw

FREE_FAILURES = 5
NETWORK_FREE_FAILURES = 20
EVENT = {"wiki": "MoinMaster", "action": "page_changed", "page": "P", "user": "u"}


def test_wrong_irc_passwords_make_the_address_wait(tmp_path):
    hub = Hub(tmp_path)
    for _ in range(FREE_FAILURES):
        client = Raw(hub)
        client.send("PASS moin:wrong", "NICK guesser", "USER g 0 * :g")
        client.expect(r" 464 ")
        client.wait_closed()
    # The right password, from the same address, while it must wait: refused unseen.
    client = Raw(hub)
    client.send(f"PASS moin:{MOIN_TOKEN}", "NICK moin", "USER m 0 * :m")
    refusal = client.expect(r" 464 ")
    assert "too many failed logins" in refusal and "try again in" in refusal, refusal
    client.wait_closed()
    # SASL from that address waits too.
    client = Raw(hub)
    client.send("CAP LS 302", "NICK someone", "USER s 0 * :s", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
    client.expect(r"^AUTHENTICATE \+")
    client.send("AUTHENTICATE " + base64.b64encode(f"\0moin\0{MOIN_TOKEN}".encode()).decode())
    assert "too many failed logins" in client.expect(r" 904 ")
    client.close()
    # Another address logs in at once.
    Raw(hub, source="127.0.0.2").register("moin", sasl=("moin", MOIN_TOKEN)).close()
    assert hub.metric("wikiwire_login_failures_total") == FREE_FAILURES
    assert hub.metric("wikiwire_login_refused_total") == 2
    hub.stop()


def test_wrong_http_tokens_make_the_address_wait(tmp_path):
    hub = Hub(tmp_path)
    for _ in range(FREE_FAILURES):
        status, _ = hub.request("POST", "/api/v1/events", EVENT, token="wwt_wrong", source="127.0.0.3")
        assert status == 401
    status, body, headers = hub.request("POST", "/api/v1/events", EVENT, token=MOIN_TOKEN, source="127.0.0.3", headers=True)
    assert status == 429 and b"too many failed logins" in body, (status, body)
    wait = int(headers["retry-after"])
    assert wait >= 1
    # The default address is another one: it publishes at once.
    assert hub.publish(EVENT) == [1]
    # Waiting as told lets the right token in.
    time.sleep(wait)
    status, _ = hub.request("POST", "/api/v1/events", EVENT, token=MOIN_TOKEN, source="127.0.0.3")
    assert status in (200, 201)
    assert hub.metric("wikiwire_login_failures_total") == FREE_FAILURES
    assert hub.metric("wikiwire_login_refused_total") == 1
    hub.stop()


def test_a_valid_token_does_not_clear_guesses_at_other_tokens(tmp_path):
    """A wiki holding its own token interleaved it with guesses at everyone else's: each success
    used to clear the address, so it never had to wait."""
    hub = Hub(tmp_path)
    for guess in range(FREE_FAILURES):
        status, _ = hub.request("POST", "/api/v1/events", EVENT, token=f"wwt_guess-{guess}", source="127.0.0.4")
        assert status == 401, guess
        if guess + 1 < FREE_FAILURES:
            status, _ = hub.request("POST", "/api/v1/events", EVENT, token=MOIN_TOKEN, source="127.0.0.4")
            assert status in (200, 201), guess
    status, body = hub.request("POST", "/api/v1/events", EVENT, token=MOIN_TOKEN, source="127.0.0.4")
    assert status == 429 and b"too many failed logins" in body, (status, body)
    hub.stop()


def test_a_success_clears_the_failures_against_its_own_name_only(tmp_path):
    """IRC names the publisher: a mistyped token and then the right one clears those failures;
    a guess at another publisher's name is not cleared by logging in as oneself."""
    hub = Hub(tmp_path)
    source = "127.0.0.6"
    for _ in range(FREE_FAILURES - 1):
        client = Raw(hub, source=source)
        client.send("PASS moin:wwt_mistyped", "NICK moin", "USER m 0 * :m")
        client.expect(r" 464 ")
        client.wait_closed()
    Raw(hub, source=source).register("moin", sasl=("moin", MOIN_TOKEN)).close()
    # The four typos are gone: four guesses at doku's name now, then moin's own login clears
    # nothing of them, and the fifth guess makes the address wait.
    for guess in range(FREE_FAILURES):
        client = Raw(hub, source=source)
        client.send(f"PASS doku:wwt_guess-{guess}", "NICK doku", "USER d 0 * :d")
        client.expect(r" 464 ")
        client.wait_closed()
        if guess == 1:
            Raw(hub, source=source).register("moin", sasl=("moin", MOIN_TOKEN)).close()
    client = Raw(hub, source=source)
    client.send(f"PASS moin:{MOIN_TOKEN}", "NICK moin", "USER m 0 * :m")
    assert "too many failed logins" in client.expect(r" 464 ")
    client.wait_closed()
    hub.stop()


def test_fresh_addresses_of_one_network_share_its_count(tmp_path):
    """Each address once, a wrong token from each: the /24 waits after its own free failures,
    even for an address never seen before with the right token; the next /24 does not."""
    hub = Hub(tmp_path)
    for host in range(1, NETWORK_FREE_FAILURES + 1):
        status, _ = hub.request("POST", "/api/v1/events", EVENT, token="wwt_wrong", source=f"127.0.7.{host}")
        assert status == 401, host
    status, body, headers = hub.request("POST", "/api/v1/events", EVENT, token=MOIN_TOKEN, source="127.0.7.200", headers=True)
    assert status == 429 and b"too many failed logins" in body, (status, body)
    assert int(headers["retry-after"]) >= 1
    status, _ = hub.request("POST", "/api/v1/events", EVENT, token=MOIN_TOKEN, source="127.0.8.1")
    assert status in (200, 201)
    assert hub.metric("wikiwire_login_refused_total") == 1
    hub.stop()
