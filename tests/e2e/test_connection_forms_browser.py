"""
The five connection forms and their Test button, in headless Chromium against the real ``airflow api-server`` of
the e2e deployment (issue 19): each type shows its own fields with its labels and placeholders, hides what it does
not use, and its Test answers for the sandbox's key and for a wrong one.

What Airflow 3.3.2 really does, and so what is asserted: the list's Test button sends the row with ``"port": 0``
and ``"password": "***"``; the API server sees a port that differs from the stored one, wants the credentials again
and answers 400 "Bad Request" (the toast says "Test Connection Failed / Bad Request"), for every connection type,
Airflow's own included (docs/running_on_airflow.md). The test then sends the very body the button sent, from the
same page and session, with only the port corrected to the stored one: that is the answer the button would show,
and it passes for the sandbox's key and fails with a clear message for a wrong one. Should Airflow fix the button,
the first assertion fails and says so.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_deployment import AirflowDeployment
from browser import BrowserUnavailable, NetworkLog, headless_chromium, wait_for

from airflow_provider_parcels.get_provider_info import get_provider_info

pytestmark = pytest.mark.e2e

STANDARD_FIELDS = {"host": "Host", "login": "Login", "password": "Password", "port": "Port", "schema": "Schema"}
#: The answer Airflow 3.3.2 gives the Test button of any stored connection (the ``port: 0`` bug).
PORT_ZERO_DETAIL = "The host or port to test differs from the stored connection"
#: Written in literally, so a change of the provider's form metadata has to change this test too.
EXPECTED_LABELS = {
    "whereparcel": {"login": "API key", "password": "Secret key"},
    "trackingmore": {"password": "API key"},
    "trackflow": {"password": "API key"},
    "parcellab": {"password": "Token"},
    "shipengine": {"password": "API key"},
}
CONN_TYPES = list(EXPECTED_LABELS)


def form_spec(conn_type: str) -> dict[str, Any]:
    """The provider's form metadata of one connection type (what the UI should render)."""
    return next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type)


class AirflowUI:
    """
    The Airflow UI in one logged-in headless Chromium.

    :param driver: the Selenium driver.
    :param deployment: the e2e deployment.
    """

    def __init__(self, driver: Any, deployment: AirflowDeployment) -> None:
        self.driver = driver
        self.deployment = deployment
        self.network = NetworkLog(driver, "/api/v2/connections")

    def by(self) -> Any:
        from selenium.webdriver.common.by import By

        return By

    def login(self) -> None:
        """Sign in through the simple auth manager's login page, as a user does."""
        by, d = self.by(), self.driver
        d.get(f"{self.deployment.base_url}/")
        wait_for(lambda: d.find_element(by.NAME, "username"), what="the login page")
        d.find_element(by.NAME, "username").send_keys("admin")
        d.find_element(by.NAME, "password").send_keys(self.deployment.password)
        d.find_element(by.XPATH, "//button[normalize-space()='Sign in']").click()
        wait_for(lambda: "/auth/" not in d.current_url, what="the redirect after signing in")

    def open_add_form(self, conn_id: str, display_name: str) -> Any:
        """The Add Connection dialog with ``conn_id`` typed in and the type chosen; returns the dialog."""
        from selenium.webdriver.common.keys import Keys

        by, d = self.by(), self.driver
        d.get(f"{self.deployment.base_url}/connections")
        wait_for(lambda: d.find_element(by.XPATH, "//button[contains(., 'Add Connection')]"),
                 what="the Add Connection button").click()
        dialog = wait_for(lambda: d.find_element(by.CSS_SELECTOR, "[role=dialog]"), what="the dialog")
        wait_for(lambda: dialog.find_element(by.NAME, "connection_id")).send_keys(conn_id)
        chooser = dialog.find_element(
            by.XPATH, ".//label[contains(., 'Connection Type')]/ancestor::*[.//input][1]//input")
        chooser.send_keys(display_name)
        wait_for(lambda: d.find_element(by.XPATH, f"//*[@role='option' and normalize-space()='{display_name}']"),
                 what=f"the option {display_name}")
        chooser.send_keys(Keys.ENTER)
        wait_for(lambda: dialog.find_elements(by.NAME, "host"), what="the standard fields")
        return dialog

    def field(self, dialog: Any, name: str) -> dict[str, Any] | None:
        """A form field by its input's name: label, placeholder, helper text and tag; ``None`` when absent."""
        by = self.by()
        found = dialog.find_elements(by.CSS_SELECTOR, f"input[name='{name}'], textarea[name='{name}']")
        if not found:
            return None
        element = found[0]
        return self.driver.execute_script(
            """
            const el = arguments[0];
            const root = el.closest('[data-part=root][role=group]') || el.closest('[data-part=root]');
            const label = root && root.querySelector('label');
            const helper = root && root.querySelector('[data-part=helper-text]');
            return {tag: el.tagName.toLowerCase(), type: el.getAttribute('type'),
                    placeholder: el.getAttribute('placeholder'),
                    label: label ? label.textContent.replace('*', '').trim() : null,
                    helper: helper ? helper.textContent.trim() : null};
            """,
            element,
        )

    def open_section(self, dialog: Any, title: str) -> None:
        """Expand an accordion section of the form (``Extra Fields``)."""
        by = self.by()
        trigger = dialog.find_element(by.XPATH, f".//button[normalize-space()='{title}']")
        if trigger.get_attribute("aria-expanded") != "true":
            trigger.click()
        wait_for(lambda: trigger.get_attribute("aria-expanded") == "true", what=f"section {title}")

    def fill(self, dialog: Any, values: dict[str, str]) -> None:
        by = self.by()
        self.open_section(dialog, "Standard Fields")
        for name, value in values.items():

            def typed(name: str = name, value: str = value) -> bool:
                element = dialog.find_element(by.NAME, name)
                if not element.is_displayed():  # the section is still opening
                    return False
                element.clear()
                element.send_keys(value)
                return element.get_attribute("value") == value

            wait_for(typed, what=f"typing into {name}")

    def save(self, dialog: Any) -> dict[str, Any]:
        """Click Save; the ``POST /api/v2/connections`` the form sent."""
        by = self.by()
        self.network.mark()
        dialog.find_element(by.XPATH, ".//button[normalize-space()='Save']").click()
        return wait_for(lambda: self.network.since_mark("POST", "/api/v2/connections"),
                        what="the form's POST and its answer")[0]

    def press_test(self, conn_id: str) -> tuple[dict[str, Any], str]:
        """Click the Test button of ``conn_id``'s row; ``(the call it made, the toast's text)``."""
        by, d = self.by(), self.driver
        d.get(f"{self.deployment.base_url}/connections")
        row = wait_for(lambda: d.find_element(by.XPATH, f"//tr[.//*[normalize-space()='{conn_id}']]"),
                       what=f"the row of {conn_id}")
        self.network.mark()
        row.find_element(by.CSS_SELECTOR, "button[aria-label='Test Connection']").click()
        call = wait_for(lambda: self.network.since_mark("POST", "/api/v2/connections/test"),
                        what="the Test button's call and its answer")[0]

        def toast_text() -> str | None:
            titles = [t.text for t in d.find_elements(by.CSS_SELECTOR, "[data-scope=toast][data-part=title]")]
            texts = [t.text for t in d.find_elements(by.CSS_SELECTOR, "[data-scope=toast][data-part=description]")]
            return " / ".join(titles + texts) if any(titles) and any(texts) else None

        toast = wait_for(toast_text, what="the toast")
        return call, toast

    def post_from_page(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST path`` with ``body`` from the page itself, with the session the UI holds (its ``_token``)."""
        return self.driver.execute_async_script(
            """
            const [path, body, done] = arguments;
            const cookie = document.cookie.split('; ').find(c => c.startsWith('_token='));
            const token = cookie ? cookie.slice('_token='.length) : '';
            fetch(path, {method: 'POST', body: JSON.stringify(body),
                         headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token}})
              .then(async r => done({status: r.status, json: await r.json()}))
              .catch(e => done({status: -1, json: String(e)}));
            """,
            path,
            body,
        )


@pytest.fixture(scope="module")
def ui(airflow_deployment: AirflowDeployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowUI]:
    """One signed-in headless Chromium for the module."""
    root = tmp_path_factory.mktemp("chromium")
    try:
        browser = headless_chromium(root / "profile", root / "chromedriver.log")
        driver = browser.__enter__()
    except BrowserUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    try:
        session = AirflowUI(driver, airflow_deployment)
        session.login()
        yield session
    finally:
        browser.__exit__(None, None, None)


@pytest.fixture
def created(airflow_deployment: AirflowDeployment) -> Iterator[list[str]]:
    """Connection ids the test creates; deleted afterwards."""
    ids: list[str] = []
    yield ids
    for conn_id in ids:
        airflow_deployment.request("DELETE", f"/connections/{conn_id}", expect=(204, 404))


def sandbox_connection(deployment: AirflowDeployment, conn_type: str) -> dict[str, Any]:
    """The sandbox's connection of one type, as ``--connections-file`` wrote it."""
    return json.loads(Path(deployment.connections_file).read_text())[f"parcels_demo_{conn_type}"]


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_form_shows_its_own_fields_and_its_test_answers(ui: AirflowUI, airflow_deployment: AirflowDeployment,
                                                          created: list[str], conn_type: str) -> None:
    spec = form_spec(conn_type)
    behaviour = spec["ui-field-behaviour"]
    hidden, relabel, placeholders = behaviour["hidden-fields"], behaviour["relabeling"], behaviour["placeholders"]
    assert {f: relabel[f] for f in EXPECTED_LABELS[conn_type]} == EXPECTED_LABELS[conn_type]
    conn_id = f"ui_{conn_type}_{uuid.uuid4().hex[:6]}"
    created.append(conn_id)
    dialog = ui.open_add_form(conn_id, spec["hook-name"])

    # standard fields: the used ones with our labels and placeholders, the others not rendered at all
    for name, default_label in STANDARD_FIELDS.items():
        shown = ui.field(dialog, name)
        if name in hidden:
            assert shown is None, (conn_type, name, shown)
            continue
        assert shown is not None, (conn_type, name)
        assert shown["label"] == relabel.get(name, default_label), (conn_type, name, shown)
        assert shown["placeholder"] == placeholders.get(name), (conn_type, name, shown)
    assert ui.field(dialog, "password")["type"] == "password"
    assert (ui.field(dialog, "login") is None) == (conn_type != "whereparcel")
    assert ui.field(dialog, "port") is None and ui.field(dialog, "schema") is None

    # extra fields: exactly ours, labelled and explained
    ui.open_section(dialog, "Extra Fields")
    for name, field in spec["conn-fields"].items():
        shown = ui.field(dialog, f"element_{name}")
        assert shown is not None, (conn_type, name)
        assert shown["label"] == field["label"], (conn_type, name, shown)
        assert shown["helper"] == field["description"], (conn_type, name, shown)
    rendered = {e.get_attribute("name") for e in dialog.find_elements(ui.by().CSS_SELECTOR, "[name^=element_]")}
    assert rendered == {f"element_{name}" for name in spec["conn-fields"]}, rendered
    assert ("element_plan" in rendered) == (conn_type != "parcellab")  # parcelLab documents no plans

    # fill in the sandbox's host and key, save
    sandbox = sandbox_connection(airflow_deployment, conn_type)
    values = {"host": sandbox["host"], "password": sandbox["password"]}
    if "login" in sandbox:
        values["login"] = sandbox["login"]
    ui.fill(dialog, values)
    saved = ui.save(dialog)
    assert saved["status"] == 201, saved
    assert json.loads(saved["body"])["password"] == sandbox["password"]

    _test_button(ui, conn_id, spec["hook-name"], passes=True)

    # the same with a wrong key: saved through the form, and the Test fails with a clear message
    wrong_id = f"{conn_id}_wrong"
    created.append(wrong_id)
    wrong_key = f"wrong-{uuid.uuid4().hex[:10]}"
    dialog = ui.open_add_form(wrong_id, spec["hook-name"])
    key_field = "login" if conn_type == "whereparcel" else "password"  # WhereParcel: API key + secret key
    ui.fill(dialog, {**values, key_field: wrong_key})
    assert ui.save(dialog)["status"] == 201
    message = _test_button(ui, wrong_id, spec["hook-name"], passes=False)
    assert "refused the credentials of this connection" in message, message
    assert wrong_key not in message


def _test_button(ui: AirflowUI, conn_id: str, api_name: str, passes: bool) -> str:
    """Press the row's Test button, check what Airflow 3.3.2 does with it, and the corrected call's answer."""
    call, toast = ui.press_test(conn_id)
    body = json.loads(call["body"])
    if call["status"] == 200:  # Airflow fixed the button: its own answer counts
        result = json.loads(call["response"])
    else:
        # Airflow 3.3.2: the button sends port 0 and the masked password, and gets a 400
        assert call["status"] == 400, call
        assert body["port"] == 0 and body["password"] == "***", body
        assert PORT_ZERO_DETAIL in call["response"], call
        assert "Test Connection Failed" in toast and "Bad Request" in toast, toast
        # the same body with the stored port (none): what the button should have sent
        answer = ui.post_from_page("/api/v2/connections/test", {**body, "port": None})
        assert answer["status"] == 200, answer
        result = answer["json"]
    assert result["status"] is passes, result
    assert result["message"].startswith(api_name), result
    if passes:
        assert "accepted the credentials of this connection" in result["message"], result
    return result["message"]
