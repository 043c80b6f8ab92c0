"""The live recent-changes page at `/` (SPEC §4) in headless Chromium from Debian, driven by
Selenium through Debian's chromedriver: events appear as they are published, with links from
the description blocks; filters, the pause button and the per-minute chart work; the page
resumes after the hub restarts, each event once. A screenshot is kept in
`target/test-artifacts/`."""

import shutil
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import DOKU_TOKEN, ROOT, Hub, free_port, wait_for

ARTIFACTS = ROOT / "target" / "test-artifacts"


@pytest.fixture
def browser(tmp_path):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    options = Options()
    options.binary_location = chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,900"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    yield driver
    driver.quit()


def rows(browser):
    """(id, wiki, page text) of each row, newest first."""
    return browser.execute_script("""
        return [...document.querySelectorAll('#events tr')].map(row =>
            [Number(row.dataset.id), row.dataset.wiki, row.querySelector('td.page').textContent]);
    """)


def pages(browser):
    return [page for _, _, page in rows(browser)]


def test_the_live_page_shows_events_as_they_come_with_filters_pause_and_a_chart(tmp_path, browser):
    hub = Hub(tmp_path, ports=(free_port(), free_port()))
    try:
        hub.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "Earlier Page", "user": "Ann"})
        browser.get(hub.http + "/")
        wait_for(lambda: "Earlier Page" in pages(browser), what="history on the page")
        wait_for(lambda: browser.find_element(By.ID, "status").text == "live", what="the stream open")

        # Published now, shown at once, with links from MoinMaster's description block.
        hub.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "Front Page", "user": "Alice",
                     "comment": "fixed a <b>typo</b>", "revision": "42", "old_revision": "41"})
        wait_for(lambda: pages(browser)[:1] == ["Front Page"], what="the new event on top")
        row = browser.find_element(By.CSS_SELECTOR, "#events tr")
        assert row.find_element(By.CSS_SELECTOR, "td.page a").get_attribute("href") == \
            "https://master.example/Front%20Page"
        diff = row.find_element(By.LINK_TEXT, "diff").get_attribute("href")
        assert diff == "https://master.example/Front%20Page?action=diff&rev1=41&rev2=42", diff
        # Markup from a publisher is text, never HTML.
        assert row.find_element(By.CSS_SELECTOR, "td.comment").text == "fixed a <b>typo</b>"
        assert browser.find_elements(By.CSS_SELECTOR, "#chart rect"), "a bar for this minute"
        assert "MoinMaster" in browser.find_element(By.ID, "legend").text

        # A filter by wiki: only DokuWiki's events, old and new.
        hub.publish({"wiki": "DokuWiki", "action": "SAVE", "page": "Doku Start", "user": "Bea"}, token=DOKU_TOKEN)
        wait_for(lambda: "Doku Start" in pages(browser))
        Select(browser.find_element(By.ID, "filter-wiki")).select_by_value("DokuWiki")
        wait_for(lambda: pages(browser) == ["Doku Start"], what="only DokuWiki's rows")
        assert browser.current_url.endswith("#wiki=DokuWiki"), browser.current_url
        hub.publish({"wiki": "MoinMaster", "action": "SAVE", "page": "Not Shown", "user": "Cy"})
        hub.publish({"wiki": "DokuWiki", "action": "SAVENEW", "page": "Doku New", "user": "Bea"}, token=DOKU_TOKEN)
        wait_for(lambda: pages(browser)[:1] == ["Doku New"], what="a new DokuWiki event")
        assert "Not Shown" not in pages(browser)

        # A page filter with a glob, and an action filter.
        page_box = browser.find_element(By.ID, "filter-page")
        page_box.send_keys("Doku N*")
        wait_for(lambda: pages(browser) == ["Doku New"], what="the page filter")
        Select(browser.find_element(By.ID, "filter-action")).select_by_value("page_changed")
        wait_for(lambda: pages(browser) == [], what="the action filter")
        page_box.clear()
        page_box.send_keys(" ")  # an input event; blank means no page filter
        wait_for(lambda: pages(browser) == ["Doku Start"], what="page filter removed")

        # Pause holds new events back; resume shows them.
        browser.find_element(By.ID, "pause").click()
        hub.publish({"wiki": "DokuWiki", "action": "SAVE", "page": "Held Back", "user": "Bea"}, token=DOKU_TOKEN)
        wait_for(lambda: browser.find_element(By.ID, "pause").text == "Resume (1 new)", what="one held")
        assert "Held Back" not in pages(browser)
        browser.find_element(By.ID, "pause").click()
        assert pages(browser)[:1] == ["Held Back"]

        # The hub goes away and comes back: the page resumes, each event once, in order.
        assert hub.stop() == 0
        wait_for(lambda: browser.find_element(By.ID, "status").text != "live", what="the page to notice")
        hub.start()
        hub.publish({"wiki": "DokuWiki", "action": "SAVE", "page": "After Restart", "user": "Bea"}, token=DOKU_TOKEN)
        wait_for(lambda: pages(browser)[:1] == ["After Restart"], timeout=30, what="resumed after a restart")
        ids = [event_id for event_id, _, _ in rows(browser)]
        assert ids == sorted(set(ids), reverse=True), ids

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        Select(browser.find_element(By.ID, "filter-action")).select_by_value("")
        Select(browser.find_element(By.ID, "filter-wiki")).select_by_value("")
        wait_for(lambda: "Front Page" in pages(browser), what="all wikis again")
        browser.save_screenshot(str(ARTIFACTS / "live-page.png"))
    finally:
        hub.stop()


def test_a_bad_page_filter_is_reported_on_the_page(tmp_path, browser):
    hub = Hub(tmp_path)
    try:
        browser.get(hub.http + "/#page=re:(")
        notice = wait_for(lambda: browser.find_element(By.ID, "notice").text, what="a notice")
        assert "page" in notice, notice
        assert browser.find_element(By.ID, "status").text == "filter refused"
    finally:
        hub.stop()
