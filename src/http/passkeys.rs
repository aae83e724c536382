//! `POST /v1/passkeys/challenges`: usernameless sign-in with passkeys (issue 18). Without an
//! assertion the answer opens a ceremony (request options without `allowCredentials`); with
//! one it answers `{valid, user, factor_id, challenge_id}` and the credential's counter and
//! backup flags.

use hyper::StatusCode;

use super::body::json_response;
use super::factors::parse_credential;
use super::routes::{Call, Reply};
use super::wire_factors::{PasskeyChallengeBody, PasskeyOptionsBody, PasskeyOutcomeBody};
use crate::clock::rfc3339;

pub(super) async fn challenges(call: Call<'_>) -> Reply {
    let (app, _, grant, body) = call.keyed_json::<PasskeyChallengeBody>().await?;
    let who = grant.who();
    let (account, _) = grant.into_key();
    let factors = app.factors();
    let Some(assertion) = body.assertion else {
        let (options, expires_ms) = factors.begin_passkey(&account).await?;
        return Ok(json_response(
            StatusCode::OK,
            &PasskeyOptionsBody {
                public_key: &options,
                expires_at: rfc3339(expires_ms),
            },
        ));
    };
    let assertion = parse_credential(assertion, "assertion")?;
    let result = factors.finish_passkey(&account, who, &assertion).await?;
    let passed = result.passed.as_ref();
    let credential = result.credential.as_ref();
    Ok(json_response(
        StatusCode::OK,
        &PasskeyOutcomeBody {
            valid: result.valid,
            reason: result.reason,
            user: result.user.as_ref(),
            factor_id: result.factor_id.as_deref(),
            challenge_id: passed.map(|passed| passed.id.as_str()),
            expires_at: passed.map(|passed| rfc3339(passed.expires_ms)),
            counter: credential.map(|credential| credential.counter),
            backup_eligible: credential.map(|credential| credential.backup.eligible),
            backed_up: credential.map(|credential| credential.backup.backed_up),
        },
    ))
}
