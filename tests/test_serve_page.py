"""The page at / in a real headless Chromium: upload an image, a result of the right size appears."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("httpx", reason="the serve tests need httpx: pip install 'deploy-sdk[serve,dev]'")
pytest.importorskip("uvicorn", reason="sdk serve needs the serve extra: pip install 'deploy-sdk[serve]'")
pytest.importorskip("selenium", reason="the page test drives Chromium with selenium: pip install 'deploy-sdk[dev]'")

from serving import Server, encode, picture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HINT = "needs Debian's Chromium and its driver: apt-get install chromium chromium-driver"


@pytest.fixture
def browser():
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.skip(f"no chromium/chromedriver on PATH; the page test {HINT}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_upscales_an_uploaded_image(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    source = tmp_path / "lo.png"
    source.write_bytes(encode(picture(30, 44, seed=7)))
    with Server("srcnn3", token="page-token", log_dir=tmp_path) as server:
        browser.get(server.url + "/")
        assert "Try the model" in browser.title + browser.page_source
        browser.find_element(By.ID, "token").send_keys("page-token")
        browser.execute_script("document.getElementById('token').dispatchEvent(new Event('change'))")
        wait = WebDriverWait(browser, 30)
        wait.until(ready.text_to_be_present_in_element((By.ID, "model"), "ort-cpu"))
        Select(browser.find_element(By.ID, "scale")).select_by_value("3")
        browser.find_element(By.ID, "file").send_keys(str(source))
        browser.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_element(By.ID, "after").get_attribute("data-size"))
        assert browser.find_element(By.ID, "after").get_attribute("data-size") == "132x90"
        info = browser.find_element(By.ID, "info").text
        assert "44x30" in info and "132x90" in info and "ort-cpu" in info and "ms" in info
        assert browser.find_element(By.ID, "download").get_attribute("download") == "lo_x3.png"
        browser.save_screenshot(str(tmp_path / "page.png"))
