"""<<NetworkChanges>>: the recent changes of other wikis on the wikiwire hub, in this wiki's theme.

    <<NetworkChanges>>
    <<NetworkChanges(wiki="MoinMaster HelpWiki", page="Help*", limit=20, days=7)>>

`wiki`: wiki names or globs, separated by spaces (all wikis when absent); `page`: a page glob;
`limit`: rows shown (default 20, at most 200); `days`: how far back (default 7). The hub is the
one given to `wikiwire_moin2.enable` in wikiconfig.py. When the hub cannot be reached the macro
says so in the page (with the changes it already knew), never with a traceback.
"""

from flask import current_app
from moin.converters._args_wiki import parse as parse_arguments
from moin.i18n import _
from moin.macros._base import MacroBlockBase, fail_message
from moin.utils.tree import moin_page, xlink

from wikiwire_moin2.recent import KEEP, recent_changes

DEFAULT_LIMIT = 20
DEFAULT_DAYS = 7


class Macro(MacroBlockBase):
    def macro(self, content, arguments, page_url, alternative):
        settings = getattr(current_app.cfg, "_wikiwire", None)
        if settings is None:
            return fail_message(_("NetworkChanges: wikiwire is not enabled in wikiconfig.py."), alternative)
        options = parse_arguments(arguments[0]) if arguments else None
        keyword = dict(options.keyword) if options else {}
        unknown = sorted(set(keyword) - {"wiki", "page", "limit", "days"})
        if unknown or (options and options.positional):
            return fail_message(
                _("NetworkChanges: unknown argument {name}; use wiki, page, limit, days.").format(
                    name=", ".join(unknown or options.positional)
                ),
                alternative,
            )
        try:
            limit = min(max(int(keyword.get("limit", DEFAULT_LIMIT)), 1), KEEP)
            days = max(float(keyword.get("days", DEFAULT_DAYS)), 0.0)
        except ValueError:
            return fail_message(_("NetworkChanges: limit and days must be numbers."), alternative)
        wikis = keyword.get("wiki", "").replace(",", " ").split()
        events, problem = recent_changes(settings.hub, wikis, keyword.get("page", ""), limit, days)

        parts = []
        if problem:
            notice = _("The wikiwire hub at {hub} cannot be reached ({reason}).").format(
                hub=settings.hub, reason=problem
            )
            if events:
                notice += " " + _("These are the changes known before.")
            parts.append(moin_page.p(attrib={moin_page.class_: "moin-wikiwire-unreachable"}, children=[notice]))
        if not events:
            if not problem:
                parts.append(moin_page.p(children=[_("No changes in the network in the last {days} days.").format(days=keyword.get("days", DEFAULT_DAYS))]))
            return moin_page.div(attrib={moin_page.class_: "moin-wikiwire-changes"}, children=parts)
        parts.append(_table(events))
        return moin_page.div(attrib={moin_page.class_: "moin-wikiwire-changes"}, children=parts)


def _table(events):
    header = moin_page.table_row(
        children=[moin_page.table_cell(children=[text]) for text in
                  (_("Time"), _("Wiki"), _("Page"), _("Change"), _("User"), _("Comment"))]
    )
    rows = []
    for event in events:
        links = {link.get("description"): link.get("url") for link in event.get("links", [])}
        page = event.get("page") or event.get("user") or ""
        page_cell = [_link(links.get("page"), page)]
        for kind in ("diff", "attachment", "history"):
            if links.get(kind):
                page_cell += [" (", _link(links[kind], _(kind)), ")"]
        rows.append(moin_page.table_row(children=[
            moin_page.table_cell(children=[event.get("time", "")[:16].replace("T", " ")]),
            moin_page.table_cell(children=[event.get("wiki", "")]),
            moin_page.table_cell(children=page_cell),
            moin_page.table_cell(children=[event.get("action", "")]),
            moin_page.table_cell(children=[event.get("user", "")]),
            moin_page.table_cell(children=[event.get("comment", "")]),
        ]))
    return moin_page.table(children=[
        moin_page.table_header(children=[header]),
        moin_page.table_body(children=rows),
    ])


def _link(url, text):
    """A link to a foreign page; only http(s) URLs become links (the hub already refuses others)."""
    if url and url.startswith(("http://", "https://")):
        return moin_page.a(attrib={xlink.href: url}, children=[text])
    return text
