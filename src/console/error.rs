//! The statuses of console pages, chosen here as the facades choose theirs in their own error
//! files (`http/twilio_error.rs`): from the same service errors, with the same statuses the API
//! gives them in `http/error.rs` (which `http` imports this module for, never the other way, so
//! the two edges do not import each other). A refusal's page shows the rule's own sentence and
//! the users it names.

use hyper::StatusCode;

use super::layout::PageError;
use super::service::ConsoleError;
use crate::account::service::AccountError;
use crate::factors::FactorError;
use crate::store::StoreError;

const TRY_AGAIN: &str = "The gateway cannot do this right now; nothing was changed. Try again.";

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AccountLimit(reached) => {
                let status = if reached.limit.frees_with_time() {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                PageError::new(
                    status,
                    format!(
                        "This account reached its limit '{}' ({}); nothing was changed.",
                        reached.limit.as_str(),
                        reached.max
                    ),
                )
            }
            StoreError::Corrupt(cause) => {
                tracing::error!(%cause, "store answered an unexpected reply (console)");
                PageError::internal()
            }
            other => {
                tracing::error!(error = %other, "store failed (console)");
                PageError::new(StatusCode::SERVICE_UNAVAILABLE, TRY_AGAIN)
            }
        }
    }
}

impl From<AccountError> for PageError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Refused(refusal) => {
                let mut page = PageError::new(StatusCode::UNPROCESSABLE_ENTITY, refusal.detail);
                page.users = refusal
                    .users
                    .iter()
                    .map(|user| user.as_str().to_owned())
                    .collect();
                page
            }
            AccountError::NotFound(detail) => PageError::new(StatusCode::NOT_FOUND, detail),
            AccountError::Conflict(detail) => PageError::new(StatusCode::CONFLICT, detail),
            AccountError::Invalid(detail) => PageError::new(StatusCode::BAD_REQUEST, detail),
            AccountError::Random => PageError::internal(),
            AccountError::Limit(reached) => StoreError::AccountLimit(reached).into(),
            AccountError::Store(error) => error.into(),
        }
    }
}

impl From<FactorError> for PageError {
    fn from(error: FactorError) -> Self {
        match error {
            FactorError::Account(error) => error.into(),
            FactorError::NotFound(detail) => PageError::new(StatusCode::NOT_FOUND, detail),
            FactorError::Invalid(detail) => PageError::new(StatusCode::BAD_REQUEST, detail),
            FactorError::Conflict(detail) => PageError::new(StatusCode::CONFLICT, detail),
            FactorError::Limited { retry_after_ms } => {
                PageError::too_many(retry_after_ms.div_ceil(1000).max(1))
            }
            FactorError::Seal(error) => {
                tracing::error!(%error, "a factor secret could not be opened (console)");
                PageError::internal()
            }
            FactorError::Random => PageError::internal(),
            FactorError::Store(error) => error.into(),
        }
    }
}

impl From<ConsoleError> for PageError {
    fn from(error: ConsoleError) -> Self {
        match error {
            ConsoleError::NotFound(detail) => PageError::new(StatusCode::NOT_FOUND, detail),
            ConsoleError::Refused(reason) => {
                let mut page = PageError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the passkey ceremony did not pass: {reason}"),
                );
                page.reason = Some(reason);
                page
            }
            ConsoleError::Invalid(detail) => PageError::new(StatusCode::BAD_REQUEST, detail),
            ConsoleError::Full(detail) => PageError::new(StatusCode::CONFLICT, detail),
            ConsoleError::Account(error) => error.into(),
            ConsoleError::Random => PageError::internal(),
            ConsoleError::Store(error) => error.into(),
        }
    }
}
