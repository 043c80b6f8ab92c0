"""A small XML-RPC wiki that follows MoinMoin 1.9's documented xmlrpc2 behaviour for the Jabber
bot (MoinMoin itself runs only on Python 2): `getJabberAuthToken(jid, secret)` hands out a token,
`applyAuthToken(token)` must come first in a `system.multicall` and answers a Fault
`INVALID` for a token it does not know, `getUserLanguageByJID` returns a two-letter code, and
the page methods of Wiki XML-RPC v2 (getPage, getPageHTML, getAllPages, getPageInfo with an
XML-RPC DateTime, searchPagesEx answering `[name, context]` pairs, revertPage to an older
revision, which needs an authenticated user). It records every call so tests can check the
token flow and the arguments."""

import datetime
import html
import re
import threading
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer


class Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ()  # MoinMoin answers at <page>?action=xmlrpc2


class MoinWiki:
    def __init__(self, secret, pages, languages=None):
        self.secret = secret
        self.pages = dict(pages)
        self.languages = languages or {}
        self.tokens = {}
        self.calls = []
        self.current = None
        self.server = SimpleXMLRPCServer(("127.0.0.1", 0), Handler, allow_none=True, logRequests=False)
        self.server.register_multicall_functions()
        self.server.register_function(self.getJabberAuthToken, "getJabberAuthToken")
        self.server.register_function(self.applyAuthToken, "applyAuthToken")
        self.server.register_function(self.getUserLanguageByJID, "getUserLanguageByJID")
        self.server.register_function(self.getPage, "getPage")
        self.server.register_function(self.getAllPages, "getAllPages")
        self.server.register_function(self.getPageHTML, "getPageHTML")
        self.server.register_function(self.getPageInfo, "getPageInfo")
        self.server.register_function(self.searchPagesEx, "searchPagesEx")
        self.server.register_function(self.revertPage, "revertPage")
        # Every page's revisions, oldest first; the current text is the last.
        self.history = {name: [text] for name, text in self.pages.items()}
        self.arguments = []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def getJabberAuthToken(self, jid, secret):
        self.calls.append("getJabberAuthToken")
        if secret != self.secret:
            return ""
        token = f"token-{len(self.tokens) + 1}"
        self.tokens[token] = jid
        return token

    def applyAuthToken(self, token):
        self.calls.append("applyAuthToken")
        if token not in self.tokens:
            raise xmlrpc.client.Fault("INVALID", "Invalid token.")
        self.current = self.tokens[token]
        return "SUCCESS"

    def getUserLanguageByJID(self, jid):
        self.calls.append("getUserLanguageByJID")
        return self.languages.get(jid, "en")

    def getPage(self, name):
        self.calls.append("getPage")
        if self.current is None:
            raise xmlrpc.client.Fault(1, "not authenticated")
        if name not in self.pages:
            raise xmlrpc.client.Fault("NOT_EXIST", "Page does not exist.")
        return self.pages[name]

    def getAllPages(self):
        self.calls.append("getAllPages")
        return sorted(self.pages)

    def getPageHTML(self, name):
        self.calls.append("getPageHTML")
        text = self.getPage(name)
        return "".join(f"<p>{html.escape(line)}</p>" for line in text.splitlines())

    def getPageInfo(self, name):
        self.calls.append("getPageInfo")
        if name not in self.pages:
            raise xmlrpc.client.Fault("NOT_EXIST", "Page does not exist.")
        return {
            "name": name,
            "lastModified": xmlrpc.client.DateTime(datetime.datetime(2026, 11, 22, 21, 0, 5)),
            "author": "Alice",
            "version": len(self.history[name]),
        }

    def searchPagesEx(self, query, search_type, length, case, mtime, regexp):
        self.calls.append("searchPagesEx")
        self.arguments.append(("searchPagesEx", query, search_type, length, case, mtime, regexp))
        pattern = query if regexp else re.escape(query)
        flags = 0 if case else re.IGNORECASE
        hits = []
        for name, text in sorted(self.pages.items()):
            where = name if search_type == "title" else text
            found = re.search(pattern, where, flags)
            if found:
                start = max(found.start() - length, 0)
                hits.append([name, text[start:found.end() + length] if search_type != "title" else ""])
        return hits

    def revertPage(self, name, revision):
        self.calls.append("revertPage")
        self.arguments.append(("revertPage", name, revision))
        if self.current is None:
            raise xmlrpc.client.Fault(1, "You are not allowed to edit this page")
        revisions = self.history.get(name)
        if not revisions or not 1 <= revision <= len(revisions):
            raise xmlrpc.client.Fault("NOT_EXIST", "No such revision.")
        revisions.append(revisions[revision - 1])
        self.pages[name] = revisions[-1]
        return True

    def edit(self, name, text):
        """A new revision, as a save on the wiki would make."""
        self.history.setdefault(name, []).append(text)
        self.pages[name] = text

    def forget_tokens(self):
        self.tokens.clear()

    def close(self):
        self.server.shutdown()
