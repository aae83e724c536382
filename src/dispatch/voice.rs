//! What a voice call says: the code read digit by digit, twice, in the request's language (the
//! six languages of the SMS texts), and the text-to-speech language tag the vendors are given.
//!
//! The digits are separated by commas so that every text-to-speech engine reads "4, 7, 1"
//! rather than "four hundred seventy-one", and pause a little between them.

use super::template::language;

/// One language's script around its blanks: before the brand, between the brand and the
/// code, before the repetition, and the closing words; then the vendors' TTS language tag.
struct Script {
    language: &'static str,
    parts: [&'static str; 4],
    /// BCP 47 tag both Twilio `<Say language>` and Vonage NCCO `talk.language` accept.
    speech: &'static str,
}

/// Every script, one a line; the last is English, the fallback.
#[rustfmt::skip]
const SCRIPTS: [Script; 6] = [
    Script { language: "de", parts: ["Ihr Bestätigungscode für ", " lautet: ", ". Noch einmal: ", ". Auf Wiederhören."], speech: "de-DE" },
    Script { language: "fr", parts: ["Votre code de vérification ", " est : ", ". Je répète : ", ". Au revoir."], speech: "fr-FR" },
    Script { language: "es", parts: ["Su código de verificación de ", " es: ", ". Repito: ", ". Adiós."], speech: "es-ES" },
    Script { language: "pt", parts: ["Seu código de verificação ", " é: ", ". Repetindo: ", ". Até logo."], speech: "pt-BR" },
    Script { language: "it", parts: ["Il tuo codice di verifica ", " è: ", ". Ripeto: ", ". Arrivederci."], speech: "it-IT" },
    Script { language: "en", parts: ["Your ", " verification code is: ", ". Once again: ", ". Goodbye."], speech: "en-US" },
];

fn script(locale: &str) -> &'static Script {
    let language = language(locale);
    SCRIPTS
        .iter()
        .find(|script| script.language == language)
        .unwrap_or(&SCRIPTS[SCRIPTS.len() - 1])
}

/// The words of the call: brand, then the code digit by digit, then the code once more.
pub fn render(locale: &str, brand: &str, code: &str) -> String {
    let [before_brand, before_code, again, goodbye] = script(locale).parts;
    let digits = spell(code);
    format!("{before_brand}{brand}{before_code}{digits}{again}{digits}{goodbye}")
}

/// The text-to-speech language of `locale`'s script (`pt-PT` → `pt-BR`, `xx` → `en-US`).
pub fn speech_language(locale: &str) -> &'static str {
    script(locale).speech
}

/// `"471"` → `"4, 7, 1"`.
fn spell(code: &str) -> String {
    let mut spoken = String::with_capacity(code.len() * 3);
    for (index, digit) in code.chars().enumerate() {
        if index > 0 {
            spoken.push_str(", ");
        }
        spoken.push(digit);
    }
    spoken
}

/// Escapes text for an XML element's content or an attribute (TwiML).
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_read_digit_by_digit_twice() {
        let text = render("en", "Acme", "408123");
        assert_eq!(
            text,
            "Your Acme verification code is: 4, 0, 8, 1, 2, 3. Once again: 4, 0, 8, 1, 2, 3. Goodbye."
        );
        assert_eq!(text.matches("4, 0, 8, 1, 2, 3").count(), 2);
    }

    #[test]
    fn each_of_the_six_languages_has_its_own_script_and_voice() {
        let mut seen = std::collections::HashSet::new();
        for (locale, speech) in [
            ("en", "en-US"),
            ("de-AT", "de-DE"),
            ("fr", "fr-FR"),
            ("es-MX", "es-ES"),
            ("pt-BR", "pt-BR"),
            ("it", "it-IT"),
        ] {
            let text = render(locale, "Acme", "1234");
            assert!(text.contains("1, 2, 3, 4"), "{text}");
            assert!(seen.insert(text), "{locale} repeats another script");
            assert_eq!(speech_language(locale), speech);
        }
        assert_eq!(speech_language("nl"), "en-US");
        assert!(render("nl", "Acme", "12").starts_with("Your Acme"));
    }

    #[test]
    fn xml_special_characters_are_escaped() {
        assert_eq!(
            xml_escape(r#"A&B <c> "d" 'e'"#),
            "A&amp;B &lt;c&gt; &quot;d&quot; &apos;e&apos;"
        );
    }
}
