"""The console's Operator, Audit and Phone numbers pages in a real browser (issue 18): the
operator signs in with the root invitation the gateway printed, creates an account, mints keys
(shown once) and revokes one; an owner of that account changes a number's PIN and filters the
audit trail. Screenshots of the three pages go to the run's folder."""

from harness import Gateway, accept_invitation, shot


def nav(page, name):
    """Follows a link of the console's navigation."""
    page.get_by_role("navigation", name="Console").get_by_role("link", name=name, exact=True).click()


def mint(page, role):
    """Mints a key of `role` on the open account: (its id, the secret shown once)."""
    page.get_by_label("Role").select_option(role)
    page.get_by_role("button", name="Mint key").click()
    page.get_by_text("It is shown only now").wait_for()
    secret = page.get_by_label("Key", exact=True).input_value()
    key_id = page.locator(".notice code").first.inner_text()
    return key_id, secret


def test_the_operator_creates_an_account_mints_a_key_and_revokes_it(browser):
    gateway = Gateway("operator")
    try:
        page, _ = browser.page()
        accept_invitation(page, gateway.printed_invitation())
        nav(page, "Operator")
        page.get_by_role("heading", name="Providers").wait_for()
        assert "Queue depth" in page.inner_text("main")

        page.get_by_label("Account name").fill("Acme Bank")
        page.get_by_role("button", name="Create account").click()
        page.get_by_text("Account created.").wait_for()
        assert "Acme Bank" in page.inner_text("main")
        account = page.get_by_label("Account id").input_value()
        assert account.startswith("AC"), account
        # The accounts list links to it.
        page.get_by_role("link", name="Acme Bank").click()
        page.wait_for_url(f"**/console/operator?account={account}")

        owner_id, owner = mint(page, "owner")
        gateway.api("GET", "/v1/policy", owner, expect=200)
        service_id, service = mint(page, "service")
        gateway.api("GET", "/v1/policy", service, expect=200)
        print("   ", shot(page, "operator"))

        # Shown once: the page opened again has the key's id, never its secret.
        page.goto(f"{gateway.base}/console/operator?account={account}")
        assert service_id in page.inner_text("main")
        assert service not in page.content()

        page.get_by_role("button", name=f"Revoke key {service_id}").click()
        page.get_by_text(f"Key {service_id} revoked").wait_for()
        status, _ = gateway.api("GET", "/v1/policy", service)
        assert status == 401, status
        page.get_by_role("button", name=f"Revoke key {owner_id}").click()
        page.get_by_text("last owner key cannot be revoked").wait_for()
        gateway.api("GET", "/v1/policy", owner, expect=200)
        print("   ", shot(page, "operator-last-owner-key"))

        # An owner of the account: a number's PIN, then the audit trail filtered by action.
        gateway.user(owner, "ada", "owner", "+4915112360101")
        _, number = gateway.api(
            "POST", "/v1/phone-numbers", owner, {"phone_number": "+4915112389001", "pin": "246813"}, expect=201
        )
        ada, _ = browser.page()
        accept_invitation(ada, gateway.invite(owner, "ada"))
        nav(ada, "Phone numbers")
        assert number["id"] in ada.inner_text("main")
        ada.get_by_label("New PIN (6 digits)").fill("582914")
        ada.get_by_role("button", name="Change PIN").click()
        ada.get_by_text("PIN saved.").wait_for()
        print("   ", shot(ada, "phone-numbers"))
        gateway.api(
            "POST",
            f"/v1/phone-numbers/{number['id']}/register",
            owner,
            {"messaging_product": "whatsapp", "pin": "582914"},
            expect=200,
        )

        nav(ada, "Audit")
        ada.get_by_label("Action").fill("two_step.pin_changed")
        ada.get_by_role("button", name="Filter").click()
        ada.wait_for_url("**/console/audit?action=two_step.pin_changed*")
        rows = ada.locator("tbody tr")
        assert rows.count() == 1, ada.inner_text("main")
        assert "for ada" in rows.first.inner_text()
        print("   ", shot(ada, "audit"))
    finally:
        gateway.stop()
