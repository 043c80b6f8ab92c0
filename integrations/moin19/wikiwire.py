# -*- coding: utf-8 -*-
"""wikiwire for MoinMoin 1.9: an event-handler plug-in (Python 2).

NOT RUN BY THE TESTS: MoinMoin 1.9 needs Python 2, which this project's test machines (Debian)
no longer ship. It follows the same rules as the tested MoinMoin 2 plug-in
(integrations/moin2): the same event mapping and the same spool.

Install: copy this file to <wiki>/data/plugin/events/wikiwire.py and set in wikiconfig.py

    wikiwire_hub = "http://127.0.0.1:8080"     # the hub's address
    wikiwire_wiki = "MoinMaster"                # this wiki's name on the hub
    wikiwire_token_file = "/etc/moin/wikiwire.token"

A change is written to an SQLite spool in the data directory (data/wikiwire-spool.sqlite,
fsynced) and handle() returns at once; a background thread sends the spool to
POST /api/v1/events in order, with the key "<wiki>:<page>:<revision>", retrying with back-off
while the hub is down or answers 5xx/429, and keeping the spool (with one log line per five
minutes) when the token is refused. MoinMoin 1.9 loads event plug-ins when the first event
happens, so a restarted wiki sends what its spool holds with its first change.
"""

import json
import logging
import sqlite3
import threading
import time
import urllib2

from MoinMoin import events

log = logging.getLogger("wikiwire")

RETRY_MAX = 60.0
COMPLAINT_INTERVAL = 300.0
BATCH = 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
                                  event TEXT NOT NULL, spooled REAL NOT NULL);
CREATE TABLE IF NOT EXISTS refused (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, event TEXT NOT NULL,
                                    reason TEXT NOT NULL, refused REAL NOT NULL);
"""

_senders = {}
_senders_lock = threading.Lock()


def _connect(path):
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(SCHEMA)
    return connection


def _is_file_page(event):
    return isinstance(event, (events.FileAttachedEvent, events.FileRemovedEvent))


def _event_for(wiki, event):
    """The wikiwire event of one MoinMoin 1.9 event, or None."""
    request = event.request
    user = request.user.name if request.user.valid else (request.remote_addr or "anonymous")
    body = {"wiki": wiki, "user": user}
    if isinstance(event, events.PageRenamedEvent):
        body.update(action="page_renamed", page=event.page.page_name, old_name=event.old_page.page_name)
    elif isinstance(event, events.PageCopiedEvent):
        body.update(action="page_created", page=event.page.page_name, copied_from=event.old_page.page_name)
    elif isinstance(event, events.PageDeletedEvent):
        body.update(action="page_deleted", page=event.page.page_name)
    elif isinstance(event, events.PageRevertedEvent):
        body.update(action="page_reverted", page=event.pagename, revision=str(event.current),
                    old_revision=str(event.previous))
    elif isinstance(event, events.PageChangedEvent):
        revision = event.page.get_real_rev()
        body.update(action="page_created" if revision == 1 else "page_changed", page=event.page.page_name)
        if revision > 1:
            body["old_revision"] = str(revision - 1)
    elif isinstance(event, events.FileAttachedEvent):
        body.update(action="file_attached", page=event.pagename, file=event.filename, size=int(event.size))
    elif isinstance(event, events.FileRemovedEvent):
        body.update(action="file_removed", page=event.pagename, file=event.filename)
    elif isinstance(event, events.UserCreatedEvent):
        body.update(action="user_created", user=event.user.name)
    else:
        return None
    if "revision" not in body and hasattr(event, "page") and body["action"] != "user_created":
        body["revision"] = str(event.page.get_real_rev())
    comment = getattr(event, "comment", None)
    if comment:
        body["comment"] = comment
    # The same idea as MoinMoin 2's revision id: a page and its revision name one change.
    unique = body.get("file") or body.get("revision") or "%.6f" % time.time()
    body["key"] = u"%s:%s:%s:%s" % (wiki, body["action"], body.get("page", body["user"]), unique)
    return body


def handle(event):
    cfg = event.request.cfg
    hub = getattr(cfg, "wikiwire_hub", None)
    if not hub:
        return
    try:
        body = _event_for(cfg.wikiwire_wiki, event)
        if body is None:
            return
        path = cfg.data_dir.rstrip("/") + "/wikiwire-spool.sqlite"
        connection = _connect(path)
        try:
            connection.execute("INSERT OR IGNORE INTO spool (key, event, spooled) VALUES (?, ?, ?)",
                               (body["key"], json.dumps(body), time.time()))
        finally:
            connection.close()
        _sender(path, hub.rstrip("/"), cfg.wikiwire_token_file).set()
    except Exception:
        log.exception("wikiwire: could not spool a change; it will not reach the hub")


def _sender(path, hub, token_file):
    with _senders_lock:
        if path not in _senders:
            wake = threading.Event()
            thread = threading.Thread(target=_send_loop, args=(path, hub, token_file, wake))
            thread.daemon = True
            thread.start()
            _senders[path] = wake
        return _senders[path]


def _send_loop(path, hub, token_file, wake):
    failures, complained, batch = 0, {}, BATCH

    def complain(kind, message):
        now = time.time()
        if now - complained.get(kind, 0) >= COMPLAINT_INTERVAL:
            complained[kind] = now
            log.error(message)

    while True:
        delay = 2.0
        try:
            connection = _connect(path)
            try:
                rows = connection.execute("SELECT seq, event FROM spool ORDER BY seq LIMIT ?", (batch,)).fetchall()
                if rows:
                    token = open(token_file).read().strip()
                    request = urllib2.Request(hub + "/api/v1/events", "[" + ",".join(row[1] for row in rows) + "]",
                                              {"Content-Type": "application/json", "Authorization": "Bearer " + token})
                    try:
                        urllib2.urlopen(request, timeout=10).read()
                        connection.executemany("DELETE FROM spool WHERE seq = ?", [(row[0],) for row in rows])
                        failures, delay, batch = 0, 0, BATCH
                        complained.clear()
                    except urllib2.HTTPError as error:
                        if error.code in (401, 403):
                            complain("token", "wikiwire: the hub refused the token (HTTP %d); %d events kept in %s"
                                     % (error.code, len(rows), path))
                            delay = RETRY_MAX
                        elif error.code == 400 and len(rows) == 1:
                            connection.execute("INSERT OR REPLACE INTO refused SELECT seq, key, event, ?, ? FROM spool "
                                               "WHERE seq = ?", (error.read()[:300], time.time(), rows[0][0]))
                            connection.execute("DELETE FROM spool WHERE seq = ?", (rows[0][0],))
                            log.error("wikiwire: the hub refused an event; kept in the refused table of %s", path)
                            delay = 0
                        elif error.code == 400:
                            batch, delay = 1, 0  # find the event the hub refuses
                        else:
                            raise
            finally:
                connection.close()
        except Exception as error:
            failures += 1
            delay = min(RETRY_MAX, 0.5 * 2 ** failures)
            complain("down", "wikiwire: the hub at %s does not take events (%s); trying again" % (hub, error))
        if delay:
            wake.wait(delay)
            wake.clear()
