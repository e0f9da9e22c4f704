"""The web application end to end in a real browser: the system's Chromium, driven by Selenium
through the system's chromedriver, against `contactpoint serve`'s own server (waitress) on a
real master file. Skipped, saying why, when no Chromium is installed (.ci/run installs it).

With CONTACTPOINT_SCREENSHOTS=DIR set, each page visited is saved as DIR/<page>.png (the
screenshots in docs/web/ are made this way)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
import waitress

from engine.governance.search import CONTACT_DATA_MANAGER
from engine.web.app import create_app
from engine.web.context import WebSettings
from linkage_models.scoring import CompiledModel
from tests.web_helpers import PASSWORD, add_review_case, code_for, web_master

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="no system Chromium: apt-get install chromium chromium-driver (as .ci/run does)",
)
EXTRA_USERS = {"pip": "practitioner", "lee": "practitioner"}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1100,950")


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory, model: CompiledModel) -> dict:
    db = tmp_path_factory.mktemp("browser") / "m.duckdb"
    return {"db": db, **web_master(db, model, EXTRA_USERS), **add_review_case(db, model)}


@pytest.fixture(scope="module")
def base_url(master: dict) -> Iterator[str]:
    """`contactpoint serve`'s server for the module's master, on a free port."""
    server = waitress.create_server(create_app(WebSettings(master["db"])), host="127.0.0.1",
                                    port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def screenshot(driver, name: str, height: int | None = None) -> None:
    """Save the window (`height`: made this tall for a long page) as <name>.png."""
    folder = os.environ.get("CONTACTPOINT_SCREENSHOTS")
    if folder:
        if height:
            width = driver.get_window_size()["width"]
            driver.set_window_size(width, height)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def fill(driver, **fields: str) -> None:
    from selenium.webdriver.common.by import By

    for field_id, value in fields.items():
        box = driver.find_element(By.ID, field_id)
        box.clear()
        box.send_keys(value)


def navigate(driver, element) -> None:
    """Click `element` (a link or a form's button) and wait until the next page replaces this
    one, so that what is looked up next is on the new page."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    # chromedriver may answer a question about the old page with an error while it navigates
    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(staleness_of(page))


def submit(driver, label: str) -> None:
    """Press the button `label` and wait for the page it brings."""
    from selenium.webdriver.common.by import By

    navigate(driver, driver.find_element(By.XPATH, f"//main//button[normalize-space()='{label}']"))


def sign_in(driver, base_url: str, name: str, secret: str, shots: str | None = None) -> None:
    """Password, then the enrolment page's QR code and key, then a code from the token."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/login")
    if shots:
        screenshot(driver, f"{shots}-sign-in")
    fill(driver, name=name, password=PASSWORD)
    submit(driver, "Continue")
    assert driver.find_element(By.CSS_SELECTOR, ".qr svg").is_displayed()
    assert driver.find_element(By.CSS_SELECTOR, "code.mono").text == secret
    if shots:
        screenshot(driver, f"{shots}-enrol-token")
    fill(driver, code=code_for(secret))
    submit(driver, "Enrol and sign in")
    assert f"Signed in as {name}" in driver.find_element(By.TAG_NAME, "header").text


def search(driver, reason: str, name: str, dob: str) -> None:
    fill(driver, reason=reason, name=name, dob=dob)
    submit(driver, "Search")


def view(driver, first_name: str) -> str:
    """Open the child page of the result whose name starts with `first_name`; its text."""
    from selenium.webdriver.common.by import By

    navigate(driver, driver.find_element(
        By.XPATH, f"//button[starts-with(@aria-label, 'View {first_name}')]"))
    return driver.find_element(By.TAG_NAME, "main").text


def test_a_practitioner_signs_in_with_totp_searches_with_a_reason_and_sees_a_shielded_child(
    browser, base_url: str, master: dict
):
    from selenium.webdriver.common.by import By

    sign_in(browser, base_url, "pip", master["secrets"]["pip"], shots="practitioner")
    assert browser.current_url == f"{base_url}/search"
    screenshot(browser, "practitioner-search")
    search(browser, "school nurse referral, case 4471", "Oliver Quartermaine", "2009-03-01")
    assert "1 child found" in browser.find_element(By.ID, "results").text
    screenshot(browser, "practitioner-results")
    page = view(browser, "OLIVER")
    assert "SARAH QUARTERMAINE" in page and "Practice code B86001" in page
    screenshot(browser, "practitioner-child")

    navigate(browser, browser.find_element(By.LINK_TEXT, "Start a new search"))
    search(browser, "health visitor follow-up", "Amelia Fotheringham", "2008-07-14")
    row = browser.find_element(By.XPATH, "//tbody/tr[1]").text
    assert "AMELIA FOTHERINGHAM" in row and "Shielded" in row and "YO1 7HH" not in row
    page = view(browser, "AMELIA")
    assert "This child is shielded" in page and CONTACT_DATA_MANAGER in page
    assert "2 LOW ROAD" not in page and "JANE" not in page
    screenshot(browser, "practitioner-child-shielded")

    navigate(browser, browser.find_element(By.LINK_TEXT, "Change password"))
    fill(browser, **{"current-password": PASSWORD, "new-password": "a new and longer passphrase",
                     "new-password-again": "a new and longer passphrase"})
    submit(browser, "Change password")
    assert "Your password is changed." in browser.find_element(By.CSS_SELECTOR, ".done").text
    screenshot(browser, "practitioner-change-password")

    browser.get(f"{base_url}/review")  # a data manager's page
    assert "not part of your role" in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "practitioner-not-for-your-role")

    navigate(browser, browser.find_element(By.XPATH, "//header//button[.='Sign out']"))
    browser.get(f"{base_url}/login")
    fill(browser, name="pip", password="a new and longer passphrase")
    submit(browser, "Continue")
    assert "type the six-digit code" in browser.find_element(By.TAG_NAME, "main").text
    assert "scan this QR code" not in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "practitioner-code")
    # the enrolment used this time step's code, and a code works once: the next step's
    fill(browser, code=pyotp.TOTP(master["secrets"]["pip"]).at(time.time() + 30))
    submit(browser, "Sign in")
    assert "Signed in as pip" in browser.find_element(By.TAG_NAME, "header").text


def test_five_wrong_passwords_lock_the_user_out(browser, base_url: str, master: dict):
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}/login")
    for attempt in range(5):
        fill(browser, name="lee", password=f"wrong guess {attempt}")
        submit(browser, "Continue")
    fill(browser, name="lee", password=PASSWORD)
    submit(browser, "Continue")
    problem = browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "signing in is locked until" in problem
    assert browser.current_url == f"{base_url}/login"
    screenshot(browser, "locked-out")


def test_an_admin_manages_users_and_checks_the_audit_log(browser, base_url: str, master: dict):
    from selenium.webdriver.common.by import By

    sign_in(browser, base_url, "root", master["secrets"]["root"])
    assert browser.current_url == f"{base_url}/admin/users"
    assert "pip" in browser.find_element(By.TAG_NAME, "table").text
    screenshot(browser, "admin-users")
    navigate(browser, browser.find_element(By.LINK_TEXT, "Sources"))
    assert "census" in browser.find_element(By.TAG_NAME, "table").text
    screenshot(browser, "admin-sources")
    navigate(browser, browser.find_element(By.LINK_TEXT, "Retention"))
    submit(browser, "Show what is due")
    assert "(dry run)" in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "admin-retention")
    navigate(browser, browser.find_element(By.LINK_TEXT, "Audit log"))
    assert "The audit log is intact" in browser.find_element(By.CSS_SELECTOR, ".done").text
    screenshot(browser, "admin-audit")


def test_a_data_manager_settles_a_review_item_and_splits_a_child(
    browser, base_url: str, master: dict
):
    from selenium.webdriver.common.by import By

    sign_in(browser, base_url, "dana", master["secrets"]["dana"])
    search(browser, "review of shielding", "Amelia Fotheringham", "2008-07-14")
    page = view(browser, "AMELIA")
    assert "Shielded child." in page and "2 LOW ROAD" in page
    screenshot(browser, "data-manager-child-shielded")

    navigate(browser, browser.find_element(By.LINK_TEXT, "Review queue"))
    item = browser.find_element(By.CSS_SELECTOR, "section.item")
    assert "dwp:c" in item.text and "ISLA" in item.text and "AMELIA" in item.text
    waterfall = item.find_element(By.CSS_SELECTOR, "table.waterfall").text  # oldest: shown
    assert "Exact match on date_of_birth" in waterfall
    screenshot(browser, "data-manager-review", height=2000)
    item.find_element(By.CSS_SELECTOR, f"input[value='link:{master['twin_a']}']").click()
    item.find_element(By.CSS_SELECTOR, "input[name=reason]").send_keys(
        "claimant confirmed by phone")
    navigate(browser, item.find_element(
        By.XPATH, ".//button[starts-with(normalize-space(), 'Settle item')]"))
    assert "settled: the record joined child" in browser.find_element(By.CSS_SELECTOR, ".done").text
    assert "The review queue is empty" in browser.find_element(By.TAG_NAME, "main").text

    navigate(browser, browser.find_element(By.LINK_TEXT, "Find a child"))
    search(browser, "data quality check", "Amelia Khan", "2009-02-10")
    view(browser, "AMELIA")
    navigate(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "Manage this child"))
    assert "claimant confirmed" not in browser.page_source  # reasons stay in the audit log
    assert "user:dana" in browser.find_element(By.TAG_NAME, "main").text
    browser.find_element(By.CSS_SELECTOR, "input[aria-label='Split off dwp:c']").click()
    fill(browser, **{"reason-split": "the claim is for a third sibling"})
    submit(browser, "Split into a new child")
    assert "Split dwp:c into a new child" in browser.find_element(By.CSS_SELECTOR, ".done").text
    records = browser.find_element(By.ID, "records").find_element(By.XPATH, "following::table")
    assert "gro:a" in records.text and "dwp:c" not in records.text
    screenshot(browser, "data-manager-manage", height=2300)
