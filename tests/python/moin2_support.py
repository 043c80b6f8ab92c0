"""A real MoinMoin 2 (PyPI `moin` 2.0.0b5, in the virtualenv scripts/test.sh makes) with the
wikiwire plug-in installed as docs/OPERATING.md says, and a person's browser for it: log in, then
fill in and send the wiki's own forms (edit, rename, delete, upload). Waits have deadlines;
nothing sleeps for readiness."""

import html.parser
import http.cookiejar
import os
import pathlib
import signal
import sqlite3
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid

from conftest import ROOT, free_port, wait_for_port

VENV = pathlib.Path(os.environ.get("WIKIWIRE_MOIN2_VENV", ROOT / "target" / "moin2-venv"))
MOIN = VENV / "bin" / "moin"
USER, PASSWORD = "Alice", "correct-horse-battery-9"


def require_moin():
    assert MOIN.exists(), f"{MOIN} is missing: scripts/test.sh installs MoinMoin 2 there"


class MoinWiki:
    """An instance in `directory`, served by `moin run` on loopback, publishing to `hub` as `name`
    with the token in its token file."""

    def __init__(self, directory, hub, name, token, port=None, retry_max=1.0, extra=""):
        require_moin()
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.name = name
        self.token_file = self.directory / "wikiwire.token"
        self.token_file.write_text(token + "\n")
        self.spool = self.directory / "wiki" / "wikiwire-spool.sqlite"
        self._moin("create-instance")
        self._moin("index-create")
        config = self.directory / "wikiconfig.py"
        text = config.read_text()
        # People who log in may edit; locking off so one person can save twice in a row.
        text = text.replace("YOUR-SUPER-EDITOR:read,write,create,destroy,admin", "Known:read,write,create,destroy,admin")
        text = text.replace('edit_locking_policy = "lock"', "edit_locking_policy = None")
        text = text.replace('SECRET_KEY = "WARNING: set this to a unique string to create secure cookies"',
                            f'SECRET_KEY = "{uuid.uuid4().hex}"')
        text = text.replace('sitename = "My MoinMoin"', f'sitename = "{name}"')
        # The lines docs/OPERATING.md ("MoinMoin 2") tells an operator to add.
        text += f"""
import wikiwire_moin2
Config.plugin_dirs = [wikiwire_moin2.PLUGIN_DIR]
wikiwire_moin2.enable(Config, hub="{hub}", wiki="{name}", token_file="{self.token_file}", retry_max={retry_max}{extra})
"""
        config.write_text(text)
        self._moin("account-create", "-n", USER, "-e", "alice@example.org", "-p", PASSWORD)
        self.process = None
        self.start()

    def _moin(self, *args):
        subprocess.run([str(MOIN), *args], cwd=self.directory, check=True, capture_output=True, timeout=120)

    def start(self):
        self.log = open(self.directory / "moin.log", "a")
        self.process = subprocess.Popen(
            [str(MOIN), "run", "-h", "127.0.0.1", "-p", str(self.port), "--no-reload", "--no-debug",
             "--with-threads"],
            cwd=self.directory, stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.process, self.port, 60, "MoinMoin", self.read_log)

    def read_log(self):
        self.log.flush()
        return (self.directory / "moin.log").read_text()

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(20)
        self.log.close()

    def spooled(self):
        """The keys waiting in the spool, oldest first (read as an operator would, with SQLite)."""
        with sqlite3.connect(self.spool) as connection:
            return [key for (key,) in connection.execute("SELECT key FROM spool ORDER BY seq")]

    def browser(self):
        person = Browser(self.url)
        person.log_in(USER, PASSWORD)
        return person

    def get(self, path):
        """(status, body) of an anonymous GET."""
        try:
            with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


class _Forms(html.parser.HTMLParser):
    """Every <form> of a page with its fields as a browser would send them."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self.textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action"), "fields": {}, "files": []})
        elif not self.forms:
            return
        elif tag == "input" and attrs.get("name"):
            kind = attrs.get("type", "text")
            if kind == "file":
                self.forms[-1]["files"].append(attrs["name"])
            elif kind == "checkbox":
                if "checked" in attrs:
                    self.forms[-1]["fields"][attrs["name"]] = attrs.get("value", "on")
            elif kind not in ("submit", "button", "image", "reset"):
                self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""
        elif tag == "textarea" and attrs.get("name"):
            self.textarea = attrs["name"]
            self.forms[-1]["fields"][self.textarea] = ""

    def handle_data(self, data):
        if self.textarea:
            self.forms[-1]["fields"][self.textarea] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self.textarea = None


class Browser:
    """One person's session: cookies kept, forms read from the page and sent back filled in."""

    def __init__(self, base):
        self.base = base.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def open(self, path, data=None, content_type=None):
        request = urllib.request.Request(self.base + path, data=data)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.geturl(), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:  # a browser shows these pages too (a deleted item: 404)
            return error.code, error.geturl(), error.read().decode("utf-8", "replace")

    def form(self, path, method_post=True):
        """The page's form that is sent by POST (the first one with fields of its own)."""
        _, _, page = self.open(path)
        parser = _Forms()
        parser.feed(page)
        candidates = [form for form in parser.forms if form["action"] != "/+search"]
        assert candidates, f"no form on {path}:\n{page[:2000]}"
        return candidates[0]

    def submit(self, path, form, changes, files=None):
        fields = {**form["fields"], **changes}
        files = files or {}
        if form["files"] or files:
            boundary = uuid.uuid4().hex
            parts = []
            for name, value in fields.items():
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
            for name in form["files"]:
                filename, content_type, content = files.get(name, ("", "application/octet-stream", b""))
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                             f"Content-Type: {content_type}\r\n\r\n".encode() + content + b"\r\n")
            body = b"".join(parts) + f"--{boundary}--\r\n".encode()
            content_type = f"multipart/form-data; boundary={boundary}"
        else:
            body = urllib.parse.urlencode(fields).encode()
            content_type = "application/x-www-form-urlencoded"
        target = form["action"] or path
        return self.open(target, body, content_type)

    def log_in(self, user, password):
        form = self.form("/+login")
        _, url, page = self.submit("/+login", form, {"login_username": user, "login_password": password, "login_nexturl": "/+index/"})
        assert "+login" not in url, page[:2000]

    @staticmethod
    def quote(name):
        return urllib.parse.quote(name, safe="/")

    def edit(self, name, text, comment="", contenttype="text/x.moin.wiki;charset=utf-8"):
        """Opens the editor of `name` (a new item gets MoinMoin's create parameters) and saves."""
        query = urllib.parse.urlencode({"contenttype": contenttype, "itemtype": "default", "template": ""})
        path = f"/+modify/{self.quote(name)}?{query}"
        form = self.form(path)
        status, url, page = self.submit(path, form, {"content_form_data_text": text, "comment": comment})
        assert "+modify" not in url, f"the save of {name} did not go through:\n{page[:3000]}"
        return status

    def upload(self, name, content, content_type, comment=""):
        query = urllib.parse.urlencode({"contenttype": content_type, "itemtype": "default", "template": ""})
        path = f"/+modify/{self.quote(name)}?{query}"
        form = self.form(path)
        filename = name.rsplit("/", 1)[-1]
        status, url, page = self.submit(path, form, {"comment": comment},
                                        files={"content_form_data_file": (filename, content_type, content)})
        assert "+modify" not in url, f"the upload of {name} did not go through:\n{page[:3000]}"
        return status

    def rename(self, name, new_name, comment=""):
        path = f"/+rename/{self.quote(name)}"
        _, url, page = self.submit(path, self.form(path), {"target": new_name, "comment": comment})
        assert "+rename" not in url, page[:3000]

    def delete(self, name, comment=""):
        path = f"/+delete/{self.quote(name)}"
        _, url, page = self.submit(path, self.form(path), {"delete_item_comment": comment})
        assert "+delete" not in url, page[:3000]
