"""Network recent changes: other wikis' changes read from the hub's history API.

`recent_changes(hub, wikis, page, limit, days)` follows `GET /api/v1/events` with its `since`
cursor: the first read of a filter starts `days` back, later reads only ask for what came after
the last event seen, so a busy page costs the hub one small query per view. What was read is
kept per filter in this process (at most `KEEP` events each), so a hub that is briefly away
still leaves the known changes on the page, with a notice.
"""

import calendar
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

# How long the wiki waits for the hub while rendering a page.
HUB_TIMEOUT = 3.0
# Events per history request, and requests per view (the cursor catches up over several views).
PAGE_SIZE = 500
MAX_PAGES = 4
# Events kept per filter.
KEEP = 200
# At most this many filters are remembered (a page author could otherwise make many).
MAX_FILTERS = 64

_lock = threading.Lock()
_known = {}  # (hub, wikis, page) -> {"since": id, "events": {id: event}}


class HubUnreachable(Exception):
    """The hub did not answer; the text says why, for the page."""


def recent_changes(hub, wikis, page, limit, days):
    """(events newest first, at most `limit`; the reason the hub could not be read, or None)."""
    key = (hub, tuple(wikis), page)
    with _lock:
        state = _known.get(key)
        if state is None:
            if len(_known) >= MAX_FILTERS:
                _known.pop(next(iter(_known)))
            state = _known[key] = {"since": 0, "events": {}}
        since = state["since"]
    problem = None
    oldest = time.time() - days * 86400
    try:
        for _ in range(MAX_PAGES):
            query = {"since": since, "limit": PAGE_SIZE, "links": "1", "from": int(oldest)}
            if wikis:
                query["wiki"] = ",".join(wikis)
            if page:
                query["page"] = page
            answer = _get(f"{hub}/api/v1/events?{urllib.parse.urlencode(query)}")
            events = answer.get("events", [])
            with _lock:
                for event in events:
                    state["events"][event["id"]] = event
                    state["since"] = max(state["since"], event["id"])
                while len(state["events"]) > KEEP:
                    del state["events"][min(state["events"])]
            if not answer.get("next") or not events:
                break
            since = answer["next"]
    except HubUnreachable as error:
        problem = str(error)
    with _lock:
        events = [event for event in state["events"].values() if _epoch(event.get("time")) >= oldest]
    events.sort(key=lambda event: event["id"], reverse=True)
    return events[:limit], problem


def _get(url):
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "wikiwire-moin2"})
    try:
        with urllib.request.urlopen(request, timeout=HUB_TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            reason = json.loads(error.read()).get("error", "")
        except (ValueError, AttributeError):
            reason = ""
        raise HubUnreachable(f"HTTP {error.code}" + (f": {reason}" if reason else "")) from None
    except (OSError, ValueError) as error:
        raise HubUnreachable(str(getattr(error, "reason", error))) from None


def _epoch(text):
    """Seconds since 1970 of an RFC 3339 UTC time as the hub writes it (`...Z`)."""
    try:
        return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))
    except (TypeError, ValueError):
        return 0.0
