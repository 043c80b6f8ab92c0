"""A small XML-RPC wiki that follows MoinMoin 1.9's documented xmlrpc2 behaviour for the Jabber
bot (MoinMoin itself runs only on Python 2): `getJabberAuthToken(jid, secret)` hands out a token,
`applyAuthToken(token)` must come first in a `system.multicall` and answers a Fault
`INVALID` for a token it does not know, `getUserLanguageByJID` returns a two-letter code, and
the page methods of Wiki XML-RPC v2. It records every call so tests can check the token flow."""

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

    def forget_tokens(self):
        self.tokens.clear()

    def close(self):
        self.server.shutdown()
