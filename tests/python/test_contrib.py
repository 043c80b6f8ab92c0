"""The ready-made publishers in `contrib/` (issue 6, operator guide): DokuWiki's changelog read
by a cron script, against DokuWiki from Debian; and a git post-receive hook, against a real
push. Each announces every change once, even when run twice."""

import os
import subprocess
import time

from conftest import BINARY, DOKU_TOKEN, MOIN_TOKEN, ROOT


def environment(hub, token, **more):
    return {**os.environ, "WIKIWIRE": str(BINARY), "WIKIWIRE_URL": hub.http, "WIKIWIRE_TOKEN": token, **more}


def test_dokuwiki_changelog_cron_script(hub, tmp_path):
    from dokuwiki_fixture import DokuWiki

    wiki = DokuWiki(tmp_path / "doku")
    try:
        wiki.rpc.wiki.putPage("Start Page", "Hello", {"sum": "first words"})
        time.sleep(1.1)  # DokuWiki's revisions are seconds
        wiki.rpc.wiki.putPage("Start Page", "Hello, world", {"sum": "more words", "minor": True})
        changes = tmp_path / "doku" / "data" / "meta" / "_dokuwiki.changes"
        position = tmp_path / "doku.pos"
        script = [str(ROOT / "contrib" / "dokuwiki-changes.sh"), str(changes), str(position), "DokuWiki"]
        subprocess.run(script, env=environment(hub, DOKU_TOKEN), check=True, timeout=60)
        time.sleep(1.1)
        wiki.rpc.wiki.putPage("Start Page", "", {"sum": "gone"})  # an empty text deletes the page
        subprocess.run(script, env=environment(hub, DOKU_TOKEN), check=True, timeout=60)
        position.write_text("0")  # as if the position were lost: everything again, stored once
        subprocess.run(script, env=environment(hub, DOKU_TOKEN), check=True, timeout=60)
    finally:
        wiki.close()
    events = hub.get("/api/v1/events")["events"]
    assert [(e["wiki"], e["action"], e["page"], e["user"], e.get("comment"), e["minor"]) for e in events] == [
        ("DokuWiki", "page_created", "start_page", "wikibot", "first words", False),
        ("DokuWiki", "page_changed", "start_page", "wikibot", "more words", True),
        ("DokuWiki", "page_deleted", "start_page", "wikibot", "gone", False),
    ]


def test_git_post_receive_hook(hub, tmp_path):
    def git(*arguments, cwd):
        return subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True, text=True,
                              env={**os.environ, "GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "a@example.org",
                                   "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "a@example.org"}).stdout

    origin = tmp_path / "docs.git"
    git("init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp_path)
    hook = origin / "hooks" / "post-receive"
    hook.write_text(f"""#!/bin/sh
export WIKIWIRE={BINARY} WIKIWIRE_URL={hub.http} WIKIWIRE_TOKEN={MOIN_TOKEN} WIKIWIRE_WIKI=HelpWiki
exec {ROOT / 'contrib' / 'git-post-receive'}
""")
    hook.chmod(0o755)
    work = tmp_path / "work"
    git("clone", "-q", str(origin), str(work), cwd=tmp_path)
    (work / "Front Page.md").write_text("hello\n")
    (work / "Old Name.md").write_text("a page to rename, long enough to be found again\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first pages", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    (work / "Front Page.md").write_text("hello, world\n")
    git("mv", "Old Name.md", "New Name.md", cwd=work)
    git("commit", "-q", "-am", "edit and rename", cwd=work)
    git("rm", "-q", "Front Page.md", cwd=work)
    git("commit", "-q", "-m", "remove", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    events = hub.get("/api/v1/events")["events"]
    assert [(e["action"], e["page"], e.get("old_name"), e["comment"], e["user"]) for e in events] == [
        ("page_created", "Front Page.md", None, "first pages", "Alice"),
        ("page_created", "Old Name.md", None, "first pages", "Alice"),
        ("page_changed", "Front Page.md", None, "edit and rename", "Alice"),
        ("page_renamed", "New Name.md", "Old Name.md", "edit and rename", "Alice"),
        ("page_deleted", "Front Page.md", None, "remove", "Alice"),
    ]
    assert all(e["wiki"] == "HelpWiki" and len(e["revision"]) == 40 for e in events)
