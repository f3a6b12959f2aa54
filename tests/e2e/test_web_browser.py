"""The review and status pages in a real headless browser (Debian's chromium and
chromedriver, driven by selenium; nothing is downloaded), on a real daemon with real images in
a real inbox: items settled by a click and by keys, their upright copies checked by pixel.

Screenshots of each page go to ``$ROTWATCHD_SCREENSHOTS`` (default: the test's temp folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import fast_config, make_photo, red_edge
from PIL import Image

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("chromium and chromedriver are not installed "
                "(apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402 (only once chromium is known to be there)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

TOKEN = "browser-test-token-0123456789"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[WebDriver, str], Path]:
    folder = Path(os.environ.get("ROTWATCHD_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(driver: WebDriver, name: str) -> Path:
        path = folder / f"{name}.png"
        assert driver.save_screenshot(str(path))
        return path

    return take


def _wait(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def _cards(driver: WebDriver) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, "form.card")


def _thumbnails_loaded(driver: WebDriver) -> bool:
    return bool(driver.execute_script(
        "const imgs = [...document.querySelectorAll('form.card img')];"
        "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);"))


def _queue_photos(daemon_factory: Any, tmp_path: Path, **web: Any) -> tuple[Any, Any, list[Path]]:
    """Three photos needing 90, 180 and 270 degrees, all sent to review (threshold 1)."""
    config = fast_config(tmp_path, model={"min_confidence": 1.0},
                         web={"listen": "127.0.0.1:0", **web})
    daemon, results = daemon_factory(config)
    photos = [make_photo(config.inboxes[0].path / f"photo{i}.jpg", correction=c, seed=i,
                         size=(360, 240)) for i, c in enumerate((90, 180, 270))]
    results.wait_count(3)
    assert daemon.review.backlog() == 3
    return daemon, config, photos


def _assert_upright(path: Path) -> None:
    with Image.open(path) as image:
        assert red_edge(image)[0] == "top", path
        assert image.size == (360, 240)


def test_review_by_click_and_by_key_in_a_real_browser(
        tmp_path: Path, daemon_factory: Any, browser: WebDriver,
        shots: Callable[[WebDriver, str], Path]) -> None:
    daemon, config, photos = _queue_photos(daemon_factory, tmp_path)
    outbox = config.inboxes[0].output
    browser.get(daemon.web.url + "review")
    _wait(browser, lambda d: len(_cards(d)) == 3 and _thumbnails_loaded(d))
    first = _cards(browser)[0]
    assert "current" in (first.get_attribute("class") or "")
    guess = first.find_element(By.CSS_SELECTOR, "button.turn.guess")
    assert guess.get_attribute("value") == "90"  # the model's pick is marked
    shots(browser, "review")

    browser.set_window_size(412, 915)  # a phone
    _wait(browser, lambda d: d.execute_script("return window.innerWidth") <= 412)
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")
    shots(browser, "review-phone")
    browser.set_window_size(1280, 1000)

    # one click on the upright turn of the first photo
    first.find_element(By.CSS_SELECTOR, "button.turn[value='90']").click()
    _wait(browser, lambda d: len(_cards(d)) == 2)
    _assert_upright(outbox / "photo0.jpg")
    assert browser.find_element(By.ID, "backlog").text == "2"

    # one key: the next card is outlined; arrow down = upside down (180)
    _wait(browser, lambda d: "current" in (_cards(d)[0].get_attribute("class") or ""))
    browser.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    _wait(browser, lambda d: len(_cards(d)) == 1)
    _assert_upright(outbox / "photo1.jpg")

    # Enter accepts the model's pick (270) for the last one
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    _wait(browser, lambda d: len(_cards(d)) == 0)
    _assert_upright(outbox / "photo2.jpg")
    assert "Nothing else waits" in browser.find_element(By.ID, "message").text
    assert daemon.review.backlog() == 0
    assert [item.answer for item in daemon.review.labels()] == [90, 180, 270]
    assert not any((config.inboxes[0].review / p.name).exists() for p in photos)
    shots(browser, "review-done")

    browser.get(daemon.web.url + "status")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "svg.chart")) == 4)
    assert "review" in browser.find_element(By.CSS_SELECTOR, ".facts").text
    shots(browser, "status")


def test_a_page_beyond_loopback_opens_with_the_token_once_then_works_by_cookie(
        tmp_path: Path, daemon_factory: Any, browser: WebDriver,
        shots: Callable[[WebDriver, str], Path]) -> None:
    daemon, config, _ = _queue_photos(daemon_factory, tmp_path, listen="0.0.0.0:0",
                                      token=TOKEN)
    base = f"http://127.0.0.1:{daemon.web.server.port}/"
    browser.get(base + "review")
    assert "a token is needed" in browser.find_element(By.TAG_NAME, "body").text
    shots(browser, "token-needed")
    browser.get(base + f"review?token={TOKEN}")
    _wait(browser, lambda d: len(_cards(d)) == 3 and _thumbnails_loaded(d))
    assert "token" not in browser.current_url  # moved into the HttpOnly cookie
    assert browser.execute_script("return document.cookie") == ""
    _cards(browser)[0].find_element(By.CSS_SELECTOR, "button.turn[value='90']").click()
    _wait(browser, lambda d: len(_cards(d)) == 2)
    _assert_upright(config.inboxes[0].output / "photo0.jpg")
