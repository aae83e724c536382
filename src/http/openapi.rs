//! The OpenAPI 3.1 document of the v1 API, served at `GET /openapi.json`.
//!
//! Built with utoipa from the wire types (`wire*.rs`: the handlers' own request and response
//! types where they have moved there), under their published names; each operation is an empty
//! public function below that carries its `#[utoipa::path]`. `tests/api/openapi.rs` checks that
//! every path of the route table (except the Twilio facade, documented by Twilio) is in it and
//! that real answers have exactly their schema's properties, and `scripts/compat` fuzzes the
//! running server against it with schemathesis. Errors are `application/problem+json` under
//! `default`.

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

// The wire types, under the names the paths below give them.
use super::wire::{
    AccountBody as AccountCreated, CheckBody as CheckVerification,
    CreateAccountBody as CreateAccount, CreateKeyBody as CreateKey, CreateUserBody as CreateUser,
    KeyBody as KeyCreated, PatchUserBody as PatchUser, PolicyBody as Policy,
    PutPolicyBody as PolicyUpdate, StartBody as StartVerification, UserBody as User,
    VerificationBody as Verification,
};
use super::wire::{
    AuditPageBody as AuditPage, CheckDeviceBody as CheckDevice, DecisionBody as LoginDecision,
    DeviceCheckedBody as DeviceChecked, DeviceRevokedBody as DeviceRevoked,
    DeviceTrustedBody as DeviceTrusted, DevicesRevokedBody as DevicesRevoked,
    LoginBody as LoginRequest, TrustBody as TrustDevice,
};
use super::wire_factors::{
    ChallengeBody as ChallengeRequest, ChallengeOutcome, ConfirmBody as ConfirmFactor,
    ConfirmedBody as FactorConfirmed, EnrolBody as EnrolFactor, Enrolment,
    RecoveryCodesBody as RecoveryCodes,
};
use super::wire_pins::{
    AddBody as AddPhoneNumber, EmailBody as AccountEmail, EmailSetBody as AccountEmailSet,
    GraphErrorBody, GraphNumberBody as GraphNumber, LinkOutcomeBody as LinkOutcome,
    LinkSentBody as LinkSent, NumberBody as PhoneNumberRecord, PinBody as PinRequest,
    ReceiptsAppliedBody as ReceiptsApplied, RegisterBody as RegisterRequest, Success,
};

/// The document as JSON, rendered once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            // Serialising a document of plain maps and strings cannot fail.
            .unwrap_or_else(|_| "{}".to_owned())
    })
}

pub(super) fn response() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(document().as_bytes())));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "otpgate",
        description = "A self-hosted two-factor verification gateway: one-time codes by SMS and WhatsApp, account 2FA policy, users, trusted devices and login decisions. Errors are RFC 9457 problem details (`application/problem+json`) with `type` = `urn:otpgate:problem:<slug>`. A Twilio Verify v2 compatible facade is served under `/v2/Services` (see the README).",
        license(name = "Apache-2.0")
    ),
    paths(
        healthz, readyz, metrics, openapi_json,
        create_account, create_key,
        start_verification, check_verification, get_verification, cancel_verification,
        get_policy, put_policy,
        create_user, get_user, patch_user, delete_factor,
        trust_device, revoke_devices, revoke_device, check_device,
        login, audit,
        receipt_post, receipt_get,
        set_account_email, add_phone_number, get_phone_number, set_pin, register_phone_number,
        disable_requests, reset_requests, confirm_link_get, confirm_link_post, reset_link_get,
        reset_link_post, graph_set_pin, graph_get_number, graph_register,
        enrol_factor, confirm_factor, challenge, recovery_codes,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "accounts", description = "Accounts and keys (root key; owners mint keys)"),
        (name = "verifications", description = "One-time codes: send, check, read, cancel"),
        (name = "policy", description = "The account's 2FA policy"),
        (name = "users", description = "People of an account and their factors"),
        (name = "trusted-devices", description = "Remembered devices and login decisions"),
        (name = "audit", description = "Who changed what"),
        (name = "receipts", description = "Delivery receipts from SMS providers (signed or token)"),
        (name = "phone-numbers", description = "Phone-number two-step PINs (WhatsApp Business style)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An account key (`ogk_…`, roles owner, admin, service, partner) or the operator's root key",
                    ))
                    .build(),
            ),
        );
    }
}

// ---- schemas (the wire format) ----

/// An RFC 9457 problem.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `urn:otpgate:problem:<slug>`: invalid-request, unauthorized, forbidden, not-found,
    /// method-not-allowed, request-timeout, conflict, payload-too-large, unsupported-media-type,
    /// rate-limited, send-quota-exceeded, max-sends-reached, refused, account-limit-reached,
    /// internal, unavailable (nothing was changed), outcome-unknown (the request may or may not
    /// have taken effect: retry it with the same Idempotency-Key), verification-already-approved,
    /// verification-expired, verification-canceled, verification-max-attempts-reached (a check of
    /// a final verification, which counts nothing).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The account rule that refused a request (422 `refused`).
    pub rule: Option<String>,
    /// Users concerned by a refusal (those without a phone).
    pub users: Option<Vec<String>>,
    /// The account's bound that was reached (`account-limit-reached`): users, phone_numbers,
    /// factors_per_user, pending_ceremonies, verifications, factor_entries.
    pub limit: Option<String>,
    /// That bound's value (`account-limit-reached`).
    pub max: Option<u64>,
}

// ---- operations ----

#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses(
        (status = 200, description = "The process is up", body = String, content_type = "text/plain"),
        (status = "default", description = "Not alive (503: the store client has answered nothing for `store.client_unhealthy_after_ms` while Redis answers; restart the process)", body = Problem, content_type = "application/problem+json")))]
pub fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "The store answers (and, with Redis, the outbox is readable)", body = String, content_type = "text/plain"),
        (status = "default", description = "Not ready (503: the store is unreachable, a Redis Cluster shard's master has been unreachable for `store.shard_down_grace_ms`, or the outbox has not been readable for longer than dispatch.outbox_unready_after_ms)", body = Problem, content_type = "application/problem+json")))]
pub fn readyz() {}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "This document", body = Object)))]
pub fn openapi_json() {}

#[utoipa::path(post, path = "/v1/accounts", tag = "accounts",
    request_body = CreateAccount,
    responses(
        (status = 201, description = "Created (root key only)", body = AccountCreated),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn create_account() {}

#[utoipa::path(post, path = "/v1/accounts/{account}/keys", tag = "accounts",
    params(("account" = String, Path, description = "The account id (`AC…`)")),
    request_body = CreateKey,
    responses(
        (status = 201, description = "Minted (root key or the account's owner)", body = KeyCreated),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn create_key() {}

#[utoipa::path(post, path = "/v1/verifications", tag = "verifications",
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters, scoped to the account and the number `to`: a retry with the same key and number replays the first answer (`Idempotent-Replayed: true`) and sends nothing; the same key for another number starts a new verification")),
    request_body = StartVerification,
    responses(
        (status = 201, description = "A new verification; the code is on its way", body = Verification),
        (status = 200, description = "A resend of the pending verification (same id, fresh code), or an idempotent replay", body = Verification),
        (status = 503, description = "`unavailable`: the store is unreachable and nothing was changed; `outcome-unknown`: the store did not answer in time, the verification may have been created (retry with the same Idempotency-Key)", body = Problem, content_type = "application/problem+json"),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn start_verification() {}

#[utoipa::path(post, path = "/v1/verifications/check", tag = "verifications",
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters, scoped to the account and the verification's number: the first check that counts records its outcome under the key, and a retry with the key answers that outcome again (an approval too, `Idempotent-Replayed: true`) and counts nothing; the key used for a check of another verification is refused (422)")),
    request_body = CheckVerification,
    responses(
        (status = 200, description = "The outcome of this check: `approved` (with `valid`) only to the check that approved it, `pending` with one attempt less after a wrong code, `expired` or `max_attempts_reached` when this check found or caused it", body = Verification),
        (status = 409, description = "The verification was already final; nothing was counted. The type names its status: `verification-already-approved`, `verification-expired`, `verification-canceled`, `verification-max-attempts-reached`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: nothing was changed; `outcome-unknown`: the check may have counted (and approved): retry with the same Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn check_verification() {}

#[utoipa::path(get, path = "/v1/verifications/{id}", tag = "verifications",
    params(("id" = String, Path, description = "The verification id (`VE…`)")),
    responses(
        (status = 200, description = "The verification, with its send attempts", body = Verification),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn get_verification() {}

#[utoipa::path(post, path = "/v1/verifications/{id}/cancel", tag = "verifications",
    params(("id" = String, Path, description = "The verification id (`VE…`)")),
    responses(
        (status = 200, description = "Canceled", body = Verification),
        (status = "default", description = "A problem (409 if already final)", body = Problem, content_type = "application/problem+json")))]
pub fn cancel_verification() {}

#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    responses(
        (status = 200, description = "The account's policy", body = Policy),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn get_policy() {}

#[utoipa::path(put, path = "/v1/policy", tag = "policy",
    request_body = PolicyUpdate,
    responses(
        (status = 200, description = "The policy after the change (absent fields stay)", body = Policy),
        (status = "default", description = "A problem (422 `refused` names the rule)", body = Problem, content_type = "application/problem+json")))]
pub fn put_policy() {}

#[utoipa::path(post, path = "/v1/users", tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, description = "Added", body = User),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn create_user() {}

#[utoipa::path(get, path = "/v1/users/{user}", tag = "users",
    params(("user" = String, Path, description = "The user id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn get_user() {}

#[utoipa::path(patch, path = "/v1/users/{user}", tag = "users",
    params(("user" = String, Path, description = "The user id")),
    request_body = PatchUser,
    responses(
        (status = 200, description = "The user after the change", body = User),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn patch_user() {}

#[utoipa::path(delete, path = "/v1/users/{user}/factors/{factor}", tag = "users",
    params(
        ("user" = String, Path, description = "The user id"),
        ("factor" = String, Path, description = "The factor id"),
        ("acting_user" = Option<String>, Query, description = "The person the key acts for")),
    responses(
        (status = 200, description = "Removed; the user after it", body = User),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn delete_factor() {}

#[utoipa::path(post, path = "/v1/users/{user}/trusted-devices", tag = "trusted-devices",
    params(("user" = String, Path, description = "The user id")),
    request_body = TrustDevice,
    responses(
        (status = 201, description = "Trusted; the token is shown once", body = DeviceTrusted),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn trust_device() {}

#[utoipa::path(delete, path = "/v1/users/{user}/trusted-devices", tag = "trusted-devices",
    params(("user" = String, Path, description = "The user id")),
    responses(
        (status = 200, description = "Every device of the user revoked", body = DevicesRevoked),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn revoke_devices() {}

#[utoipa::path(delete, path = "/v1/users/{user}/trusted-devices/{device}", tag = "trusted-devices",
    params(
        ("user" = String, Path, description = "The user id"),
        ("device" = String, Path, description = "The device id")),
    responses(
        (status = 200, description = "Revoked", body = DeviceRevoked),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn revoke_device() {}

#[utoipa::path(post, path = "/v1/trusted-devices/check", tag = "trusted-devices",
    request_body = CheckDevice,
    responses(
        (status = 200, description = "Whether the device is trusted now", body = DeviceChecked),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn check_device() {}

#[utoipa::path(post, path = "/v1/logins", tag = "trusted-devices",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "allow, challenge or enroll", body = LoginDecision),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn login() {}

#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 500, default 50", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of an earlier page")),
    responses(
        (status = 200, description = "Newest first", body = AuditPage),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn audit() {}

#[utoipa::path(post, path = "/v1/receipts/{provider}", tag = "receipts", security(()),
    params(
        ("provider" = String, Path, description = "The provider's configured name"),
        ("token" = Option<String>, Query, description = "The receipt token, for vendors that do not sign")),
    request_body(content = String, description = "The vendor's own callback body (form or JSON)", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Receipts read and applied", body = ReceiptsApplied),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn receipt_post() {}

#[utoipa::path(get, path = "/v1/receipts/{provider}", tag = "receipts", security(()),
    params(
        ("provider" = String, Path, description = "The provider's configured name"),
        ("hub.mode" = Option<String>, Query, description = "Meta's subscription check: subscribe"),
        ("hub.verify_token" = Option<String>, Query, description = "Must equal dispatch.receipt_token"),
        ("hub.challenge" = Option<String>, Query, description = "Echoed back")),
    responses(
        (status = 200, description = "Meta's subscription check: the challenge echoed", body = String, content_type = "text/plain"),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn receipt_get() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_the_bearer_scheme() {
        let document: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(
            document["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(document["paths"]["/v1/verifications"]["post"].is_object());
    }
}

// ---- phone-number two-step PINs ----

#[utoipa::path(put, path = "/v1/accounts/{account}/email", tag = "phone-numbers",
    params(("account" = String, Path, description = "The account id (`AC…`)")),
    request_body = AccountEmail,
    responses(
        (status = 200, description = "Set", body = AccountEmailSet),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn set_account_email() {}

#[utoipa::path(post, path = "/v1/phone-numbers", tag = "phone-numbers",
    request_body = AddPhoneNumber,
    responses(
        (status = 201, description = "Added, two-step on", body = PhoneNumberRecord),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn add_phone_number() {}

#[utoipa::path(get, path = "/v1/phone-numbers/{id}", tag = "phone-numbers",
    params(("id" = String, Path, description = "The phone-number id")),
    responses(
        (status = 200, description = "The number", body = PhoneNumberRecord),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn get_phone_number() {}

#[utoipa::path(post, path = "/v1/phone-numbers/{id}", tag = "phone-numbers",
    params(("id" = String, Path, description = "The phone-number id")),
    request_body = PinRequest,
    responses(
        (status = 200, description = "PIN set or changed", body = Success),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn set_pin() {}

#[utoipa::path(post, path = "/v1/phone-numbers/{id}/register", tag = "phone-numbers",
    params(("id" = String, Path, description = "The phone-number id")),
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered", body = Success),
        (status = "default", description = "A problem (wrong PINs are limited)", body = Problem, content_type = "application/problem+json")))]
pub fn register_phone_number() {}

#[utoipa::path(post, path = "/v1/phone-numbers/{id}/two-step/disable-requests", tag = "phone-numbers",
    params(("id" = String, Path, description = "The phone-number id")),
    responses(
        (status = 202, description = "A one-time link was e-mailed (owner/admin only)", body = LinkSent),
        (status = "default", description = "A problem (partners: 403)", body = Problem, content_type = "application/problem+json")))]
pub fn disable_requests() {}

#[utoipa::path(post, path = "/v1/phone-numbers/{id}/two-step/reset-requests", tag = "phone-numbers",
    params(("id" = String, Path, description = "The phone-number id")),
    responses(
        (status = 202, description = "A one-time link was e-mailed", body = LinkSent),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn reset_requests() {}

#[utoipa::path(get, path = "/v1/two-step/confirm", tag = "phone-numbers", security(()),
    params(("token" = String, Query, description = "The e-mailed single-use token")),
    responses(
        (status = 200, description = "Two-step disabled", body = LinkOutcome),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn confirm_link_get() {}

#[utoipa::path(post, path = "/v1/two-step/confirm", tag = "phone-numbers", security(()),
    params(("token" = String, Query, description = "The e-mailed single-use token")),
    responses(
        (status = 200, description = "Two-step disabled", body = LinkOutcome),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn confirm_link_post() {}

#[utoipa::path(get, path = "/v1/two-step/reset", tag = "phone-numbers", security(()),
    params(("token" = String, Query, description = "The e-mailed single-use token")),
    responses(
        (status = 200, description = "What the link will do", body = LinkOutcome),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn reset_link_get() {}

#[utoipa::path(post, path = "/v1/two-step/reset", tag = "phone-numbers", security(()),
    params(("token" = String, Query, description = "The e-mailed single-use token")),
    request_body = PinRequest,
    responses(
        (status = 200, description = "New PIN set, two-step on", body = LinkOutcome),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn reset_link_post() {}

#[utoipa::path(post, path = "/{version}/{phone_number_id}", tag = "phone-numbers",
    params(
        ("version" = String, Path, description = "A Graph API version: v22.0 to v26.0"),
        ("phone_number_id" = String, Path, description = "The phone-number id")),
    request_body = PinRequest,
    responses(
        (status = 200, description = "The Graph API's answer", body = Success),
        (status = "default", description = "A Graph error object (100, 190, 10, 133016, 2500)", content((GraphErrorBody = "application/json"), (Problem = "application/problem+json")))))]
pub fn graph_set_pin() {}

#[utoipa::path(get, path = "/{version}/{phone_number_id}", tag = "phone-numbers",
    params(
        ("version" = String, Path, description = "A Graph API version: v22.0 to v26.0"),
        ("phone_number_id" = String, Path, description = "The phone-number id")),
    responses(
        (status = 200, description = "The number's Graph fields", body = GraphNumber),
        (status = "default", description = "A Graph error object", content((GraphErrorBody = "application/json"), (Problem = "application/problem+json")))))]
pub fn graph_get_number() {}

#[utoipa::path(post, path = "/{version}/{phone_number_id}/register", tag = "phone-numbers",
    params(
        ("version" = String, Path, description = "A Graph API version: v22.0 to v26.0"),
        ("phone_number_id" = String, Path, description = "The phone-number id")),
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered", body = Success),
        (status = "default", description = "A Graph error object (133005 PIN mismatch, 133016 rate limit)", content((GraphErrorBody = "application/json"), (Problem = "application/problem+json")))))]
pub fn graph_register() {}

// ---- authenticator apps, security keys, recovery codes ----

#[utoipa::path(post, path = "/v1/users/{user}/factors", tag = "users",
    params(("user" = String, Path, description = "The user id")),
    request_body = EnrolFactor,
    responses(
        (status = 201, description = "Enrolment started (pending until confirmed)", body = Enrolment),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn enrol_factor() {}

#[utoipa::path(post, path = "/v1/users/{user}/factors/{factor}/confirm", tag = "users",
    params(
        ("user" = String, Path, description = "The user id"),
        ("factor" = String, Path, description = "The pending factor's id")),
    request_body = ConfirmFactor,
    responses(
        (status = 200, description = "The factor is active", body = FactorConfirmed),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn confirm_factor() {}

#[utoipa::path(post, path = "/v1/users/{user}/challenges", tag = "users",
    params(("user" = String, Path, description = "The user id")),
    request_body = ChallengeRequest,
    responses(
        (status = 200, description = "The outcome, or WebAuthn options to sign", body = ChallengeOutcome),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn challenge() {}

#[utoipa::path(post, path = "/v1/users/{user}/recovery-codes", tag = "users",
    params(("user" = String, Path, description = "The user id")),
    responses(
        (status = 201, description = "A new set of recovery codes (the old set is void)", body = RecoveryCodes),
        (status = "default", description = "A problem", body = Problem, content_type = "application/problem+json")))]
pub fn recovery_codes() {}
