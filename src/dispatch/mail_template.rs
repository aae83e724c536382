//! Mails of the e-mail channel, per locale (the six languages of the SMS texts): a subject, a
//! plain-text part and an HTML part. The code is always text, never an image: it can be read by
//! screen readers, copied, and shown by clients that block images.

use super::template;

/// One language's words around the SMS text: the subject (before the code) and the line that
/// tells a person who did not ask for the code what to do.
struct Words {
    language: &'static str,
    subject: &'static str,
    not_you: &'static str,
}

#[rustfmt::skip]
const WORDS: [Words; 6] = [
    Words { language: "de", subject: "Ihr Bestätigungscode", not_you: "Wenn Sie diesen Code nicht angefordert haben, ignorieren Sie diese E-Mail." },
    Words { language: "fr", subject: "Votre code de vérification", not_you: "Si vous n'avez pas demandé ce code, ignorez cet e-mail." },
    Words { language: "es", subject: "Tu código de verificación", not_you: "Si no has solicitado este código, ignora este correo." },
    Words { language: "pt", subject: "Seu código de verificação", not_you: "Se você não pediu este código, ignore este e-mail." },
    Words { language: "it", subject: "Il tuo codice di verifica", not_you: "Se non hai richiesto questo codice, ignora questa e-mail." },
    Words { language: "en", subject: "Your verification code", not_you: "If you did not ask for this code, ignore this e-mail." },
];

fn words(locale: &str) -> &'static Words {
    let language = template::language(locale);
    WORDS
        .iter()
        .find(|words| words.language == language)
        .unwrap_or(&WORDS[WORDS.len() - 1])
}

/// The subject: `Your verification code: 123456` in the locale's language, so that the code
/// shows in a notification without opening the mail.
pub fn subject(locale: &str, code: &str) -> String {
    format!("{}: {code}", words(locale).subject)
}

/// The plain-text part: the SMS text of the locale (brand, code, lifetime, do not share), then
/// the line for whoever did not ask for it.
pub fn text(locale: &str, brand: &str, code: &str, minutes: u32) -> String {
    let sentence = template::render(locale, brand, code, minutes, None);
    format!("{sentence}\n\n{}\n", words(locale).not_you)
}

/// The HTML part, made from the plain-text part: each paragraph escaped, and the code once more
/// on its own line in large monospaced type, as text.
pub fn html(locale: &str, text: &str, code: &str) -> String {
    let language = template::language(locale);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"{language}\">\n<head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family:sans-serif\">\n",
        escape(words(locale).subject)
    );
    out.push_str(&format!(
        "<p style=\"font-family:monospace;font-size:28px;letter-spacing:4px\"><strong>{}</strong></p>\n",
        escape(code)
    ));
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        out.push_str(&format!("<p>{}</p>\n", escape(paragraph)));
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// HTML text escaping: the five characters that could start markup or end an attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_its_own_subject_and_text() {
        let mut subjects = std::collections::HashSet::new();
        for language in template::LANGUAGES {
            let subject = subject(language, "123456");
            assert!(subject.ends_with(": 123456"), "{subject}");
            assert!(subjects.insert(subject));
            let text = text(language, "Acme", "123456", 10);
            assert!(text.contains("123456") && text.contains("Acme"), "{text}");
        }
        assert_eq!(subject("pt-BR", "1"), subject("pt", "1"));
        assert_eq!(subject("xx", "1"), subject("en", "1"));
    }

    #[test]
    fn the_html_part_carries_the_code_as_text_and_escapes_the_brand() {
        let text = text("de", "<b>Acme & Co</b>", "654321", 10);
        let html = html("de", &text, "654321");
        assert!(html.contains("<strong>654321</strong>"), "{html}");
        assert!(html.contains("&lt;b&gt;Acme &amp; Co&lt;/b&gt;"), "{html}");
        assert!(html.contains("lang=\"de\""));
        assert!(!html.contains("<img"));
    }
}
