"""The durable spool: events the wiki has made and the hub has not yet acknowledged.

One SQLite file in the wiki's instance. A save writes its event here and returns: the commit is
fsynced (WAL with `synchronous=FULL`), so a wiki killed right after a save still has the event
when it comes back. The sender reads the oldest rows, and deletes them only after the hub
answered with their ids. `key` is unique: a change MoinMoin announces twice is spooled once.

Events the hub refused as malformed (400) move to `refused` with the hub's reason: they are kept
for the operator, never sent again, and never block the events behind them.

Each call opens its own connection: MoinMoin serves requests on several threads (and a WSGI
server may run several processes), and SQLite's own locking orders the writers.
"""

import json
import sqlite3
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    spooled REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    event TEXT NOT NULL,
    reason TEXT NOT NULL,
    refused REAL NOT NULL
);
"""

# How long a writer waits for another writer's transaction (a busy wiki, a sender deleting).
BUSY_TIMEOUT = 30.0


class Spool:
    def __init__(self, path):
        self.path = str(path)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(SCHEMA)

    def _connect(self):
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        # FULL: every commit is fsynced, also in WAL mode (NORMAL would only sync at checkpoints).
        connection.execute("PRAGMA synchronous=FULL")
        return _Closing(connection)

    def add(self, event):
        """Spools `event`; False when an event with its key is already waiting."""
        with self._connect() as connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO spool (key, event, spooled) VALUES (?, ?, ?)",
                (event["key"], json.dumps(event, ensure_ascii=False), time.time()),
            )
            return cursor.rowcount == 1

    def head(self, limit):
        """The oldest `limit` events, as (seq, event) in spool order."""
        with self._connect() as connection:
            rows = connection.execute("SELECT seq, event FROM spool ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, json.loads(text)) for seq, text in rows]

    def remove(self, seqs):
        with self._connect() as connection:
            connection.executemany("DELETE FROM spool WHERE seq = ?", [(seq,) for seq in seqs])

    def refuse(self, seq, reason):
        """Moves one event to `refused`, with the hub's reason."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT OR REPLACE INTO refused (seq, key, event, reason, refused) "
                "SELECT seq, key, event, ?, ? FROM spool WHERE seq = ?",
                (reason, time.time(), seq),
            )
            connection.execute("DELETE FROM spool WHERE seq = ?", (seq,))
            connection.execute("COMMIT")

    def counts(self):
        """(waiting, refused)."""
        with self._connect() as connection:
            waiting = connection.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
            refused = connection.execute("SELECT COUNT(*) FROM refused").fetchone()[0]
        return waiting, refused


class _Closing:
    """`with` that closes the connection (sqlite3's own context manager only ends transactions)."""

    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        return self.connection

    def __exit__(self, *exc):
        self.connection.close()
        return False
