"""From MoinMoin 2's `item_modified` signal to one wikiwire event (SPEC §2.1, §2.2).

Pure: no I/O, no MoinMoin imports, so the rules read in one place. MoinMoin sends the signal
from `moin/items/__init__.py` (save, revert, rename, trash, destroy) and
`moin/apps/frontend/views.py` (convert, file upload), with the revision's `meta` before the
change and `new_meta` after it. Some changes are announced twice (a trash first without
`new_meta`, then with it; an upload by `_save` and again by the upload view): only the signal
that carries the stored revision is published, and the idempotency key (wiki and revision id)
makes a repeat harmless.
"""

import datetime

# MoinMoin 2's actions (moin/constants/keys.py, moin/utils/notifications.py).
SAVE, REVERT, TRASH, COPY, RENAME, CONVERT = "SAVE", "REVERT", "TRASH", "COPY", "RENAME", "CONVERT"
DESTROY_REV, DESTROY_ALL = "DESTROY_REV", "DESTROY_ALL"

# Namespaces never announced: user profiles hold e-mail addresses and password hashes.
PRIVATE_NAMESPACES = {"userprofiles"}


def is_file(contenttype):
    """An item whose content is not text is a file (an image, a PDF, an archive): what MoinMoin
    1.x called an attachment."""
    return not (contenttype or "text/").startswith("text/")


def _first(names):
    if isinstance(names, (list, tuple)):
        return names[0] if names else None
    return names or None


def _qualified(namespace, name):
    """The item's name as its URL path has it: `users/Alice` for the `users` namespace."""
    return f"{namespace}/{name}" if namespace else name


def _time(mtime):
    if not mtime:
        return None
    moment = datetime.datetime.fromtimestamp(int(mtime), tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def event_for(wiki, action, meta, new_meta, user):
    """The event for one signal, or None when this signal is not the one to publish.

    `meta`: the current revision's metadata before the change (None for a new item);
    `new_meta`: the stored revision's (None for trash's first signal and for destroys);
    `user`: the editor's name as MoinMoin shows it (None: take the address from the revision).
    """
    action = str(action)
    # MoinMoin's revision metadata are mappings whose truth value is not their content's.
    meta = None if meta is None else dict(meta)
    new_meta = None if new_meta is None else dict(new_meta)
    if action == DESTROY_REV:
        # Removing one old revision rewrites history; it is no change of the item's content.
        return None
    if action == DESTROY_ALL:
        revision_meta, key_part = meta, "destroyed"
    else:
        if new_meta is None:
            return None
        revision_meta, key_part = new_meta, None
    if revision_meta is None:
        return None
    namespace = revision_meta.get("namespace") or ""
    if namespace in PRIVATE_NAMESPACES:
        return None
    name = _first(revision_meta.get("name")) or _first(revision_meta.get("name_old"))
    if not name:
        return None
    revid = revision_meta.get("revid")
    if not revid:
        return None
    file_item = is_file(revision_meta.get("contenttype"))
    created = meta is None or bool(meta.get("trash"))

    if action in (SAVE, COPY, CONVERT):
        if file_item:
            kind = "file_attached"
        else:
            kind = "page_created" if created and action != CONVERT else "page_changed"
    elif action == REVERT:
        kind = "file_attached" if file_item else "page_reverted"
    elif action == RENAME:
        kind = "page_renamed"
    elif action in (TRASH, DESTROY_ALL):
        kind = "file_removed" if file_item else "page_deleted"
    else:
        kind = "page_changed"

    page = _qualified(namespace, name)
    event = {
        "wiki": wiki,
        "action": kind,
        "page": page,
        "user": user or revision_meta.get("address") or "anonymous",
        "revision": revid,
        "key": f"{wiki}:{revid}" + (f":{key_part}" if key_part else ""),
        "rev_number": str(revision_meta.get("rev_number", "")),
        "itemid": str(revision_meta.get("itemid", "")),
        "moin_action": action,
    }
    comment = revision_meta.get("comment")
    if comment:
        event["comment"] = str(comment)
    parent = revision_meta.get("parentid")
    if parent and key_part is None:
        event["old_revision"] = parent
    moment = _time(revision_meta.get("mtime"))
    if moment and key_part is None:
        event["time"] = moment
    if kind == "page_renamed":
        old = _first(revision_meta.get("name_old")) or (meta and _first(meta.get("name")))
        event["old_name"] = _qualified(namespace, old) if old else page
    if file_item:
        event["file"] = name.rsplit("/", 1)[-1]
        if kind == "file_attached" and revision_meta.get("size") is not None:
            event["size"] = int(revision_meta["size"])
    return {field: value for field, value in event.items() if value not in ("", None)}
