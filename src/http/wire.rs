//! The wire format of the v1 API's accounts, keys, verifications, policy and users: the request
//! bodies the handlers read (`Deserialize`) and the answers they write (`Serialize`), each also a
//! `ToSchema` from which `openapi.rs` writes the document. What a client sees is declared once,
//! here; the schema names (`#[schema(as = …)]`) are those of the published document.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::wire_workflows::{DefaultWorkflowBody, WorkflowBody};
use crate::abuse::guard::DAY_MS;
use crate::abuse::settings::DailyCaps;
use crate::abuse::{AbusePolicy, BlockRule, Usage};
use crate::account::audit::{AuditEntry, Who};
use crate::account::login::Offer;
use crate::account::policy::{ChannelSet, Policy, TrustDuration};
use crate::account::user::{Factor, UserId, UserRole};
use crate::clock::rfc3339;
use crate::verify::model::{SendAttempt, Verification};

// ---- accounts and keys ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateAccount)]
pub struct CreateAccountBody {
    /// 1 to 100 printable characters.
    pub name: String,
    /// Digits per code, the operator's floor (`verification.min_code_length`, default 6) to 10;
    /// default `verification.code_length` (6).
    #[schema(minimum = 4, maximum = 10)]
    pub code_length: Option<u8>,
    /// Where two-step disable and reset links are e-mailed (optional).
    pub email: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AccountCreated)]
pub struct AccountBody<'a> {
    /// `AC` and 32 hex digits.
    pub id: &'a str,
    pub name: &'a str,
    pub code_length: u8,
    pub created_at: String,
    /// Only when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
}

/// A key's role.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    Owner,
    Admin,
    Service,
    Partner,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateKey)]
pub struct CreateKeyBody {
    // A string, parsed by the handler, so that a wrong role gets the API's own 400.
    #[schema(value_type = KeyRole)]
    pub role: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = KeyCreated)]
pub struct KeyBody<'a> {
    /// `KY…`: the key's public id.
    pub id: &'a str,
    pub account_id: &'a str,
    #[schema(value_type = KeyRole)]
    pub role: &'static str,
    /// The key itself (`ogk_…`): shown in this answer only, stored as its SHA-256.
    pub key: &'a str,
    pub created_at: String,
}

// ---- console invitations ----

/// A minted console invitation: the link, shown in this answer only.
#[derive(Serialize, ToSchema)]
#[schema(as = ConsoleInvitation)]
pub struct ConsoleInvitationBody {
    /// Opens the console's invitation page, where the invited person creates a passkey. It
    /// works once; only its SHA-256 is stored.
    pub url: String,
    pub expires_at: String,
}

/// Whom the root key invites: the operator, or a user of an account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RootConsoleInvitation)]
pub struct RootInvitationBody {
    /// `true`: an invitation for the operator (root) itself.
    #[serde(default)]
    pub root: bool,
    pub account: Option<String>,
    pub user: Option<String>,
}

// ---- verifications ----

/// A channel a code is sent by.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Whatsapp,
    /// A voice call that reads the code digit by digit, twice, in the request's locale.
    Call,
    /// A mail; `to` is then an e-mail address.
    Email,
}

/// A verification's status.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    Pending,
    Approved,
    Expired,
    MaxAttemptsReached,
    Canceled,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StartVerification)]
pub struct StartBody {
    /// An E.164 phone number, or an e-mail address for `channel: "email"` (normalised: the
    /// domain lower-cased, in its IDNA ASCII form).
    pub to: String,
    /// The one channel to send by (default: the account's default workflow, else sms).
    /// Exclusive with `channels`.
    #[schema(value_type = Option<Channel>)]
    pub channel: Option<String>,
    /// An ordered workflow: the same code on the first channel, then on the next when a step's
    /// message fails or is not reported delivered within `fallback_after_seconds`. 1 to 5
    /// channels, none twice, each allowed by the account's policy (422
    /// `workflow-channels-allowed-by-policy`). Exclusive with `channel`.
    #[schema(value_type = Option<Vec<Channel>>)]
    pub channels: Option<Vec<String>>,
    /// With `channels`: how long a step waits for its delivery receipt (default 60).
    #[schema(minimum = 5, maximum = 600)]
    pub fallback_after_seconds: Option<u32>,
    /// With `channels` that mix phone channels and `email`: the e-mail address of the e-mail
    /// step, while `to` is the phone number of the others (and keys the verification: a check
    /// by `to` names the number). Only with an e-mail step, and only beside a phone number in
    /// `to` (400 otherwise); normalised like `to`.
    #[schema(example = "ada@example.com")]
    pub email: Option<String>,
    /// A language tag such as `en`, `de`, `pt-BR`.
    pub locale: Option<String>,
    /// More digits than the account's `code_length` if wanted, never fewer (400).
    #[schema(minimum = 4, maximum = 10)]
    pub code_length: Option<u8>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CheckVerification)]
pub struct CheckBody {
    /// The verification id (`VE…`); give exactly one of `id` and `to`.
    pub id: Option<String>,
    /// The number (or e-mail address) of a pending verification.
    pub to: Option<String>,
    /// 4 to 10 digits.
    pub code: String,
}

/// A verification.
#[derive(Serialize, ToSchema)]
#[schema(as = Verification)]
pub struct VerificationBody<'a> {
    /// `VE` and 32 hex digits.
    pub id: &'a str,
    pub account_id: &'a str,
    pub to: &'a str,
    #[schema(value_type = Channel)]
    pub channel: &'static str,
    #[schema(value_type = VerificationStatus)]
    pub status: &'static str,
    /// On checks only: whether this code was right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    pub attempts_left: u32,
    pub send_count: u32,
    pub code_length: u8,
    pub created_at: String,
    pub expires_at: String,
    /// On `GET` only: every message sent for this verification and what became of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_attempts: Option<Vec<AttemptBody<'a>>>,
    /// On `GET` of a verification sent with a workflow: its steps in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowBody>,
}

impl<'a> VerificationBody<'a> {
    pub fn new(verification: &'a Verification, valid: Option<bool>) -> Self {
        Self {
            id: verification.id.as_str(),
            account_id: verification.account.as_str(),
            to: &verification.to,
            channel: verification.channel.as_str(),
            status: verification.status.as_str(),
            valid,
            attempts_left: verification.attempts_left(),
            send_count: verification.sends,
            code_length: verification.code_length,
            created_at: rfc3339(verification.created_ms),
            expires_at: rfc3339(verification.expires_ms),
            send_attempts: None,
            workflow: None,
        }
    }
}

/// One message of a verification: which provider took it and its delivery status.
#[derive(Serialize, ToSchema)]
#[schema(as = SendAttempt)]
pub struct AttemptBody<'a> {
    pub message_id: &'a str,
    pub provider: &'a str,
    /// The message's own entry: accepted, failed (given up), then from receipts queued, sent,
    /// delivered, undelivered, read. One provider's failed try at the message (one entry per
    /// provider, its latest error): provider_error (retryable) or refused.
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    pub created_at: String,
    pub updated_at: String,
}

impl<'a> From<&'a SendAttempt> for AttemptBody<'a> {
    fn from(attempt: &'a SendAttempt) -> Self {
        Self {
            message_id: &attempt.message_id,
            provider: &attempt.provider,
            status: &attempt.status,
            provider_message_id: attempt.provider_message_id.as_deref(),
            error: attempt.error.as_deref(),
            created_at: rfc3339(attempt.created_ms),
            updated_at: rfc3339(attempt.updated_ms),
        }
    }
}

// ---- policy ----

#[derive(Serialize, ToSchema)]
#[schema(as = Policy)]
pub struct PolicyBody {
    pub require_2fa: bool,
    /// Subset of sms, whatsapp, call, email, totp, webauthn (any phone channel needs every user
    /// to have a phone number, email every user an e-mail address).
    #[schema(value_type = Vec<String>)]
    pub channels: ChannelSet,
    pub sms_fallback: bool,
    /// none, 1d, 7d, 30d.
    #[schema(value_type = String)]
    pub trusted_device: TrustDuration,
    /// The account's own abuse protection: only the members it overrides (`{}`: the
    /// operator's defaults throughout).
    #[schema(value_type = AbuseProtectionSchema)]
    pub abuse: AbusePolicy,
    /// The channels of a send that names neither `channel` nor `channels`; absent: sms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_workflow: Option<DefaultWorkflowBody>,
    /// False until the account sets its own policy: the defaults for new accounts apply.
    pub customised: bool,
}

impl From<&Policy> for PolicyBody {
    fn from(policy: &Policy) -> Self {
        Self {
            require_2fa: policy.require_2fa,
            channels: policy.channels,
            sms_fallback: policy.sms_fallback,
            trusted_device: policy.trusted_device,
            abuse: AbusePolicy::clone(&policy.abuse),
            default_workflow: policy
                .workflow
                .as_ref()
                .map(|workflow| DefaultWorkflowBody {
                    channels: workflow
                        .channels
                        .iter()
                        .map(|channel| channel.as_str().to_owned())
                        .collect(),
                    fallback_after_seconds: Some(workflow.fallback_after_seconds),
                }),
            customised: policy.version > 0,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PolicyUpdate)]
pub struct PutPolicyBody {
    pub require_2fa: Option<bool>,
    /// Subset of sms, whatsapp, call, email, totp, webauthn.
    pub channels: Option<Vec<String>>,
    pub sms_fallback: Option<bool>,
    pub trusted_device: Option<String>,
    /// Replaces the account's abuse protection whole (`{}`: back to the operator's defaults).
    /// Owners and admins only; a bad member answers 400 and changes nothing.
    #[schema(value_type = Option<AbuseProtectionSchema>)]
    pub abuse: Option<AbusePolicy>,
    /// Sets the default workflow (`{"channels": []}` removes it).
    pub default_workflow: Option<DefaultWorkflowBody>,
    /// The person the key acts for (the key's role is lowered to theirs).
    pub acting_user: Option<String>,
}

/// An account's abuse protection (docs/abuse.md). Each member left out takes the operator's
/// default (`[abuse]`); a member given replaces it whole. Unknown members are refused. (The
/// schema only: the service parses `abuse::AbusePolicy`.)
#[derive(ToSchema)]
#[schema(as = AbuseProtection)]
pub struct AbuseProtectionSchema {
    /// Per channel (`sms`, `whatsapp`, `call`): the destination regions allowed.
    pub geo: Option<HashMap<String, GeoSchema>>,
    /// Per channel: the number types allowed, of mobile, fixed_line, fixed_line_or_mobile,
    /// toll_free, voip, personal, pager, uan, voicemail, unknown (premium_rate and shared_cost
    /// never).
    pub number_types: Option<HashMap<String, Vec<String>>>,
    /// The pumping guard's rules per prefix and per country.
    pub guard: Option<GuardSchema>,
    pub caps: Option<CapsSchema>,
    /// Numbers in E.164 and prefixes ending in `*` (`+4915112*`) the pumping guard lets through;
    /// at most `abuse.max_safe_list` (100).
    pub safe_list: Option<Vec<String>>,
}

/// `{"countries": ["DE", "AT"]}` (only these) or `{"countries": ["*"], "except": ["CU"]}`.
#[derive(ToSchema)]
#[schema(as = GeoPermission)]
pub struct GeoSchema {
    /// ISO 3166-1 alpha-2 codes in upper case (`001`: non-geographic codes), or `["*"]`.
    pub countries: Vec<String>,
    /// Only with `["*"]`: the regions taken out.
    pub except: Option<Vec<String>>,
}

#[derive(ToSchema)]
#[schema(as = GuardRules)]
pub struct GuardSchema {
    pub prefix: Option<ThresholdsSchema>,
    pub country: Option<ThresholdsSchema>,
}

/// A send is refused (429 `suspected-pumping`) and the scope paused when the last hour holds at
/// least `min_sends` with approvals under `min_conversion_percent`, or at least
/// `surge_min_sends` and more than `surge_factor` × the hourly average of the 24 hours before.
#[derive(ToSchema)]
#[schema(as = GuardThresholds)]
pub struct ThresholdsSchema {
    #[schema(minimum = 1)]
    pub min_sends: u64,
    #[schema(maximum = 100)]
    pub min_conversion_percent: u64,
    #[schema(minimum = 1)]
    pub surge_factor: u64,
    #[schema(minimum = 1)]
    pub surge_min_sends: u64,
    #[schema(minimum = 60, maximum = 86400)]
    pub cooldown_seconds: u64,
}

/// Messages per UTC day; absent: unlimited. Past one, 429 `daily-message-cap`.
#[derive(ToSchema)]
#[schema(as = DailyCaps)]
pub struct CapsSchema {
    #[schema(minimum = 1)]
    pub total: Option<u64>,
    #[schema(minimum = 1)]
    pub per_country: Option<u64>,
}

// ---- usage ----

#[derive(Serialize, ToSchema)]
#[schema(as = Usage)]
pub struct UsageBody {
    /// The UTC day counted, `YYYY-MM-DD`.
    pub day: String,
    /// Messages admitted today, all destinations.
    pub total: u64,
    /// Messages admitted today per destination country (ISO 3166-1 alpha-2; `001`
    /// non-geographic, `ZZ` unknown).
    pub countries: BTreeMap<&'static str, u64>,
    /// The daily caps in force (the account's, else the operator's); absent members: no cap.
    pub caps: CapsBody,
    /// The blocks running now: pumping cool-downs of a prefix or a country.
    pub blocks: Vec<BlockBody>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DailyCapsInForce)]
pub struct CapsBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_country: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AbuseBlock)]
pub struct BlockBody {
    /// `suspected-pumping`.
    pub rule: &'static str,
    /// prefix or country.
    pub scope: &'static str,
    pub country: &'static str,
    /// The prefix blocked (`+` and digits: the number less its last four), for a prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// RFC 3339, UTC.
    pub until: String,
    pub retry_after_seconds: u64,
}

impl UsageBody {
    pub fn new(usage: &Usage, caps: DailyCaps, now_ms: u64) -> Self {
        Self {
            day: rfc3339(usage.day * DAY_MS)[..10].to_owned(),
            total: usage.total,
            countries: usage
                .countries
                .iter()
                .map(|(region, count)| (region.as_str(), *count))
                .collect(),
            caps: CapsBody {
                total: caps.total,
                per_country: caps.per_country,
            },
            blocks: usage
                .blocks
                .iter()
                .map(|block| BlockBody {
                    rule: BlockRule::SuspectedPumping.as_str(),
                    scope: block.scope.as_str(),
                    country: block.country.as_str(),
                    prefix: block
                        .prefix
                        .as_ref()
                        .map(|prefix| prefix.as_str().to_owned()),
                    until: rfc3339(block.until_ms),
                    retry_after_seconds: block.until_ms.saturating_sub(now_ms).div_ceil(1000),
                })
                .collect(),
        }
    }
}

// ---- users ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateUser)]
pub struct CreateUserBody {
    /// 1 to 64 characters; drawn when absent.
    pub id: Option<String>,
    /// owner, admin, member (default member).
    pub role: Option<String>,
    /// E.164; required while SMS is active.
    pub phone: Option<String>,
    /// Where e-mail codes go; required while e-mail is an allowed channel. Normalised (the
    /// domain lower-cased, in its IDNA ASCII form).
    pub email: Option<String>,
    /// on, off, account.
    pub two_factor: Option<String>,
    pub acting_user: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PatchUser)]
pub struct PatchUserBody {
    pub role: Option<String>,
    /// E.164, or null to remove it (absent: unchanged).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    /// An e-mail address, or null to remove it (absent: unchanged).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    pub two_factor: Option<String>,
    pub acting_user: Option<String>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Serialize, ToSchema)]
#[schema(as = TwoFactor)]
pub struct TwoFactorBody {
    /// Whether this user must pass a second factor now.
    pub enabled: bool,
    /// on, off, or null when the user follows the account's `require_2fa`.
    #[serde(rename = "override")]
    #[schema(value_type = Option<String>)]
    pub over: Option<&'static str>,
    pub set_by: Option<String>,
}

// A user's factor: `account::user::Factor` as the document shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = Factor)]
pub struct FactorSchema {
    /// passkey, webauthn, totp.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserBody<'a> {
    #[schema(value_type = String)]
    pub id: &'a UserId,
    /// owner, admin, member.
    #[schema(value_type = String)]
    pub role: UserRole,
    pub phone: Option<&'a str>,
    pub email: Option<&'a str>,
    pub two_factor: TwoFactorBody,
    #[schema(value_type = Vec<FactorSchema>)]
    pub factors: &'a [Factor],
    pub created_at: String,
    pub updated_at: String,
}

// ---- trusted devices, logins, audit ----

/// Exactly one of the two proofs.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TrustDevice)]
pub struct TrustBody {
    /// An approved verification of this user's phone (SMS, WhatsApp), used once…
    pub verification_id: Option<String>,
    /// …or a second-factor challenge this user passed (TOTP, security key, recovery code).
    pub challenge_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DeviceTrusted)]
pub struct DeviceTrustedBody<'a> {
    pub id: &'a str,
    #[schema(value_type = String)]
    pub user: &'a UserId,
    /// `ogd_…`: shown once.
    pub token: &'a str,
    pub created_at: String,
    pub expires_at: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DevicesRevoked)]
pub struct DevicesRevokedBody<'a> {
    #[schema(value_type = String)]
    pub user: &'a UserId,
    pub revoked: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DeviceRevoked)]
pub struct DeviceRevokedBody<'a> {
    pub id: &'a str,
    #[schema(value_type = String)]
    pub user: &'a UserId,
    pub revoked: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CheckDevice)]
pub struct CheckDeviceBody {
    pub user: String,
    pub device_token: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = DeviceChecked)]
pub struct DeviceCheckedBody<'a> {
    pub trusted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LoginRequest)]
pub struct LoginBody {
    pub user: String,
    pub device_token: Option<String>,
    /// A passkey challenge this user passed (`POST /v1/passkeys/challenges`): with user
    /// verification it is the second factor, and the decision is `allow` (`passkey_verified`).
    pub challenge_id: Option<String>,
}

// A factor offered in a challenge: `account::login::Offer` as the document shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = Offer)]
pub struct OfferSchema {
    /// passkey, webauthn, totp, sms, whatsapp, call, email.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    /// The masked number a phone channel sends to, or the masked address of email.
    pub to: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = LoginDecision)]
pub struct DecisionBody<'a> {
    /// allow, challenge, enroll.
    pub decision: &'static str,
    /// For allow: two_factor_off, trusted_device, passkey_verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// For challenge: usable factors, strongest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<OfferSchema>>)]
    pub factors: Option<&'a [Offer]>,
    /// For challenge: the first of `fallbacks` (kept for clients that read one alternative).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<OfferSchema>)]
    pub fallback: Option<&'a Offer>,
    /// For challenge: the alternatives after the factors, in order: `sms` (the policy's
    /// `sms_fallback`, for a user with an app or a key), then `call`, then `email`, where the
    /// policy allows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<OfferSchema>>)]
    pub fallbacks: Option<&'a [Offer]>,
    /// For enroll: channels to enrol one of.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub channels: Option<ChannelSet>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub struct AuditEntryBody<'a> {
    pub id: &'a str,
    pub at: String,
    /// `{key_id, role, acting_user?}`.
    #[schema(value_type = Object)]
    pub who: &'a Who,
    pub action: &'a str,
    /// What was changed: a user id, `policy`, a key id… (any JSON value).
    #[schema(value_type = Value)]
    pub target: &'a str,
    #[schema(value_type = Value)]
    pub details: &'a serde_json::Value,
}

impl<'a> From<&'a AuditEntry> for AuditEntryBody<'a> {
    fn from(entry: &'a AuditEntry) -> Self {
        Self {
            id: &entry.id,
            at: rfc3339(entry.at_ms),
            who: &entry.who,
            action: &entry.action,
            target: &entry.target,
            details: &entry.details,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = AuditPage)]
pub struct AuditPageBody<'a> {
    pub entries: Vec<AuditEntryBody<'a>>,
    pub next_cursor: Option<&'a str>,
}
