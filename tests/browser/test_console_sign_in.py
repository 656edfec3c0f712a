"""Operators sign in to the console with their token; sessions, CSRF and scopes hold."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import HeraldServer, screenshot, sign_in


def test_get_root_redirects_to_the_console_and_asks_to_sign_in(herald: HeraldServer, page: Any) -> None:
    page.goto(herald.url + "/")
    assert page.url == herald.url + "/console/sign-in?next=/console/"
    screenshot(page, "sign-in-en")


def test_an_operator_signs_in_sees_the_board_and_signs_out(herald: HeraldServer, page: Any) -> None:
    sign_in(page, herald, "operator")
    assert page.locator("h1").inner_text() == "Open incidents"
    cookie = next(c for c in page.context.cookies() if c["name"] == "herald_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert cookie["expires"] > 0, "the session cookie expires"
    screenshot(page, "board-empty-en")
    page.click("text=Sign out")
    page.wait_for_url("**/console/sign-in")
    page.goto(herald.url + "/console/")
    assert "/console/sign-in" in page.url


def test_a_form_post_without_its_csrf_token_is_refused(herald: HeraldServer, page: Any) -> None:
    sign_in(page, herald, "operator")
    for form in ({"action": "preview", "title.en": "x"}, {"action": "preview", "csrf": "forged"}):
        response = page.request.post(herald.url + "/console/compose", form=form, max_redirects=0)
        assert response.status == 403
        assert "not sent from the console" in response.text()
    page.goto(herald.url + "/console/compose")
    token = page.locator("#compose-form input[name=csrf]").input_value()
    accepted = page.request.post(herald.url + "/console/compose", form={"action": "preview", "csrf": token})
    assert accepted.status == 422, "with the token the form is read (and its missing fields reported)"


def test_an_operator_is_refused_the_admin_pages_and_an_admin_sees_them(herald: HeraldServer, new_page: Any) -> None:
    operator = new_page()
    sign_in(operator, herald, "operator")
    assert operator.locator("header nav a", has_text="Directory").count() == 0
    for path in (
        "/console/directory",
        "/console/deliveries",
        "/console/deliveries.csv",
        "/console/directory/tokai-logistics",
    ):
        response = operator.goto(herald.url + path)
        assert response is not None and response.status == 403, path
    assert "admins only" in operator.locator(".error-message").inner_text()

    admin = new_page()
    sign_in(admin, herald, "admin")
    response = admin.goto(herald.url + "/console/directory?q=logistics")
    assert response is not None and response.status == 200
    assert admin.locator("td a", has_text="tokai-logistics").count() == 1
    admin.click("text=tokai-logistics")
    assert "@" in admin.locator("table").inner_text(), "admins see contacts' addresses"
    screenshot(admin, "partner-en")
    response = admin.goto(herald.url + "/console/deliveries")
    assert response is not None and response.status == 200


def test_the_operators_language_is_remembered_after_signing_out(herald: HeraldServer, page: Any) -> None:
    sign_in(page, herald, "operator")
    page.click("header button[name=lang]")
    assert page.locator("h1").inner_text() == "対応中の障害"
    page.click("text=サインアウト")
    page.wait_for_url("**/console/sign-in")
    assert page.locator("h1").inner_text() == "Herald 運用コンソール"
    screenshot(page, "sign-in-ja")


def test_an_unknown_token_is_refused_beside_the_field(herald: HeraldServer, page: Any) -> None:
    page.goto(herald.url + "/console/sign-in")
    page.fill("#token", "not-a-token")
    page.click("form[action='/console/sign-in'] button[type=submit]")
    assert page.locator("#token-error").inner_text() == "This token is not valid for the console."
    assert page.locator("#token").get_attribute("aria-invalid") == "true"
