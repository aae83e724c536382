//! Vonage Voice API: `POST /v1/calls` with the call's NCCO inline (one `talk` action in the
//! message's language), authenticated with a JWT the application's RSA private key signs
//! (RS256, with ring: `application_id`, `iat`, `exp`, `jti`). The answer is 201 with the call's
//! `uuid`, which the call's events (its `event_url`) name.

use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::{Deserialize, Serialize};

use super::{
    accepted, by_status, digits_only, endpoint, vendor_text, Accepted, ProviderError,
    ProviderSettings, VendorApi,
};
use crate::dispatch::voice::speech_language;
use crate::dispatch::OutgoingMessage;

/// How long a request's JWT is valid: one request's worth, with room for clock skew.
const TOKEN_LIFETIME_SECS: u64 = 300;

pub struct VonageVoice {
    api: VendorApi,
    application_id: String,
    key: RsaKeyPair,
    rng: SystemRandom,
    /// The Vonage number calls come from, digits only.
    from: String,
    event_url: Option<String>,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    number: &'a str,
}

#[derive(Serialize)]
struct Talk<'a> {
    action: &'static str,
    text: &'a str,
    language: &'static str,
}

#[derive(Serialize)]
struct CreateCall<'a> {
    to: [Endpoint<'a>; 1],
    from: Endpoint<'a>,
    ncco: [Talk<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    event_url: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_method: Option<&'static str>,
}

#[derive(Deserialize)]
struct Created {
    uuid: Option<String>,
}

/// Vonage's problem body (RFC 7807): `type`, `title`, `detail`.
#[derive(Deserialize, Default)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    application_id: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

impl VonageVoice {
    /// The voice half of a `vonage` entry that carries calls; validation made sure that
    /// `application_id`, `private_key` and a numeric `from` are there.
    pub(crate) fn new(settings: &ProviderSettings, from: &str) -> Result<Self, String> {
        let who = format!("provider '{}'", settings.name);
        let application_id = settings
            .application_id
            .clone()
            .ok_or_else(|| format!("{who}: 'application_id' is required for calls"))?;
        let pem = settings
            .private_key
            .as_ref()
            .ok_or_else(|| format!("{who}: 'private_key' is required for calls"))?;
        let key = private_key(&pem.expose_str())
            .map_err(|reason| format!("{who}: 'private_key' {reason}"))?;
        Ok(Self {
            api: VendorApi::new(
                settings,
                endpoint(settings.vonage_voice_base_url(), "/v1/calls")?,
            )?,
            application_id,
            key,
            rng: SystemRandom::new(),
            from: from.trim_start_matches('+').to_owned(),
            event_url: settings.event_url.clone(),
        })
    }

    pub(crate) async fn call(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        let token = self
            .token()
            .map_err(|_| ProviderError::Retryable("could not sign the Voice API token".into()))?;
        let body = CreateCall {
            to: [Endpoint {
                kind: "phone",
                number: digits_only(message),
            }],
            from: Endpoint {
                kind: "phone",
                number: &self.from,
            },
            ncco: [Talk {
                action: "talk",
                text: &message.body,
                language: speech_language(&message.locale),
            }],
            event_url: self.event_url.as_deref().map(|url| [url]),
            event_method: self.event_url.as_ref().map(|_| "POST"),
        };
        let (status, bytes) = self
            .api
            .post(|request| {
                request
                    .bearer_auth(&token)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .json(&body)
            })
            .await?;
        if status.is_success() {
            return accepted(status, &bytes, "uuid", |created: Created| created.uuid);
        }
        let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = format!(
            "{}: {}",
            problem.title.as_deref().unwrap_or(""),
            problem.detail.as_deref().unwrap_or("")
        );
        Err(by_status(
            status,
            format!("answered {status}: {}", vendor_text(message, &text)),
        ))
    }

    /// A fresh RS256 JWT for one request.
    fn token(&self) -> Result<String, ring::error::Unspecified> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        let mut nonce = [0u8; 16];
        self.rng.fill(&mut nonce)?;
        let claims = Claims {
            application_id: &self.application_id,
            iat: now,
            exp: now + TOKEN_LIFETIME_SECS,
            jti: HEXLOWER.encode(&nonce),
        };
        sign_rs256(&self.key, &self.rng, &claims)
    }
}

/// `header.claims.signature`, each base64url without padding, signed RSASSA-PKCS1-v1_5 with
/// SHA-256 (JWS `RS256`).
pub(crate) fn sign_rs256(
    key: &RsaKeyPair,
    rng: &dyn SecureRandom,
    claims: &impl Serialize,
) -> Result<String, ring::error::Unspecified> {
    let header = BASE64URL_NOPAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::to_vec(claims).map_err(|_| ring::error::Unspecified)?;
    let signing_input = format!("{header}.{}", BASE64URL_NOPAD.encode(&claims));
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        rng,
        signing_input.as_bytes(),
        &mut signature,
    )?;
    Ok(format!(
        "{signing_input}.{}",
        BASE64URL_NOPAD.encode(&signature)
    ))
}

/// The RSA key of a PEM `PRIVATE KEY` (PKCS#8, as the Vonage dashboard downloads it). A key
/// given through an environment variable may carry its line breaks as `\n`.
pub(crate) fn private_key(pem: &str) -> Result<RsaKeyPair, String> {
    let pem = pem.replace("\\n", "\n");
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        return Err(
            "is a PKCS#1 key: convert it to PKCS#8 ('openssl pkcs8 -topk8 -nocrypt')".into(),
        );
    }
    let base64: String = pem
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("-----"))
        .collect();
    let der = data_encoding::BASE64
        .decode(base64.as_bytes())
        .map_err(|_| "is not a PEM private key".to_owned())?;
    RsaKeyPair::from_pkcs8(&der)
        .map_err(|error| format!("is not an RSA private key in PKCS#8 ({error})"))
}
