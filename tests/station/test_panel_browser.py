"""The operator panel in a real browser (headless Chromium from the operating system's packages,
driven by Selenium through the system's chromedriver: nothing is downloaded), used as an operator
would: keyboard only where the station allows it. Each test saves what the operator saw under
reports/panel/ (docs/factory.md shows them).

Without /usr/bin/chromium these tests are skipped with the command that installs it, unless
RIG_REQUIRE_BROWSER=1 (CI sets it: there a missing browser is a failure, not a skip)."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness.plugin_runs import PROJECT
from tests.station.station_process import THREE_SOCKETS, StationProcess, station_file

pytestmark = pytest.mark.panel

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = PROJECT / "reports" / "panel"


def _browser_missing() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if not missing:
        return None
    why = f"{', '.join(missing)} not installed: apt-get install -y chromium chromium-driver"
    if os.environ.get("RIG_REQUIRE_BROWSER") == "1":
        pytest.fail(why)
    return why


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    why = _browser_missing()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("panel")
    st = StationProcess(tmp, str(station_file(tmp, THREE_SOCKETS, name="EOL station 3")))
    yield st
    st.stop()


@pytest.fixture(scope="module")
def browser(station):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    # the driver's path is given: Selenium Manager (which would download one) is never asked
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, station):
    browser.get(station.url)
    wait_until(browser, lambda: len(browser.find_elements("css selector", "#slots .slot")) == 3, what="the sockets")
    return browser


def wait_until(driver, condition, timeout_s: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # the element is being re-rendered: look again
            pass
        time.sleep(0.1)
    shoot(driver, "timeout")
    raise AssertionError(f"not reached in {timeout_s} s: {what or condition}")


def shoot(target, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    target.save_screenshot(str(path)) if hasattr(target, "save_screenshot") else target.screenshot(str(path))
    return path


def slot(driver, socket: str):
    return driver.find_element("id", f"slot-{socket}")


def scan(driver, socket: str, serial: str) -> None:
    """What a barcode scanner does: type the serial into the focused scan field, then Enter."""
    from selenium.webdriver.common.keys import Keys

    field = slot(driver, socket).find_element("css selector", ".serial")
    field.click()
    field.send_keys(serial + Keys.ENTER)


def dialog_shown(driver, socket: str) -> bool:
    return slot(driver, socket).find_element("css selector", ".dialog").is_displayed()


def verdict(driver, socket: str):
    box = slot(driver, socket).find_element("css selector", ".verdict")
    wait_until(driver, box.is_displayed, what=f"a verdict on socket {socket}")
    return box


# ---------------------------------------------------------------------- the operator's flow
def test_scan_start_answer_prompt_then_pass(page, station):
    from selenium.webdriver.common.keys import Keys

    scan(page, "A", "PS-1001")
    wait_until(page, lambda: dialog_shown(page, "A"), what="the plug prompt")
    shoot(page, "prompt")
    page.refresh()  # the browser reloaded mid-run: the page comes back to where the run is
    wait_until(page, lambda: dialog_shown(page, "A"), what="the prompt again after a reload")
    text = slot(page, "A").find_element("css selector", ".prompt-text").text
    assert "Fit the Type 2 test plug" in text
    page.switch_to.active_element.send_keys(Keys.ENTER)  # Continue has the focus: keyboard only
    box = verdict(page, "A")
    assert box.find_element("css selector", ".word").text.endswith("PASS")
    assert "pass" in box.get_attribute("class")
    steps = slot(page, "A").find_elements("css selector", ".steps li")
    assert len(steps) >= 8 and all("passed" in li.get_attribute("class") for li in steps)
    assert "limit" in slot(page, "A").find_element("css selector", ".steps .m").text
    shoot(page, "pass")
    href = box.find_element("css selector", ".certificate").get_attribute("href")
    with urllib.request.urlopen(href, timeout=10) as r:
        assert "PS-1001" in r.read().decode()
    tested = page.find_element("id", "n-tested").text
    assert int(tested) >= 1 and page.find_element("id", "recent").text.count("PS-1001") == 1
    latencies = page.execute_script("return window.panelLatency")
    assert latencies, "the page records how late each finished test was shown"


def test_bad_unit_and_broken_meter_on_two_sockets_at_once(page, station):
    from selenium.webdriver.common.keys import Keys

    scan(page, "B", "PS-1002")
    scan(page, "C", "PS-1003")
    for socket in ("B", "C"):
        wait_until(page, lambda: dialog_shown(page, socket), what=f"the prompt on {socket}")
        slot(page, socket).find_element("css selector", ".prompt-continue").send_keys(Keys.ENTER)
    fail, fault = verdict(page, "B"), verdict(page, "C")
    assert fail.find_element("css selector", ".word").text.endswith("FAIL") and "fail" in fail.get_attribute("class")
    why = fail.find_element("css selector", ".why").text
    assert "CP-02" in why and "CP-06" in why and "repair" in why
    assert fault.find_element("css selector", ".word").text.endswith("RIG FAULT - RETEST")
    assert "retest" in fault.get_attribute("class") and "Check: meter" in fault.find_element("css selector", ".why").text
    assert not fault.find_element("css selector", ".certificate").is_displayed()
    shoot(slot(page, "B"), "fail")
    shoot(slot(page, "C"), "rig-fault")
    page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the whole station in one picture
                         {"width": 1400, "height": 1900, "deviceScaleFactor": 1, "mobile": False})
    page.execute_script("window.scrollTo(0, 0)")
    shoot(page, "two-sockets")
    page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_abort_mid_test_leaves_the_rig_safe(page, station):
    scan(page, "A", "PS-1004")
    wait_until(page, lambda: dialog_shown(page, "A"), what="the run under way")
    abort = slot(page, "A").find_element("css selector", ".dialog .abort")  # the prompt covers the slot
    abort.click()
    assert abort.text == "Press again to abort"  # one stray click never stops a unit's test
    abort.click()
    box = verdict(page, "A")
    assert "INTERRUPTED - RETEST" in box.find_element("css selector", ".word").text
    assert "Rig left in its safe state" in box.find_element("css selector", ".record").text
    shoot(page, "aborted")


def test_a_serial_that_does_not_match_is_refused_at_the_scan_field(page, station):
    scan(page, "A", "12345")
    refusal = slot(page, "A").find_element("css selector", ".refusal")
    wait_until(page, lambda: "is not a serial this station tests" in refusal.text, timeout_s=10)
    assert "^PS-[0-9]{4}$" in refusal.text
    shoot(slot(page, "A"), "refused-serial")
