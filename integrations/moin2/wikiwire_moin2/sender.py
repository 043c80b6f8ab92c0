"""The background sender: delivers the spool to the hub, oldest first, and never drops an event.

* 2xx: the batch is acknowledged (the hub answered with ids) and leaves the spool.
* Connection errors, 5xx, 429: the batch stays; the sender waits with exponential back-off
  (from `RETRY_FIRST` up to `retry_max` seconds; a 429's `Retry-After` is honoured) and tries
  again. While the hub is away a warning is logged once per `complaint_interval`.
* 401/403: the token was refused. Nothing is dropped: the spool keeps growing, and an error
  naming the spool and the count is logged once per `complaint_interval`; the token file is read
  again before every attempt, so fixing it is enough.
* 400 (or 413 for a single event): the hub says this event is malformed. A batch is then sent
  one event at a time, and only the event the hub refuses moves to the spool's `refused` table,
  logged with the hub's reason; the events behind it go on.

Exactly one sender delivers a spool at a time, also when the wiki runs in several processes:
it holds an exclusive `flock` on `<spool>.lock`; the others wait for it. Order is the spool's
order, and the idempotency key makes a batch resent after a crash harmless.
"""

import fcntl
import json
import logging
import threading
import time
import urllib.error
import urllib.request

log = logging.getLogger("wikiwire_moin2")

# The first wait after a failure; it doubles up to `retry_max`.
RETRY_FIRST = 0.5
# How often a sender without the spool's lock looks again (another process holds it).
LOCK_RETRY = 5.0
# How often an idle sender looks at the spool without being woken (another process may write).
IDLE_POLL = 2.0


class Sender(threading.Thread):
    def __init__(self, settings, spool):
        super().__init__(name=f"wikiwire-sender {settings.wiki}", daemon=True)
        self.settings = settings
        self.spool = spool
        self.wake = threading.Event()
        self.failures = 0
        self.complained = {}  # kind of trouble -> monotonic time of the last log line
        self.batch = settings.batch
        self.lock_file = None

    def run(self):
        while True:
            try:
                if not self._hold_lock():
                    self.wake.wait(LOCK_RETRY)
                    self.wake.clear()
                    continue
                delay = self._deliver_once()
            except Exception:  # a bug here must never end delivery for good
                log.exception("wikiwire: the sender failed; trying again")
                delay = self.settings.retry_max
            if delay:
                self.wake.wait(delay)
                self.wake.clear()

    def _hold_lock(self):
        if self.lock_file is not None:
            return True
        handle = open(self.spool.path + ".lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self.lock_file = handle
        waiting, refused = self.spool.counts()
        log.info(
            "wikiwire: sending %s's changes to %s; %d waiting in %s%s",
            self.settings.wiki, self.settings.hub, waiting, self.spool.path,
            f", {refused} refused by the hub (see its refused table)" if refused else "",
        )
        return True

    def _deliver_once(self):
        """One attempt; returns how long to wait before the next (0: go on at once, None: idle)."""
        rows = self.spool.head(self.batch)
        if not rows:
            return IDLE_POLL
        token = self.settings.read_token()
        if not token:
            self._complain("token", logging.ERROR, "wikiwire: no token (token_file %s is empty or unreadable); "
                           "%d events kept in %s", self.settings.token_file, len(rows), self.spool.path)
            return self.settings.retry_max
        status, body, retry_after = self._post([event for _, event in rows], token)
        if status is not None and 200 <= status < 300:
            self.spool.remove([seq for seq, _ in rows])
            if self.failures or self.complained:
                log.info("wikiwire: the hub takes events again")
            self.failures = 0
            self.complained.clear()
            self.batch = self.settings.batch
            return 0
        if status in (400, 413):
            if len(rows) > 1:
                self.batch = 1  # find the one the hub refuses; the others go on
                return 0
            seq, event = rows[0]
            reason = _reason(body) or f"HTTP {status}"
            self.spool.refuse(seq, reason)
            log.error("wikiwire: the hub refused event %s (%s): %s; kept in the refused table of %s",
                      event.get("key"), event.get("page"), reason, self.spool.path)
            return 0
        if status in (401, 403):
            waiting, _ = self.spool.counts()
            self._complain("refused", logging.ERROR,
                           "wikiwire: the hub at %s refused the token (HTTP %d: %s); %d events kept in %s "
                           "until the token is fixed", self.settings.hub, status, _reason(body) or "no reason",
                           waiting, self.spool.path)
            return self.settings.retry_max
        self.failures += 1
        delay = min(self.settings.retry_max, RETRY_FIRST * 2 ** (self.failures - 1))
        if status == 429 and retry_after is not None:
            delay = min(max(retry_after, delay), self.settings.retry_max)
        waiting, _ = self.spool.counts()
        what = f"HTTP {status}" if status is not None else body
        self._complain("down", logging.WARNING, "wikiwire: the hub at %s does not take events (%s); "
                       "%d waiting in %s, trying again", self.settings.hub, what, waiting, self.spool.path)
        return delay

    def _post(self, events, token):
        """(status, body or error text, Retry-After seconds); status None when unreachable."""
        request = urllib.request.Request(
            self.settings.hub + "/api/v1/events",
            data=json.dumps(events, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                     "User-Agent": "wikiwire-moin2"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:
                return response.status, response.read(), None
        except urllib.error.HTTPError as error:
            retry_after = error.headers.get("Retry-After")
            try:
                retry_after = float(retry_after) if retry_after else None
            except ValueError:
                retry_after = None
            return error.code, error.read(), retry_after
        except (OSError, ValueError) as error:
            return None, str(getattr(error, "reason", error)), None

    def _complain(self, kind, level, message, *args):
        """Logs `message` at most once per complaint interval for each kind of trouble."""
        now = time.monotonic()
        last = self.complained.get(kind)
        if last is None or now - last >= self.settings.complaint_interval:
            self.complained[kind] = now
            log.log(level, message, *args)


def _reason(body):
    try:
        answer = json.loads(body)
        return str(answer.get("error", ""))[:300]
    except (ValueError, AttributeError, TypeError):
        return body.decode("utf-8", "replace")[:300] if isinstance(body, bytes) else str(body)[:300]
