"""The console's Users page in a real browser (issue 18): an owner adds a user (refused without a
phone while SMS is on, with the rule's sentence), sends them an invitation that signs them in
with a passkey, changes their role and their two-factor authentication; an admin is refused by
the rules. Screenshots of the pages go to the run's folder (harness.OUT)."""

from harness import Gateway, accept_invitation, shot


def nav(page, name):
    """Follows a link of the console's navigation."""
    page.get_by_role("navigation", name="Console").get_by_role("link", name=name, exact=True).click()


def test_an_owner_adds_a_user_sends_an_invitation_and_changes_a_role(browser):
    gateway = Gateway("users")
    try:
        _, owner, _ = gateway.account()
        gateway.user(owner, "ada", "owner", "+4915112360101")
        gateway.user(owner, "bea", "member", "+4915112360102")
        page, _ = browser.page()
        accept_invitation(page, gateway.invite(owner, "ada"))
        nav(page, "Users")
        table = page.locator("#users")
        assert "+491*******102" in table.inner_text(), "phones masked"
        assert "+4915112360102" not in page.content()

        # SMS is on (the default policy): a user without a phone is refused with the rule's sentence.
        page.get_by_label("User id").fill("grace")
        page.get_by_label("Role", exact=True).select_option("member")
        page.get_by_role("button", name="Add user").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert "a new user needs a phone number" in alert.inner_text(), alert.inner_text()
        assert gateway.api("GET", "/v1/users/grace", owner)[0] == 404, "nothing added"

        page.get_by_label("Phone number").fill("+4915112360107")
        page.get_by_role("button", name="Add user").click()
        page.get_by_text("User added.").wait_for()
        _, grace = gateway.api("GET", "/v1/users/grace", owner, expect=200)
        assert grace["role"] == "member", grace

        page.get_by_role("button", name="Send invitation").click()
        link = page.get_by_label("Invitation link").input_value()
        assert "/console/invitations/" in link, link
        print("   ", shot(page, "users-invitation"))

        # grace opens the link in her own browser and signs in with a new passkey.
        theirs, authenticator = browser.page()
        accept_invitation(theirs, link)
        assert "grace" in theirs.inner_text("main")
        assert len(authenticator.credentials()) == 1

        page.get_by_role("link", name="Back to grace").click()
        assert "Never" not in page.locator("dl").inner_text(), "grace's sign-in is recorded"
        page.get_by_label("Role", exact=True).select_option("admin")
        page.get_by_role("button", name="Change role").click()
        page.get_by_text("Role changed.").wait_for()
        _, grace = gateway.api("GET", "/v1/users/grace", owner, expect=200)
        assert grace["role"] == "admin", grace

        page.get_by_role("radio", name="Off", exact=True).check()
        page.get_by_role("button", name="Save two-factor authentication").click()
        page.get_by_text("Two-factor authentication saved.").wait_for()
        _, grace = gateway.api("GET", "/v1/users/grace", owner, expect=200)
        assert grace["two_factor"] == {"enabled": False, "override": "off", "set_by": grace["two_factor"]["set_by"]}, grace
        print("   ", shot(page, "users-user"))

        nav(page, "Users")
        row = page.locator("#users tr", has_text="grace")
        assert "admin" in row.inner_text() and "Off" in row.inner_text(), row.inner_text()
        print("   ", shot(page, "users"))

        # The invitation link worked once.
        again, _ = browser.page()
        again.goto(link)
        assert "Create a passkey" not in again.content()
    finally:
        gateway.stop()


def test_an_admin_is_refused_the_owner_role_and_sees_no_owner_only_controls(browser):
    gateway = Gateway("users-admin")
    try:
        _, owner, _ = gateway.account()
        gateway.user(owner, "alan", "admin", "+4915112360102")
        gateway.user(owner, "grace", "member", "+4915112360107")
        page, _ = browser.page()
        accept_invitation(page, gateway.invite(owner, "alan"))
        nav(page, "Users")
        page.get_by_role("link", name="grace", exact=True).click()
        assert page.get_by_role("button", name="Send invitation").count() == 0
        assert page.get_by_role("radio", name="Account default").count() == 0
        page.get_by_label("Role", exact=True).select_option("owner")
        page.get_by_role("button", name="Change role").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert "only the account owner may give or take the owner role" in alert.inner_text(), alert.inner_text()
        _, grace = gateway.api("GET", "/v1/users/grace", owner, expect=200)
        assert grace["role"] == "member", grace
    finally:
        gateway.stop()
