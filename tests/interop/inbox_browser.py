"""The sandbox inbox page in a real headless browser (Debian's chromium + chromium-driver).

Usage: python tests/interop/inbox_browser.py HOST:PORT INBOX_URL SCREENSHOT.png
(the gRPC server must run in sandbox mode; INBOX_URL is the one it logs at start)

Sends codes through the gRPC facade (Python grpcio, stubs generated from proto/), then checks
the page: the existing message is listed, a new one appears without a reload, its code matches,
a template text with HTML is shown as text (never run), and filtering by number works.
Prints one `ok - ...` line per check; exits non-zero on the first failure. Every wait has a deadline.
"""

import random
import sys
import time

import grpc
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import gen_stubs

sys.path.insert(0, str(gen_stubs.generate()))

from itnio.otp.v1 import (  # noqa: E402  (generated just above)
    apps_pb2,
    apps_pb2_grpc,
    templates_pb2,
    templates_pb2_grpc,
    verifications_pb2,
    verifications_pb2_grpc,
)

TIMEOUT = 10  # seconds, per gRPC call and per browser wait
HOSTILE = '<img src=x onerror="window.__xss=1"><b>##code##</b> is your code'


def ok(what):
    print(f"ok - browser: {what}", flush=True)


def real_looking_number():
    """Digits of a UK mobile number (+44 7400 …, an assigned range), unique per run."""
    return "447400" + f"{random.randrange(10**6):06d}"


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def card_for(driver, verification_id):
    """The page's (first) card of one verification, shown or hidden, or None."""
    cards = driver.find_elements(By.CSS_SELECTOR, f'li.message[data-verification-id="{verification_id}"]')
    return cards[0] if cards else None


def main(addr, inbox_url, screenshot):
    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
    apps = apps_pb2_grpc.AppServiceStub(channel)
    templates = templates_pb2_grpc.TemplateServiceStub(channel)
    verifications = verifications_pb2_grpc.VerificationServiceStub(channel)
    suffix = f"{random.randrange(10**8):08d}"
    app = apps.CreateApp(apps_pb2.CreateAppRequest(name=f"inbox-{suffix}"), timeout=TIMEOUT).app
    template = templates.CreateTemplate(
        templates_pb2.CreateTemplateRequest(app_id=app.app_id, name=f"inbox-{suffix}", text=HOSTILE, code_length=6),
        timeout=TIMEOUT,
    ).template

    def send(number, replace_pending=False):
        # E.164 with "+"; a second code to a number with one pending asks for it explicitly
        # (the send guard otherwise answers with the pending verification and sends nothing).
        request = verifications_pb2.SendVerificationRequest(
            app_id=app.app_id,
            template_id=template.template_id,
            phone_number="+" + number,
            replace_pending=replace_pending,
        )
        return verifications.SendVerification(request, timeout=TIMEOUT)

    first_number, second_number = real_looking_number(), real_looking_number()
    while second_number == first_number:
        second_number = real_looking_number()
    first = send(first_number)

    driver = browser()
    try:
        wait = WebDriverWait(driver, TIMEOUT)
        driver.get(inbox_url)
        wait.until(lambda d: card_for(d, first.verification_id) is not None)
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
        ok("the page lists a message sent before it was opened and connects to the live stream")

        driver.execute_script("window.__notReloaded = true;")
        second = send(second_number)
        card = wait.until(lambda d: card_for(d, second.verification_id))
        assert driver.execute_script("return window.__notReloaded === true;"), "the page reloaded"
        newest = driver.find_element(By.CSS_SELECTOR, "li.message")
        assert newest.get_attribute("data-id") == card.get_attribute("data-id"), "newest first"
        ok("a new message appears at the top without a reload")

        code = card.find_element(By.CSS_SELECTOR, ".code").text
        assert len(code) == 6 and code.isdigit(), code
        check = verifications.CheckVerification(
            verifications_pb2.CheckVerificationRequest(verification_id=second.verification_id, code=code),
            timeout=TIMEOUT,
        )
        assert check.match_state == verifications_pb2.MATCH_STATE_MATCHED, check
        ok(f"the code read from the page ({code}) checks as MATCH_STATE_MATCHED")

        text = card.find_element(By.CSS_SELECTOR, ".text").text
        assert text == HOSTILE.replace("##code##", code), text
        assert not card.find_elements(By.CSS_SELECTOR, "img, b"), "template HTML was parsed"
        assert driver.execute_script("return window.__xss === undefined;"), "template HTML ran"
        ok("template text with HTML is shown as text, never run")

        field = driver.find_element(By.ID, "filter")
        field.send_keys("+" + first_number)
        wait.until(lambda d: not card_for(d, second.verification_id).is_displayed())
        assert card_for(driver, first.verification_id).is_displayed()
        visible = [c for c in driver.find_elements(By.CSS_SELECTOR, "li.message") if c.is_displayed()]
        assert all(c.get_attribute("data-to") == first_number for c in visible), "filter leaks"
        assert f"to={first_number}" in driver.current_url, driver.current_url
        ok("filtering by number hides other numbers and lands in the URL")

        third = send(second_number, replace_pending=True)
        wait.until(lambda d: card_for(d, third.verification_id) is not None)
        assert not card_for(driver, third.verification_id).is_displayed(), "a filtered-out live message shows"
        field.clear()
        field.send_keys(second_number[:8])
        wait.until(lambda d: card_for(d, third.verification_id).is_displayed())
        ok("live messages respect the filter; a number prefix filters too")

        driver.save_screenshot(screenshot)
        ok(f"screenshot kept at {screenshot}")
    finally:
        driver.quit()


if __name__ == "__main__":
    started = time.monotonic()
    main(sys.argv[1], sys.argv[2], sys.argv[3])
    print(f"# browser test took {time.monotonic() - started:.1f}s")
