"""Benchmark (figures, no assertions): what the wikiwire plug-in adds to a MoinMoin 2 save.

    cargo build -p wikiwire && python3 tests/python/bench_moin2.py [EDITS]

Runs two real MoinMoin 2 wikis (the virtualenv scripts/test.sh makes): one without the plug-in,
one with it publishing to a running hub, and times EDITS saves of the edit form on each (the
POST that stores the revision, as a person's browser sends it; the redirect is not followed).
Prints the median and p99 of both, and the time until the last event is on the hub.
"""

import pathlib
import statistics
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from conftest import Hub, free_port, wait_for  # noqa: E402
from moin2_support import USER, MoinWiki  # noqa: E402
from test_moin2 import TOKEN, WIKI, publishers  # noqa: E402


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def time_saves(wiki, count, prefix):
    person = wiki.browser()
    person.edit(f"{prefix} warm-up", "warm")
    person.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(person.jar), _NoRedirect())
    timings = []
    for number in range(count):
        name = f"{prefix} {number % 20}"
        path = f"/+modify/{person.quote(name)}?contenttype=text%2Fx.moin.wiki%3Bcharset%3Dutf-8&itemtype=default&template="
        form = person.form(path)
        began = time.perf_counter()
        status, _, _ = person.submit(path, form, {"content_form_data_text": f"text {number}", "comment": "bench"})
        timings.append(time.perf_counter() - began)
        assert status == 302, status
    return timings


def report(label, timings):
    timings = sorted(timings)
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    print(f"{label:28} median {statistics.median(timings) * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms")


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as directory:
        directory = pathlib.Path(directory)
        port = free_port()
        (directory / "hub").mkdir()
        hub = Hub(directory / "hub", publishers=publishers(port))
        plain = MoinWiki(directory / "plain", "http://127.0.0.1:9", "Plain", TOKEN)
        # The plain wiki: the plug-in's lines removed again.
        config = directory / "plain" / "wikiconfig.py"
        config.write_text(config.read_text().split("\nimport wikiwire_moin2")[0] + "\n")
        plain.stop()
        plain.start()
        wired = MoinWiki(directory / "wired", hub.http, WIKI, TOKEN, port=port)
        try:
            without = time_saves(plain, count, "Plain")
            start = hub.last_id()
            began = time.perf_counter()
            with_plugin = time_saves(wired, count, "Wired")
            wait_for(lambda: hub.last_id() >= start + count + 1, 120, "events")
            drained = time.perf_counter() - began
            print(f"{count} saves each, {USER} logged in, MoinMoin 2.0.0b5 `moin run`")
            report("without the plug-in", without)
            report("with the plug-in", with_plugin)
            print(f"all {count + 1} events on the hub {drained:.1f} s after the first save")
        finally:
            plain.stop()
            wired.stop()
            hub.stop()


if __name__ == "__main__":
    main()
