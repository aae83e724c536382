//! Meta WhatsApp Cloud API: `POST /{api-version}/{phone-number-id}/messages`, JSON, Bearer
//! token. The code travels in an authentication template: as the body parameter and as the
//! parameter of the copy-code (URL) button, which is how Meta's authentication templates are
//! filled.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::settings::Keyed;
use super::{
    accepted, endpoint, refusal, Accepted, Adapter, ProviderError, ProviderSettings, VendorApi,
    Verdict,
};
use crate::dispatch::OutgoingMessage;

pub struct WhatsappProvider {
    api: VendorApi,
    authorization: String,
    template_name: String,
    template_languages: Vec<String>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: Option<String>,
}

/// Graph API errors: `{"error": {"message", "type", "code", "error_data": {"details"}, "fbtrace_id"}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    error: Option<GraphError>,
}

#[derive(Deserialize)]
struct GraphError {
    code: Option<i64>,
    message: Option<String>,
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    details: Option<String>,
}

impl WhatsappProvider {
    pub(crate) fn new(settings: &ProviderSettings, vendor: Keyed<'_>) -> Result<Self, String> {
        let path = format!(
            "/{}/{}/messages",
            settings.whatsapp_api_version(),
            vendor.sender
        );
        Ok(Self {
            api: VendorApi::new(settings, endpoint(vendor.base, &path)?)?,
            authorization: format!("Bearer {}", vendor.key.expose_str()),
            template_name: settings.whatsapp_template_name().to_owned(),
            template_languages: settings
                .template_languages
                .clone()
                .unwrap_or_else(|| vec!["en".to_owned()]),
        })
    }
}

#[async_trait]
impl Adapter for WhatsappProvider {
    async fn send(&self, message: &OutgoingMessage) -> Result<Accepted, ProviderError> {
        if message.code.is_empty() {
            return Err(ProviderError::Permanent(
                "the message carries no code for the authentication template".into(),
            ));
        }
        let language = choose_language(&message.locale, &self.template_languages);
        let request = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.to.as_str(),
            "type": "template",
            "template": {
                "name": self.template_name,
                "language": { "code": language },
                "components": [
                    {
                        "type": "body",
                        "parameters": [{ "type": "text", "text": message.code }]
                    },
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{ "type": "text", "text": message.code }]
                    }
                ]
            },
            // Echoed in status webhooks, so receipts can be matched to our message.
            "biz_opaque_callback_data": message.id,
        });
        let (status, bytes) = (self.api)
            .post(|post| {
                post.header(reqwest::header::AUTHORIZATION, &self.authorization)
                    .json(&request)
            })
            .await?;
        if status.is_success() {
            return accepted(status, &bytes, "id", |answer: Answer| {
                answer.messages.into_iter().next().and_then(|sent| sent.id)
            });
        }
        let error = serde_json::from_slice::<ErrorBody>(&bytes)
            .unwrap_or_default()
            .error;
        let code = error.as_ref().and_then(|error| error.code);
        let text = error
            .as_ref()
            .map(|error| {
                let details = error
                    .error_data
                    .as_ref()
                    .and_then(|data| data.details.as_deref())
                    .unwrap_or("");
                format!("{} {details}", error.message.as_deref().unwrap_or(""))
            })
            .unwrap_or_default();
        Err(refusal(status, message, code, text.trim(), classify))
    }
}

/// Meta's error codes (Cloud API "Error codes" reference), where they decide more than the
/// HTTP status does.
fn classify(code: i64) -> Option<Verdict> {
    match code {
        // 1 unknown (possibly a server error), 2 service temporarily down, 4 app call rate,
        // 80007 WABA rate limit, 130429 throughput reached, 131000 something went wrong,
        // 131016 service unavailable, 131048 spam rate limit, 131056 pair rate limit,
        // 133004 server temporarily unavailable.
        1 | 2 | 4 | 80007 | 130429 | 131000 | 131016 | 131048 | 131056 | 133004 => {
            Some(ProviderError::Retryable)
        }
        // 0 / 190 authentication and expired token, 3 / 10 / 200-299 permissions, 100 invalid
        // parameter, 368 blocked for policy violations, 131005 access denied, 131008 / 131009
        // missing or invalid parameter, 131026 undeliverable, 131030 recipient not allowed,
        // 131031 account locked, 131042 payment problem, 131047 re-engagement, 131051
        // unsupported type, 132000-132016 template missing, paused or mis-filled.
        0
        | 3
        | 10
        | 100
        | 190
        | 200..=299
        | 368
        | 131005
        | 131008
        | 131009
        | 131026
        | 131030
        | 131031
        | 131042
        | 131047
        | 131051
        | 132000..=132016 => Some(ProviderError::Permanent),
        _ => None,
    }
}

/// Picks the template language for a BCP 47 locale among the ones the template is approved in:
/// the exact tag (`pt-BR` matches `pt_BR`), then the bare language (`pt`), then a regional
/// variant of it (`pt_PT`), else the first configured language.
pub fn choose_language<'a>(locale: &str, languages: &'a [String]) -> &'a str {
    let wanted = locale.replace('-', "_").to_ascii_lowercase();
    let base = wanted.split('_').next().unwrap_or("").to_owned();
    let normalized = |language: &String| language.replace('-', "_").to_ascii_lowercase();
    languages
        .iter()
        .find(|language| normalized(language) == wanted)
        .or_else(|| {
            languages
                .iter()
                .find(|language| normalized(language) == base)
        })
        .or_else(|| {
            languages
                .iter()
                .find(|language| normalized(language).starts_with(&format!("{base}_")))
        })
        .or_else(|| languages.first())
        .map_or("en", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::choose_language;

    #[test]
    fn template_language_prefers_exact_then_base_then_variant_then_first() {
        let languages: Vec<String> = ["en_US", "de", "pt_BR"].map(String::from).to_vec();
        assert_eq!(choose_language("pt-BR", &languages), "pt_BR");
        assert_eq!(choose_language("pt-PT", &languages), "pt_BR");
        assert_eq!(choose_language("de-AT", &languages), "de");
        assert_eq!(choose_language("en", &languages), "en_US");
        assert_eq!(choose_language("fr", &languages), "en_US");
    }
}
