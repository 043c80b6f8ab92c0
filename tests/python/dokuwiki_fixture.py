"""DokuWiki from Debian (package `dokuwiki`), served by PHP's built-in web server on a free port
with a configuration and data directory of its own, the remote API (XML-RPC, `wiki.` methods)
switched on for one account. Nothing of the system's DokuWiki installation is changed: a router
script defines DOKU_CONF (the hook Debian's farm support leaves open) before DokuWiki starts."""

import pathlib
import shutil
import subprocess
import xmlrpc.client

from conftest import free_port, wait_for_port

DOKUWIKI = pathlib.Path("/usr/share/dokuwiki")

ROUTER = """<?php
// Every request: this wiki's configuration, then the DokuWiki script asked for.
define('DOKU_CONF', getenv('WIKIWIRE_DOKU_CONF'));
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$file = $path === '/' ? '/usr/share/dokuwiki/doku.php' : realpath('/usr/share/dokuwiki' . $path);
if ($file === false || strpos($file, '/usr/share/dokuwiki/') !== 0) {
    http_response_code(404);
    return true;
}
if (substr($file, -4) !== '.php') {
    return false;
}
chdir(dirname($file));
$_SERVER['SCRIPT_NAME'] = $_SERVER['PHP_SELF'] = $path;
$_SERVER['SCRIPT_FILENAME'] = $file;
require $file;
"""


class DokuWiki:
    def __init__(self, directory, user="wikibot", password="doku-pw-8Jq"):
        self.directory = pathlib.Path(directory)
        self.user, self.password = user, password
        conf = self.directory / "conf"
        data = self.directory / "data"
        conf.mkdir(parents=True)
        shutil.copytree("/var/lib/dokuwiki/data", data)
        hashed = subprocess.run(
            ["php", "-r", "echo password_hash($argv[1], PASSWORD_BCRYPT);", password],
            check=True, capture_output=True, text=True,
        ).stdout
        (conf / "local.php").write_text(f"""<?php
$conf['title'] = 'Test DokuWiki';
$conf['savedir'] = '{data}';
$conf['useacl'] = 1;
$conf['authtype'] = 'authplain';
$conf['superuser'] = '@admin';
$conf['remote'] = 1;
$conf['remoteuser'] = '{user}';
$conf['updatecheck'] = 0;
$conf['userewrite'] = 0;
$conf['lang'] = 'en';
""")
        (conf / "acl.auth.php").write_text("*\t@ALL\t1\n*\t@user\t8\n")
        (conf / "users.auth.php").write_text(f"{user}:{hashed}:Wiki Bot:bot@example.org:admin,user\n")
        (self.directory / "router.php").write_text(ROUTER)
        self.port = free_port()
        self.log = open(self.directory / "php.log", "a")
        self.process = subprocess.Popen(
            ["php", "-S", f"127.0.0.1:{self.port}", "-t", str(DOKUWIKI), str(self.directory / "router.php")],
            stdout=self.log, stderr=self.log, env={"WIKIWIRE_DOKU_CONF": f"{conf}/", "PATH": "/usr/bin:/bin"},
        )
        wait_for_port(self.process, self.port, 20, "php -S", self.read_log)
        self.url = f"http://127.0.0.1:{self.port}/lib/exe/xmlrpc.php"
        self.rpc = xmlrpc.client.ServerProxy(
            f"http://{user}:{password}@127.0.0.1:{self.port}/lib/exe/xmlrpc.php", allow_none=True
        )

    def read_log(self):
        self.log.flush()
        return (self.directory / "php.log").read_text()[-4000:]

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()
