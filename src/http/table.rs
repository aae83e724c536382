//! The route table: every path, its name, and per method who may call it, its handler and what
//! the OpenAPI document says of it. Adding a route is one row here, its handler and its wire
//! types; the matcher, the 405s and the document's paths are built from the rows.

use std::collections::HashMap;
use std::sync::OnceLock;

use matchit::Router;

use super::doc::{answer, body, json, path, query, Body, Content, Doc, Schema};
use super::routes::{decode_segment, op, row, undocumented, Access, Call, Entry, Found, Reply};
use super::table_parts::*;
use super::wire::*;
use super::wire_events::*;
use super::wire_factors::*;
use super::wire_lists::*;
use super::wire_pins::*;
use crate::account::permission::Permission;

/// A handler of the table: an `async fn(Call) -> Reply`, boxed.
macro_rules! to {
    ($handler:path) => {
        |call| Box::pin($handler(call))
    };
}

use super::{
    accounts, console_invitations, events, factors, graph, keys, lists, operations, passkeys, pins,
    sdk, twilio, twilio_passkeys, usage, verifications, webhooks,
};
use Access::{Graph, Key, Link, Open, Receipt, Root, RootOrKey, Twilio};
use Permission::{
    AskTwoStepLinks, CreateAccounts, InviteToConsole, ManageKeys, ManagePeople, ManagePhoneNumbers,
    ManageWebhooks, MintKeys, ReadAudit, ReadPolicy, ReadUsage, RegisterNumbers, RevokeDevices,
    RunLogins, SendCodes, SetAccountEmail, SetPins, UseFactors,
};

static NOT_FOUND: Entry = row("", "not_found", &[]);

/// The routes. Adding one: a row here and its handler. Static segments win over parameters
/// (`/v2/Services` over `/{param}/{second}`). Each documented method's path parameters are
/// named in the order of the path's `{param}` and `{second}`.
#[rustfmt::skip]
pub static TABLE: &[Entry] = &[
    row("/healthz", "healthz", &[
        op("GET", Open, to!(operations::healthz), Doc {
            id: "healthz", summary: "Liveness", tag: "operations", params: &[], request: None,
            answers: &[
                answer("200", "The process is up", &[TEXT]),
                problem("default", "Not alive (503: the store client has answered nothing for `store.client_unhealthy_after_ms` while Redis answers; restart the process)"),
            ],
        }),
    ]),
    row("/readyz", "readyz", &[
        op("GET", Open, to!(operations::readyz), Doc {
            id: "readyz", summary: "Readiness", tag: "operations", params: &[], request: None,
            answers: &[
                answer("200", "The store answers (and, with Redis, the outbox is readable)", &[TEXT]),
                problem("default", "Not ready (503: the store is unreachable, a Redis Cluster shard's master has been unreachable for `store.shard_down_grace_ms`, or the outbox has not been readable for longer than dispatch.outbox_unready_after_ms)"),
            ],
        }),
    ]),
    row("/metrics", "metrics", &[
        op("GET", Open, to!(operations::metrics), Doc {
            id: "metrics", summary: "Prometheus metrics", tag: "operations", params: &[], request: None,
            answers: &[answer("200", "Prometheus text exposition", &[TEXT])],
        }),
    ]),
    row("/openapi.json", "openapi", &[
        op("GET", Open, to!(openapi_json), Doc {
            id: "openapi_json", summary: "This document", tag: "operations", params: &[], request: None,
            answers: &[answer("200", "This document", &[Content { media: "application/json", schema: Schema::Object }])],
        }),
    ]),
    row("/sdk/webauthn.js", "sdk_webauthn", &[
        op("GET", Open, to!(sdk::webauthn_js), Doc {
            id: "sdk_webauthn", summary: "The WebAuthn browser helper (ES module: register, authenticate, autofill)", tag: "operations", params: &[], request: None,
            answers: &[answer("200", "The module (text/javascript; CORS open)", &[Content { media: "text/javascript", schema: Schema::Text }])],
        }),
    ]),
    row("/v1/accounts", "create_account", &[
        op("POST", Root(CreateAccounts), to!(keys::create_account), Doc {
            id: "create_account", summary: "Create an account", tag: "accounts", params: &[],
            request: body::<CreateAccountBody>(),
            answers: &[answer("201", "Created (root key only)", &[json::<AccountBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/accounts/{param}/keys", "create_key", &[
        op("POST", RootOrKey(MintKeys), to!(keys::create_key), Doc {
            id: "create_key", summary: "Mint a key", tag: "accounts", params: &[ACCOUNT],
            request: body::<CreateKeyBody>(),
            answers: &[answer("201", "Minted (root key or the account's owner)", &[json::<KeyBody>()]), PROBLEM],
        }),
        op("GET", RootOrKey(ManageKeys), to!(lists::account_keys), Doc {
            id: "list_account_keys", summary: "List an account's keys", tag: "accounts", request: None,
            params: &[ACCOUNT, PAGE_LIMIT, PAGE_CURSOR],
            answers: &[answer("200", "One page of the account's keys by id (root key or the account's owner); never a key's secret", &[json::<KeyPageBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/accounts/{param}/keys/{second}", "account_key", &[
        op("DELETE", RootOrKey(ManageKeys), to!(lists::revoke_account_key), Doc {
            id: "revoke_account_key", summary: "Revoke an account's key", tag: "accounts", request: None,
            params: &[ACCOUNT, KEY_ID],
            answers: &[
                answer("200", "Revoked: the key stops working on every instance at once; audited as key.revoked", &[json::<KeyRevokedBody>()]),
                problem("422", "`refused` by rule `last-owner-key`: the account's last owner key is never revoked"),
                PROBLEM,
            ],
        }),
    ]),
    row("/v1/console-invitations", "console_invitations", &[
        op("POST", Root(InviteToConsole), to!(console_invitations::by_root), Doc {
            id: "invite_to_console", summary: "Invite the operator or any user to the console", tag: "console", params: &[],
            request: body::<RootInvitationBody>(),
            answers: &[
                answer("201", "A one-time link where the operator (`{\"root\": true}`) or the user (`{\"account\", \"user\"}`) creates a console passkey; shown in this answer only (root key)", &[json::<ConsoleInvitationBody>()]),
                PROBLEM,
            ],
        }),
    ]),
    row("/v1/keys", "keys", &[
        op("GET", Key(ManageKeys), to!(lists::keys), Doc {
            id: "list_keys", summary: "List the account's keys", tag: "accounts", request: None,
            params: &[PAGE_LIMIT, PAGE_CURSOR],
            answers: &[answer("200", "One page of the calling key's account's keys by id (owner keys); never a key's secret", &[json::<KeyPageBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/keys/{param}", "key", &[
        op("DELETE", Key(ManageKeys), to!(lists::revoke_key), Doc {
            id: "revoke_key", summary: "Revoke a key", tag: "accounts", request: None,
            params: &[KEY_ID],
            answers: &[
                answer("200", "Revoked: the key stops working on every instance at once; audited as key.revoked", &[json::<KeyRevokedBody>()]),
                problem("422", "`refused` by rule `last-owner-key`: the account's last owner key is never revoked"),
                PROBLEM,
            ],
        }),
    ]),
    row("/v1/accounts/{param}/email", "account_email", &[
        op("PUT", Root(SetAccountEmail), to!(keys::set_account_email), Doc {
            id: "set_account_email", summary: "Set the account's e-mail address", tag: "phone-numbers", params: &[ACCOUNT],
            request: body::<EmailBody>(),
            answers: &[answer("200", "Set", &[json::<EmailSetBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/verifications", "start_verification", &[
        op("POST", Key(SendCodes), to!(verifications::start), Doc {
            id: "start_verification", summary: "Send a code", tag: "verifications", params: &[IDEMPOTENT_SEND],
            request: body::<StartBody>(),
            answers: &[
                answer("201", "A new verification; the code is on its way", &[json::<VerificationBody>()]),
                answer("200", "A resend of the pending verification (same id, fresh code), or an idempotent replay", &[json::<VerificationBody>()]),
                problem("503", "`unavailable`: the store is unreachable and nothing was changed; `outcome-unknown`: the store did not answer in time, the verification may have been created (retry with the same Idempotency-Key)"),
                PROBLEM,
            ],
        }),
    ]),
    row("/v1/verifications/check", "check_verification", &[
        op("POST", Key(SendCodes), to!(verifications::check), Doc {
            id: "check_verification", summary: "Check a code", tag: "verifications", params: &[IDEMPOTENT_CHECK],
            request: body::<CheckBody>(),
            answers: &[
                answer("200", "The outcome of this check: `approved` (with `valid`) only to the check that approved it, `pending` with one attempt less after a wrong code, `expired` or `max_attempts_reached` when this check found or caused it", &[json::<VerificationBody>()]),
                problem("409", "The verification was already final; nothing was counted. The type names its status: `verification-already-approved`, `verification-expired`, `verification-canceled`, `verification-max-attempts-reached`"),
                problem("503", "`unavailable`: nothing was changed; `outcome-unknown`: the check may have counted (and approved): retry with the same Idempotency-Key"),
                PROBLEM,
            ],
        }),
    ]),
    row("/v1/verifications/{param}", "get_verification", &[
        op("GET", Key(SendCodes), to!(verifications::get), Doc {
            id: "get_verification", summary: "Read a verification", tag: "verifications", params: &[VERIFICATION], request: None,
            answers: &[answer("200", "The verification, with its send attempts", &[json::<VerificationBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/verifications/{param}/cancel", "cancel_verification", &[
        op("POST", Key(SendCodes), to!(verifications::cancel), Doc {
            id: "cancel_verification", summary: "Cancel a verification", tag: "verifications", params: &[VERIFICATION], request: None,
            answers: &[answer("200", "Canceled", &[json::<VerificationBody>()]), problem("default", "A problem (409 if already final)")],
        }),
    ]),
    row("/v1/policy", "policy", &[
        op("GET", Key(ReadPolicy), to!(accounts::get_policy), Doc {
            id: "get_policy", summary: "Read the 2FA policy", tag: "policy", params: &[], request: None,
            answers: &[answer("200", "The account's policy", &[json::<PolicyBody>()]), PROBLEM],
        }),
        op("PUT", Key(ManagePeople), to!(accounts::put_policy), Doc {
            id: "put_policy", summary: "Change the 2FA policy", tag: "policy", params: &[],
            request: body::<PutPolicyBody>(),
            answers: &[
                answer("200", "The policy after the change (absent fields stay)", &[json::<PolicyBody>()]),
                problem("default", "A problem (422 `refused` names the rule)"),
            ],
        }),
    ]),
    row("/v1/usage", "usage", &[
        op("GET", Key(ReadUsage), to!(usage::get_usage), Doc {
            id: "get_usage", summary: "Today's messages, caps and abuse blocks", tag: "policy", params: &[], request: None,
            answers: &[answer("200", "Today's (UTC) messages overall and per country, the daily caps, the blocks running", &[json::<UsageBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/users", "users", &[
        op("GET", Key(ManagePeople), to!(lists::users), Doc {
            id: "list_users", summary: "List the users", tag: "users", request: None,
            params: &[PAGE_LIMIT, PAGE_CURSOR],
            answers: &[answer("200", "One page of the account's users by id; phones masked", &[json::<UserPageBody>()]), PROBLEM],
        }),
        op("POST", Key(ManagePeople), to!(accounts::create_user), Doc {
            id: "create_user", summary: "Add a user", tag: "users", params: &[],
            request: body::<CreateUserBody>(),
            answers: &[answer("201", "Added", &[json::<UserBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/users/{param}", "user", &[
        op("GET", Key(ManagePeople), to!(accounts::get_user), Doc {
            id: "get_user", summary: "Read a user", tag: "users", params: &[USER], request: None,
            answers: &[answer("200", "The user", &[json::<UserBody>()]), PROBLEM],
        }),
        op("PATCH", Key(ManagePeople), to!(accounts::patch_user), Doc {
            id: "patch_user", summary: "Change a user", tag: "users", params: &[USER],
            request: body::<PatchUserBody>(),
            answers: &[answer("200", "The user after the change", &[json::<UserBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/users/{param}/factors/{second}", "user_factor", &[
        op("DELETE", Key(ManagePeople), to!(accounts::remove_factor), Doc {
            id: "delete_factor", summary: "Remove a factor", tag: "users", request: None,
            params: &[USER, path("factor", "The factor id"), query("acting_user", false, "The person the key acts for")],
            answers: &[answer("200", "Removed; the user after it", &[json::<UserBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/users/{param}/factors", "user_factors", &[
        op("GET", Key(ManagePeople), to!(lists::factors), Doc {
            id: "list_factors", summary: "List a user's factors", tag: "users", request: None,
            params: &[USER, PAGE_LIMIT, PAGE_CURSOR],
            answers: &[answer("200", "One page of the user's confirmed factors by id", &[json::<FactorPageBody>()]), PROBLEM],
        }),
        op("POST", Key(UseFactors), to!(factors::enrolment), Doc {
            id: "enrol_factor", summary: "Start enrolling a factor", tag: "users", params: &[USER],
            request: body::<EnrolBody>(),
            answers: &[answer("201", "Enrolment started (pending until confirmed)", &[json::<Enrolment>()]), PROBLEM],
        }),
    ]),
    row("/v1/users/{param}/factors/{second}/confirm", "confirm_factor", &[
        op("POST", Key(UseFactors), to!(factors::confirmation), Doc {
            id: "confirm_factor", summary: "Confirm a factor", tag: "users",
            params: &[USER, path("factor", "The pending factor's id")],
            request: body::<ConfirmBody>(),
            answers: &[answer("200", "The factor is active", &[json::<ConfirmedBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/users/{param}/challenges", "challenges", &[
        op("POST", Key(UseFactors), to!(factors::challenges), Doc {
            id: "challenge", summary: "Challenge a factor", tag: "users", params: &[USER],
            request: body::<ChallengeBody>(),
            answers: &[answer("200", "The outcome, or WebAuthn options to sign", &[json::<ChallengeOutcome>()]), PROBLEM],
        }),
    ]),
    row("/v1/passkeys/challenges", "passkey_challenges", &[
        op("POST", Key(UseFactors), to!(passkeys::challenges), Doc {
            id: "passkey_challenge", summary: "Sign in with a passkey (usernameless)", tag: "users", params: &[],
            request: body::<PasskeyChallengeBody>(),
            answers: &[
                answer("200", "Without an assertion: request options with no allowCredentials (user verification required). With one: {valid, user, factor_id, challenge_id}; the challenge is single use", &[json::<PasskeyOptionsBody>(), json::<PasskeyOutcomeBody>()]),
                PROBLEM,
            ],
        }),
    ]),
    row("/v1/users/{param}/recovery-codes", "recovery_codes", &[
        op("POST", Key(UseFactors), to!(factors::recovery_codes), Doc {
            id: "recovery_codes", summary: "Draw new recovery codes", tag: "users", params: &[USER], request: None,
            answers: &[answer("201", "A new set of recovery codes (the old set is void)", &[json::<RecoveryCodesBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/users/{param}/console-invitations", "console_invitations_user", &[
        op("POST", Key(InviteToConsole), to!(console_invitations::for_user), Doc {
            id: "invite_user_to_console", summary: "Invite a user to the console", tag: "console", params: &[USER], request: None,
            answers: &[
                answer("201", "A one-time link (24 h by default) where the user creates a console passkey; shown in this answer only (owner keys)", &[json::<ConsoleInvitationBody>()]),
                PROBLEM,
            ],
        }),
    ]),
    row("/v1/users/{param}/trusted-devices", "user_trusted_devices", &[
        op("GET", Key(ManagePeople), to!(lists::trusted_devices), Doc {
            id: "list_trusted_devices", summary: "List a user's trusted devices", tag: "trusted-devices", request: None,
            params: &[USER, PAGE_LIMIT, PAGE_CURSOR],
            answers: &[answer("200", "One page of the devices trusted now (under the current policy) by id; never a token", &[json::<DevicePageBody>()]), PROBLEM],
        }),
        op("POST", Key(RunLogins), to!(accounts::trust_device), Doc {
            id: "trust_device", summary: "Trust a device", tag: "trusted-devices", params: &[USER],
            request: body::<TrustBody>(),
            answers: &[answer("201", "Trusted; the token is shown once", &[json::<DeviceTrustedBody>()]), PROBLEM],
        }),
        op("DELETE", Key(RevokeDevices), to!(accounts::revoke_devices), Doc {
            id: "revoke_devices", summary: "Revoke every device of a user", tag: "trusted-devices", params: &[USER], request: None,
            answers: &[answer("200", "Every device of the user revoked", &[json::<DevicesRevokedBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/users/{param}/trusted-devices/{second}", "user_trusted_device", &[
        op("DELETE", Key(RevokeDevices), to!(accounts::revoke_device), Doc {
            id: "revoke_device", summary: "Revoke a device", tag: "trusted-devices", params: &[USER, DEVICE], request: None,
            answers: &[answer("200", "Revoked", &[json::<DeviceRevokedBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/trusted-devices/check", "check_trusted_device", &[
        op("POST", Key(RunLogins), to!(accounts::check_device), Doc {
            id: "check_device", summary: "Check a trusted device", tag: "trusted-devices", params: &[],
            request: body::<CheckDeviceBody>(),
            answers: &[answer("200", "Whether the device is trusted now", &[json::<DeviceCheckedBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/logins", "logins", &[
        op("POST", Key(RunLogins), to!(accounts::login), Doc {
            id: "login", summary: "Decide a login", tag: "trusted-devices", params: &[],
            request: body::<LoginBody>(),
            answers: &[answer("200", "allow, challenge or enroll", &[json::<DecisionBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/audit", "audit", &[
        op("GET", Key(ReadAudit), to!(accounts::audit), Doc {
            id: "audit", summary: "Read the audit log", tag: "audit", request: None,
            params: &[AUDIT_LIMIT, query("cursor", false, "`next_cursor` of an earlier page")],
            answers: &[answer("200", "Newest first", &[json::<AuditPageBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/webhooks", "webhooks", &[
        op("POST", Key(ManageWebhooks), to!(events::create), Doc {
            id: "create_webhook", summary: "Register a webhook", tag: "webhooks", params: &[],
            request: body::<CreateWebhookBody>(),
            answers: &[
                answer("201", "Registered; the signing secret is shown once (owner and admin keys)", &[json::<WebhookBody>()]),
                problem("default", "A problem (422 `refused` names the URL rule broken: webhook-url-must-be-https, webhook-target-not-public, webhook-host-unresolvable, webhook-url-malformed; 422 account-limit-reached past events.max_webhooks_per_account)"),
            ],
        }),
        op("GET", Key(ManageWebhooks), to!(events::list), Doc {
            id: "list_webhooks", summary: "List the webhooks", tag: "webhooks", params: &[], request: None,
            answers: &[answer("200", "The account's webhooks, oldest first (no secrets)", &[json::<WebhookListBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/webhooks/{param}", "webhook", &[
        op("GET", Key(ManageWebhooks), to!(events::get), Doc {
            id: "get_webhook", summary: "Read a webhook", tag: "webhooks", params: &[WEBHOOK], request: None,
            answers: &[answer("200", "The webhook (no secret)", &[json::<WebhookBody>()]), PROBLEM],
        }),
        op("DELETE", Key(ManageWebhooks), to!(events::delete), Doc {
            id: "delete_webhook", summary: "Remove a webhook", tag: "webhooks", params: &[WEBHOOK], request: None,
            answers: &[answer("200", "Removed, with its queue and log", &[json::<WebhookDeletedBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/webhooks/{param}/test", "webhook_test", &[
        op("POST", Key(ManageWebhooks), to!(events::test), Doc {
            id: "test_webhook", summary: "Send the test event", tag: "webhooks", params: &[WEBHOOK], request: None,
            answers: &[answer("202", "`io.otpgate.webhook.test` queued for this webhook only", &[json::<WebhookTestBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/webhooks/{param}/deliveries", "webhook_deliveries", &[
        op("GET", Key(ManageWebhooks), to!(events::deliveries), Doc {
            id: "webhook_deliveries", summary: "Read a webhook's deliveries", tag: "webhooks", params: &[WEBHOOK], request: None,
            answers: &[answer("200", "The latest attempts and dead letters, newest first", &[json::<DeliveriesBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/receipts/{param}", "receipt", &[
        op("GET", Receipt, to!(webhooks::receipt), Doc {
            id: "receipt_get", summary: "Meta's subscription check", tag: "receipts", request: None,
            params: &[
                PROVIDER,
                query("hub.mode", false, "Meta's subscription check: subscribe"),
                query("hub.verify_token", false, "Must equal dispatch.receipt_token"),
                query("hub.challenge", false, "Echoed back"),
            ],
            answers: &[answer("200", "Meta's subscription check: the challenge echoed", &[TEXT]), PROBLEM],
        }),
        op("POST", Receipt, to!(webhooks::receipt), Doc {
            id: "receipt_post", summary: "Apply delivery receipts", tag: "receipts",
            params: &[PROVIDER, query("token", false, "The receipt token, for vendors that do not sign")],
            request: Some(Body {
                description: Some("The vendor's own callback body (form or JSON)"),
                content: Content { media: "application/x-www-form-urlencoded", schema: Schema::Text },
            }),
            answers: &[answer("200", "Receipts read and applied", &[json::<ReceiptsAppliedBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/phone-numbers", "phone_numbers", &[
        op("GET", Key(ManagePhoneNumbers), to!(lists::phone_numbers), Doc {
            id: "list_phone_numbers", summary: "List the phone numbers", tag: "phone-numbers", request: None,
            params: &[PAGE_LIMIT, PAGE_CURSOR],
            answers: &[answer("200", "One page of the account's numbers by id, masked, with PIN and lock state", &[json::<NumberPageBody>()]), PROBLEM],
        }),
        op("POST", Key(ManagePhoneNumbers), to!(pins::add_number), Doc {
            id: "add_phone_number", summary: "Add a phone number", tag: "phone-numbers", params: &[],
            request: body::<AddBody>(),
            answers: &[answer("201", "Added, two-step on", &[json::<NumberBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/phone-numbers/{param}", "phone_number", &[
        op("GET", Key(ManagePhoneNumbers), to!(pins::get_number), Doc {
            id: "get_phone_number", summary: "Read a phone number", tag: "phone-numbers", params: &[NUMBER], request: None,
            answers: &[answer("200", "The number", &[json::<NumberBody>()]), PROBLEM],
        }),
        op("POST", Key(SetPins), to!(pins::set_pin), Doc {
            id: "set_pin", summary: "Set or change the PIN", tag: "phone-numbers", params: &[NUMBER],
            request: body::<PinBody>(),
            answers: &[answer("200", "PIN set or changed", &[json::<Success>()]), PROBLEM],
        }),
    ]),
    row("/v1/phone-numbers/{param}/register", "register_phone_number", &[
        op("POST", Key(RegisterNumbers), to!(pins::register), Doc {
            id: "register_phone_number", summary: "Register a phone number", tag: "phone-numbers", params: &[NUMBER],
            request: body::<RegisterBody>(),
            answers: &[answer("200", "Registered", &[json::<Success>()]), problem("default", "A problem (wrong PINs are limited)")],
        }),
    ]),
    row("/v1/phone-numbers/{param}/two-step/disable-requests", "two_step_disable_requests", &[
        op("POST", Key(AskTwoStepLinks), to!(pins::disable_request), Doc {
            id: "disable_requests", summary: "E-mail a link that disables two-step", tag: "phone-numbers", params: &[NUMBER], request: None,
            answers: &[
                answer("202", "A one-time link was e-mailed (owner/admin only)", &[json::<LinkSentBody>()]),
                problem("default", "A problem (partners: 403)"),
            ],
        }),
    ]),
    row("/v1/phone-numbers/{param}/two-step/reset-requests", "two_step_reset_requests", &[
        op("POST", Key(AskTwoStepLinks), to!(pins::reset_request), Doc {
            id: "reset_requests", summary: "E-mail a link that resets the PIN", tag: "phone-numbers", params: &[NUMBER], request: None,
            answers: &[answer("202", "A one-time link was e-mailed", &[json::<LinkSentBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/two-step/confirm", "two_step_confirm", &[
        op("GET", Link, to!(pins::confirm_link), Doc {
            id: "confirm_link_get", summary: "Disable two-step by the e-mailed link", tag: "phone-numbers", params: &[LINK_TOKEN], request: None,
            answers: &[answer("200", "Two-step disabled", &[json::<LinkOutcomeBody>()]), PROBLEM],
        }),
        op("POST", Link, to!(pins::confirm_link), Doc {
            id: "confirm_link_post", summary: "Disable two-step by the e-mailed link", tag: "phone-numbers", params: &[LINK_TOKEN], request: None,
            answers: &[answer("200", "Two-step disabled", &[json::<LinkOutcomeBody>()]), PROBLEM],
        }),
    ]),
    row("/v1/two-step/reset", "two_step_reset", &[
        op("GET", Link, to!(pins::peek_reset_link), Doc {
            id: "reset_link_get", summary: "Read what a reset link will do", tag: "phone-numbers", params: &[LINK_TOKEN], request: None,
            answers: &[answer("200", "What the link will do", &[json::<LinkOutcomeBody>()]), PROBLEM],
        }),
        op("POST", Link, to!(pins::reset_link), Doc {
            id: "reset_link_post", summary: "Reset the PIN by the e-mailed link", tag: "phone-numbers", params: &[LINK_TOKEN],
            request: body::<PinBody>(),
            answers: &[answer("200", "New PIN set, two-step on", &[json::<LinkOutcomeBody>()]), PROBLEM],
        }),
    ]),
    // Any other two-segment path: `find` keeps it only when the first segment is a Graph version
    // (`v24.0`); static routes win over it.
    row("/{param}/{second}", "graph_phone_number", &[
        op("GET", Graph, to!(graph::get_number), Doc {
            id: "graph_get_number", summary: "Read a number (Graph API)", tag: "phone-numbers", params: &[GRAPH_VERSION, GRAPH_NUMBER], request: None,
            answers: &[answer("200", "The number's Graph fields", &[json::<GraphNumberBody>()]), graph_error("A Graph error object")],
        }),
        op("POST", Graph, to!(graph::set_pin), Doc {
            id: "graph_set_pin", summary: "Set the PIN (Graph API)", tag: "phone-numbers", params: &[GRAPH_VERSION, GRAPH_NUMBER],
            request: body::<PinBody>(),
            answers: &[answer("200", "The Graph API's answer", &[json::<Success>()]), graph_error("A Graph error object (100, 190, 10, 133016, 2500)")],
        }),
    ]),
    row("/{param}/{second}/register", "graph_register", &[
        op("POST", Graph, to!(graph::register), Doc {
            id: "graph_register", summary: "Register a number (Graph API)", tag: "phone-numbers", params: &[GRAPH_VERSION, GRAPH_NUMBER],
            request: body::<RegisterBody>(),
            answers: &[answer("200", "Registered", &[json::<Success>()]), graph_error("A Graph error object (133005 PIN mismatch, 133016 rate limit)")],
        }),
    ]),
    // The Twilio Verify v2 facade: Twilio documents it.
    row("/v2/Services", "twilio_services", &[undocumented("GET", Twilio, to!(twilio::get_services)), undocumented("POST", Twilio, to!(twilio::post_services))]),
    row("/v2/Services/{param}", "twilio_service", &[undocumented("GET", Twilio, to!(twilio::get_service))]),
    row("/v2/Services/{param}/Verifications", "twilio_start_verification", &[undocumented("POST", Twilio, to!(twilio::post_verifications))]),
    row("/v2/Services/{param}/Verifications/{second}", "twilio_verification", &[undocumented("GET", Twilio, to!(twilio::get_verification)), undocumented("POST", Twilio, to!(twilio::post_verification))]),
    row("/v2/Services/{param}/VerificationCheck", "twilio_check_verification", &[undocumented("POST", Twilio, to!(twilio::post_verification_check))]),
    row("/v2/Services/{param}/Passkeys/Factors", "twilio_passkey_factors", &[undocumented("POST", Twilio, to!(twilio_passkeys::post_factors))]),
    row("/v2/Services/{param}/Passkeys/VerifyFactor", "twilio_passkey_verify_factor", &[undocumented("POST", Twilio, to!(twilio_passkeys::post_verify_factor))]),
    row("/v2/Services/{param}/Passkeys/Challenges", "twilio_passkey_challenges", &[undocumented("POST", Twilio, to!(twilio_passkeys::post_challenges))]),
    row("/v2/Services/{param}/Passkeys/ApproveChallenge", "twilio_passkey_approve_challenge", &[undocumented("POST", Twilio, to!(twilio_passkeys::post_approve_challenge))]),
];

/// `GET /openapi.json`: the document of this table.
async fn openapi_json(_: Call<'_>) -> Reply {
    Ok(super::openapi::response(document()))
}

/// The OpenAPI document of the table, rendered once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| super::openapi::render(TABLE))
}

/// Every method `entry` accepts, for 405 and `Allow` (`GET, POST`): joined once for the whole
/// table, beside the matcher.
pub fn allow(entry: &Entry) -> &'static str {
    static ALLOW: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    let allow = ALLOW.get_or_init(|| {
        TABLE
            .iter()
            .map(|row| (row.name, row.methods().collect::<Vec<_>>().join(", ")))
            .collect()
    });
    allow.get(entry.name).map_or("GET", String::as_str)
}

/// Every path of the route table with its row, for the OpenAPI document's completeness test
/// and for benches.
pub fn table() -> &'static [(&'static str, &'static Entry)] {
    static PATHS: OnceLock<Vec<(&'static str, &'static Entry)>> = OnceLock::new();
    PATHS.get_or_init(|| TABLE.iter().map(|entry| (entry.path, entry)).collect())
}

fn router() -> &'static Router<&'static Entry> {
    static ROUTER: OnceLock<Router<&'static Entry>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut router = Router::new();
        for entry in TABLE {
            router
                .insert(entry.path, entry)
                .expect("the route table is a constant without conflicts; the unit tests hold it");
        }
        router
    })
}

/// The route of `path` (as it came, percent-encoded) with its parameters decoded once.
pub fn find(path: &str) -> Found<'_> {
    match router().at(path) {
        Ok(matched) if graph_version_or_other(&matched) => {
            let mut refused = None;
            let mut decode = |name: &str| {
                let raw = matched.params.get(name)?;
                match decode_segment(raw) {
                    Ok(decoded) => Some(decoded),
                    Err(reason) => {
                        refused = Some(reason);
                        None
                    }
                }
            };
            let param = decode("param");
            let second = decode("second");
            Found {
                route: matched.value,
                param,
                second,
                refused,
            }
        }
        _ => Found {
            route: &NOT_FOUND,
            param: None,
            second: None,
            refused: None,
        },
    }
}

/// The Graph routes match any first segment; they exist only for `v<digits>.<digits>`
/// versions (which of those Graph serves is `graph.rs`'s concern: it answers Graph's error).
fn graph_version_or_other(matched: &matchit::Match<'_, '_, &&'static Entry>) -> bool {
    !matched.value.is_graph()
        || matched
            .params
            .get("param")
            .is_some_and(crate::pin::is_graph_version)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
