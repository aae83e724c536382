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
use super::wire_pins::*;
use crate::account::permission::Permission;

/// A handler of the table: an `async fn(Call) -> Reply`, boxed.
macro_rules! to {
    ($handler:path) => {
        |call| Box::pin($handler(call))
    };
}

use super::{
    accounts, events, factors, graph, keys, operations, passkeys, pins, sdk, twilio, usage,
    verifications, webhooks,
};
use Access::{Graph, Key, Link, Open, Receipt, Root, RootOrKey, Twilio};
use Permission::{
    AskTwoStepLinks, CreateAccounts, ManagePeople, ManagePhoneNumbers, ManageWebhooks, MintKeys,
    ReadAudit, ReadPolicy, ReadUsage, RegisterNumbers, RevokeDevices, RunLogins, SendCodes,
    SetAccountEmail, SetPins, UseFactors,
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
    row("/v1/users/{param}/trusted-devices", "user_trusted_devices", &[
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
mod tests {
    use super::*;
    use crate::http::doc::Place;
    use crate::http::routes::*;

    fn named(name: &str) -> &'static Entry {
        TABLE.iter().find(|entry| entry.name == name).expect(name)
    }

    #[test]
    fn static_segments_win_over_parameters() {
        assert_eq!(
            find("/v1/verifications/check").route.name,
            "check_verification"
        );
        let found = find("/v1/verifications/VE00abc");
        let matched = found.matched();
        assert_eq!(matched.route.name, "get_verification");
        assert_eq!(matched.param, Some("VE00abc"));
    }

    #[test]
    fn account_routes_carry_both_ids_and_accept_their_methods() {
        let found = find("/v1/users/alice@example.com/trusted-devices/TD00");
        let matched = found.matched();
        assert_eq!(matched.route.name, "user_trusted_device");
        assert_eq!(matched.param, Some("alice@example.com"));
        assert_eq!(matched.second, Some("TD00"));
        assert!(named("policy").accepts("PUT") && named("policy").accepts("GET"));
        assert!(!named("policy").accepts("POST"));
        assert_eq!(
            find("/v1/trusted-devices/check").route.name,
            "check_trusted_device"
        );
    }

    #[test]
    fn the_graph_route_never_shadows_the_others() {
        let found = find("/v24.0/106540352242922");
        let matched = found.matched();
        assert_eq!(matched.route.name, "graph_phone_number");
        assert_eq!(matched.second, Some("106540352242922"));
        assert_eq!(find("/v1/audit").route.name, "audit");
        assert_eq!(find("/v1/policy").route.name, "policy");
        assert_eq!(find("/v1/users").route.name, "users");
        assert_eq!(find("/v1/logins").route.name, "logins");
        assert_eq!(find("/v1/verifications").route.name, "start_verification");
        assert_eq!(find("/healthz").route.name, "healthz");
        assert_eq!(find("/v1/phone-numbers").route.name, "phone_numbers");
        assert_eq!(
            find("/v1/phone-numbers/106540352242922").route.name,
            "phone_number"
        );
        for not_graph in [
            "/v1/106540352242922",
            "/v2/nothing",
            "/healthz/x",
            "/x/y",
            "/v24/1",
        ] {
            assert_eq!(find(not_graph).route.name, "not_found", "{not_graph}");
        }
    }

    #[test]
    fn factor_routes_carry_the_user_and_the_factor() {
        let found = find("/v1/users/alice/factors/FA01/confirm");
        let matched = found.matched();
        assert_eq!(matched.route.name, "confirm_factor");
        assert_eq!(matched.param, Some("alice"));
        assert_eq!(matched.second, Some("FA01"));
        assert_eq!(find("/v1/users/alice/factors").route.name, "user_factors");
        assert_eq!(
            find("/v1/users/alice/factors/FA01").route.name,
            "user_factor"
        );
        assert_eq!(find("/v1/users/alice/challenges").route.name, "challenges");
        assert_eq!(
            find("/v1/users/alice/recovery-codes").route.name,
            "recovery_codes"
        );
    }

    #[test]
    fn parameters_are_percent_decoded_once() {
        let found = find("/v1/users/ada.lovelace%2B2fa%40example.com/factors/FA%30%31");
        assert_eq!(found.refused, None);
        let matched = found.matched();
        assert_eq!(matched.route.name, "user_factor");
        assert_eq!(matched.param, Some("ada.lovelace+2fa@example.com"));
        assert_eq!(matched.second, Some("FA01"));
        assert_eq!(
            find("/v1/users/plain%2Euser").matched().param,
            Some("plain.user")
        );
        // Once: an encoded percent sign stays a percent sign.
        assert_eq!(find("/v1/users/a%252Eb").matched().param, Some("a%2Eb"));
        assert!(matches!(
            find("/v1/users/plain").matched().param,
            Some("plain")
        ));
    }

    #[test]
    fn parameters_that_decode_to_dot_segments_slashes_controls_or_non_utf8_are_refused() {
        for path in [
            "/v1/users/%2E",
            "/v1/users/%2e%2E",
            "/v1/users/.",
            "/v1/users/..",
            "/v1/users/a%2Fb",
            "/v1/users/a%00b",
            "/v1/users/a%0Ab",
            "/v1/users/a%7Fb",
            "/v1/users/a%C2%85b",
            "/v1/users/%FF",
            "/v1/users/alice/factors/%2E%2E",
            "/v2/Services/VA%2F..",
        ] {
            let found = find(path);
            assert_ne!(found.route.name, "not_found", "{path}");
            assert_eq!(found.refused, Some(REFUSED_PARAMETER), "{path}");
        }
        assert_eq!(find("/v1/users/alice").refused, None);
    }

    #[test]
    fn every_route_has_one_row_and_allows_its_methods() {
        for entry in TABLE {
            let rows = TABLE.iter().filter(|other| other.name == entry.name);
            assert_eq!(rows.count(), 1, "{}", entry.name);
            assert!(!entry.is_not_found(), "{}", entry.name);
        }
        assert_eq!(NOT_FOUND.name, "not_found");
        assert_eq!(allow(named("policy")), "GET, PUT");
        assert_eq!(allow(named("user_trusted_devices")), "POST, DELETE");
        assert_eq!(allow(named("check_verification")), "POST");
        assert_eq!(allow(named("get_verification")), "GET");
        assert!(named("twilio_verification").is_twilio() && named("graph_register").is_graph());
    }

    #[test]
    fn each_documented_method_names_its_path_parameters_and_has_a_unique_id() {
        let mut ids = std::collections::HashSet::new();
        for entry in TABLE {
            let in_path = entry.path.matches('{').count();
            for (verb, _, doc) in entry.documented() {
                let named = doc.params.iter().filter(|param| param.place == Place::Path);
                assert_eq!(named.count(), in_path, "{verb} {}", entry.path);
                assert!(ids.insert(doc.id), "{} twice", doc.id);
            }
            // Only the Twilio facade is left out, and it is left out whole.
            assert_eq!(
                entry.documented().count() == 0,
                entry.is_twilio(),
                "{}",
                entry.name
            );
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_open_routes_need_no_key() {
        let document: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(
            document["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(document["paths"]["/v1/verifications"]["post"].is_object());
        let open = &document["paths"]["/healthz"]["get"]["security"];
        assert_eq!(open, &serde_json::json!([{}]));
        assert!(
            document["paths"]["/v1/users/{user}/factors/{factor}"]["delete"]["security"].is_null()
        );
        for schema in ["Problem", "Verification", "GraphErrorBody", "SendAttempt"] {
            assert!(
                document["components"]["schemas"][schema].is_object(),
                "{schema}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_not_found() {
        assert_eq!(find("/v2/nothing").route.name, "not_found");
        assert_eq!(find("/v1/verifications/a/b/c").route.name, "not_found");
    }
}
