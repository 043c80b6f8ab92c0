"""wikiwire for MoinMoin 2: every change of the wiki becomes one event on a wikiwire hub.

Turned on in `wikiconfig.py` with `enable(Config, hub=..., wiki=..., token_file=...)`. The
handler of MoinMoin's `item_modified` signal turns the change into an event (`mapping`), writes
it to the durable spool in the wiki's instance (`spool`) and returns: a save never waits for the
hub. A background thread (`sender`) delivers the spool in order. `plugin/macros` holds the
<<NetworkChanges>> macro, which shows other wikis' changes read from the hub.

Depends on nothing beyond what MoinMoin installs: blinker and flask come with it, HTTP is urllib.
"""

import logging
import os
import threading

from .mapping import event_for
from .sender import Sender
from .spool import Spool

__all__ = ["enable", "PLUGIN_DIR", "Settings"]

log = logging.getLogger("wikiwire_moin2")

# For `plugin_dirs` in wikiconfig.py: MoinMoin finds the NetworkChanges macro there.
PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugin")

# Defaults, each written once.
DEFAULT_RETRY_MAX = 60.0  # seconds between attempts while the hub is down, at most
DEFAULT_COMPLAINT_INTERVAL = 300.0  # seconds between two log lines about the same trouble
DEFAULT_TIMEOUT = 10.0  # seconds one request to the hub may take
DEFAULT_BATCH = 100  # events per request to the hub
SPOOL_NAME = "wikiwire-spool.sqlite"

_started = {}  # spool path -> Sender, one per process
_started_lock = threading.Lock()


class Settings:
    """What `enable` was given, checked once."""

    def __init__(self, hub, wiki, token=None, token_file=None, spool=None, retry_max=DEFAULT_RETRY_MAX,
                 complaint_interval=DEFAULT_COMPLAINT_INTERVAL, timeout=DEFAULT_TIMEOUT, batch=DEFAULT_BATCH):
        if not hub.startswith(("http://", "https://")):
            raise ValueError(f"wikiwire: hub must be an http:// or https:// address, not {hub!r}")
        if (token is None) == (token_file is None):
            raise ValueError("wikiwire: give token or token_file (one of them)")
        if not wiki:
            raise ValueError("wikiwire: wiki (this wiki's name on the hub) is required")
        self.hub = hub.rstrip("/")
        self.wiki = wiki
        self.token = token
        self.token_file = token_file
        self.spool = spool
        self.retry_max = float(retry_max)
        self.complaint_interval = float(complaint_interval)
        self.timeout = float(timeout)
        self.batch = max(1, int(batch))

    def read_token(self):
        """The token; a token file is read at every use, so a corrected file takes effect at once."""
        if self.token is not None:
            return self.token
        try:
            with open(self.token_file, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            return ""


def enable(config, hub, wiki, **options):
    """Publishes this wiki's changes to the hub at `hub` as `wiki`.

    `config`: the wikiconfig's `Config` class (the spool goes into its `instance_dir`, or beside
    its `data_dir`); options: `token` or `token_file`, `spool` (a path), `retry_max`,
    `complaint_interval`, `timeout`, `batch`. Safe to call again (MoinMoin may read the
    configuration more than once): one spool has one sender per process.
    """
    settings = Settings(hub, wiki, **options)
    if settings.spool is None:
        instance = getattr(config, "instance_dir", None) or os.path.dirname(os.path.abspath(config.data_dir))
        settings.spool = os.path.join(instance, SPOOL_NAME)
    # A private name: MoinMoin's optional config check ignores names starting with "_".
    config._wikiwire = settings
    from moin.signalling import item_modified

    item_modified.connect(_on_item_modified, weak=False)  # blinker connects a receiver once
    with _started_lock:
        if settings.spool not in _started:
            sender = Sender(settings, Spool(settings.spool))
            _started[settings.spool] = sender
            sender.start()
    return settings


def _on_item_modified(app, fqname=None, action=None, meta=None, new_meta=None, **_):
    """Spools the change and wakes the sender. Never raises: the revision is already stored, and
    an error here would only show the editor a failure for a save that happened."""
    try:
        settings = getattr(app.cfg, "_wikiwire", None)
        if settings is None:
            return  # another wiki in this process, without wikiwire
        event = event_for(settings.wiki, action, meta, new_meta, _editor())
        if event is None:
            return
        sender = _started[settings.spool]
        if sender.spool.add(event):
            sender.wake.set()
    except Exception:
        log.exception("wikiwire: could not spool a change of %s (action %s); it will not reach the hub: %r",
                      fqname, action, {"meta": _brief(meta), "new_meta": _brief(new_meta)})


def _editor():
    """The logged-in user's name, or None (then the revision's address stands for the editor)."""
    try:
        from moin import flaskg

        user = flaskg.user
        return user.name0 if user.valid else None
    except (AttributeError, RuntimeError):
        return None  # no request: a command-line change


def _brief(meta):
    if not meta:
        return meta
    return {key: meta.get(key) for key in ("name", "name_old", "revid", "parentid", "namespace", "comment")}
