"""Failed logins slow their address down (issue 15, item 8): after five wrong secrets an address
must wait before it may try again — even with the right secret, which is not looked at — longer
after each further failure; other addresses are not affected; both are counted in /metrics.
IRC PASS and SASL and HTTP tokens here; the XML-RPC secret in test_xmpp.py."""

import base64
import time

from conftest import Hub, MOIN_TOKEN, Raw

FREE_FAILURES = 5


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


def test_wrong_http_tokens_make_the_address_wait_and_a_success_clears_it(tmp_path):
    hub = Hub(tmp_path)
    event = {"wiki": "MoinMaster", "action": "page_changed", "page": "P", "user": "u"}
    for _ in range(FREE_FAILURES):
        status, _ = hub.request("POST", "/api/v1/events", event, token="wwt_wrong", source="127.0.0.3")
        assert status == 401
    status, body, headers = hub.request("POST", "/api/v1/events", event, token=MOIN_TOKEN, source="127.0.0.3", headers=True)
    assert status == 429 and b"too many failed logins" in body, (status, body)
    wait = int(headers["retry-after"])
    assert wait >= 1
    # The default address is another one: it publishes at once.
    assert hub.publish(event) == [1]
    # Waiting as told lets the right token in, and the address starts afresh.
    time.sleep(wait)
    status, _ = hub.request("POST", "/api/v1/events", event, token=MOIN_TOKEN, source="127.0.0.3")
    assert status in (200, 201)
    status, _ = hub.request("POST", "/api/v1/events", event, token="wwt_wrong", source="127.0.0.3")
    assert status == 401, "a success cleared the address: this failure is a free one again"
    assert hub.metric("wikiwire_login_failures_total") == FREE_FAILURES + 1
    assert hub.metric("wikiwire_login_refused_total") == 1
    hub.stop()
