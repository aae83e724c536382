//! Message texts per locale, and how many SMS segments a text costs (GSM-7 or UCS-2).
//!
//! Every text is written to fit one GSM-7 segment (160 characters) with a 10-character brand,
//! a 6-digit code and a two-digit lifetime, Web OTP line included for a short domain. Words
//! outside the GSM 03.38 alphabet are avoided on purpose (Spanish "clave" rather than
//! "código", Portuguese "senha"): one such letter turns the whole text into UCS-2, which
//! holds only 70 characters per segment.

/// The origin-bound one-time code line (WICG WebOTP, Android SMS User Consent):
/// `@domain #code` as the last line lets the browser fill the code for that site only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOtp {
    /// The host the code is bound to, without scheme or port (`login.example.com`).
    pub domain: String,
}

/// How an SMS carries its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 default alphabet, 7 bits a character: 160 per single SMS, 153 per part.
    Gsm7,
    /// UTF-16: 70 units per single SMS, 67 per part.
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

/// The languages with a written text; any other locale gets English.
pub const LANGUAGES: [&str; 6] = ["en", "de", "fr", "es", "pt", "it"];

/// The language a locale is rendered in: its primary subtag when we have a text for it
/// (`pt-BR` → `pt`, `de_AT` → `de`), else `en`.
pub fn language(locale: &str) -> &'static str {
    let primary = locale
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    LANGUAGES
        .iter()
        .copied()
        .find(|language| *language == primary)
        .unwrap_or("en")
}

/// One language's text around its four blanks, in this order: before the brand, between the
/// brand and the code, between the code and the lifetime, and after the lifetime's unit; then
/// the unit, singular and plural.
struct Text {
    language: &'static str,
    parts: [&'static str; 4],
    minute: (&'static str, &'static str),
}

/// Every written text, one a line; the last is English, the fallback.
#[rustfmt::skip]
const TEXTS: [Text; 6] = [
    Text { language: "de", parts: ["Ihr Code für ", " lautet ", ". Er ist ", " gültig. Geben Sie ihn an niemanden weiter."], minute: ("Minute", "Minuten") },
    Text { language: "fr", parts: ["Votre code de vérification ", " est ", ". Il expire dans ", ". Ne le communiquez à personne."], minute: ("minute", "minutes") },
    Text { language: "es", parts: ["Tu clave de ", " es ", ". Caduca en ", ". No la compartas con nadie."], minute: ("minuto", "minutos") },
    Text { language: "pt", parts: ["Sua senha ", " é ", ". Ela expira em ", ". Nunca a compartilhe com ninguém."], minute: ("minuto", "minutos") },
    Text { language: "it", parts: ["Il tuo codice di verifica ", " è ", ". Scade tra ", ". Non condividerlo con nessuno."], minute: ("minuto", "minuti") },
    Text { language: "en", parts: ["Your ", " verification code is ", ". It expires in ", ". Do not share it with anyone."], minute: ("minute", "minutes") },
];

/// The message text: brand, code, lifetime in minutes and a do-not-share line, in the locale's
/// language; with `web_otp`, followed by the `@domain #code` line.
pub fn render(
    locale: &str,
    brand: &str,
    code: &str,
    minutes: u32,
    web_otp: Option<&WebOtp>,
) -> String {
    let language = language(locale);
    let text = TEXTS
        .iter()
        .find(|text| text.language == language)
        .unwrap_or(&TEXTS[TEXTS.len() - 1]);
    let [before_brand, before_code, before_minutes, after] = text.parts;
    let unit = if minutes == 1 {
        text.minute.0
    } else {
        text.minute.1
    };
    let mut text =
        format!("{before_brand}{brand}{before_code}{code}{before_minutes}{minutes} {unit}{after}");
    if let Some(web_otp) = web_otp {
        text.push_str(&format!("\n\n@{} #{code}", web_otp.domain));
    }
    text
}

/// GSM-7 when every character is in the GSM 03.38 default alphabet or its extension table,
/// else UCS-2.
pub fn encoding(text: &str) -> Encoding {
    if text.chars().all(|c| gsm_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The text's length in its encoding's units: septets for GSM-7 (extension characters count
/// two, the escape and the character), UTF-16 code units for UCS-2 (an emoji counts two).
pub fn units(text: &str) -> usize {
    match encoding(text) {
        Encoding::Gsm7 => text.chars().filter_map(gsm_septets).sum(),
        Encoding::Ucs2 => text.encode_utf16().count(),
    }
}

/// How many SMS the text is sent as. A single SMS holds 160 septets or 70 UTF-16 units; once
/// split, each part loses room to the concatenation header (153 / 67), and a part never ends
/// in the middle of an escape sequence or a surrogate pair.
pub fn segments(text: &str) -> u32 {
    let (single, part, sizes): (usize, usize, Vec<usize>) = match encoding(text) {
        Encoding::Gsm7 => (160, 153, text.chars().filter_map(gsm_septets).collect()),
        Encoding::Ucs2 => (70, 67, text.chars().map(char::len_utf16).collect()),
    };
    if sizes.iter().sum::<usize>() <= single {
        return 1;
    }
    let mut count = 1;
    let mut used = 0;
    for size in sizes {
        if used + size > part {
            count += 1;
            used = 0;
        }
        used += size;
    }
    count
}

/// GSM 03.38's default alphabet and extension table (each extension character takes two septets).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// The ASCII part of both tables as septets per character (0: not in GSM-7), built at compile
/// time: scanning the tables for every character was a tenth of the instructions of a send.
const ASCII_SEPTETS: [u8; 128] = {
    const fn mark(mut table: [u8; 128], alphabet: &str, septets: u8) -> [u8; 128] {
        let bytes = alphabet.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            // Bytes of multi-byte characters are all 0x80 or above: only ASCII is marked.
            if bytes[i] < 128 {
                table[bytes[i] as usize] = septets;
            }
            i += 1;
        }
        table
    }
    mark(mark([0; 128], GSM_BASIC, 1), GSM_EXTENSION, 2)
};

/// Septets a character takes in GSM-7: 1 in the default alphabet, 2 in the extension table
/// (escape + character), `None` when GSM-7 cannot carry it. Strictly per 3GPP TS 23.038:
/// 0x09 is the capital `Ç`, so a lowercase `ç` needs UCS-2.
fn gsm_septets(c: char) -> Option<usize> {
    if c.is_ascii() {
        return match ASCII_SEPTETS[c as usize] {
            0 => None,
            septets => Some(usize::from(septets)),
        };
    }
    septets_in_alphabets(c)
}

/// `gsm_septets` by scanning the two tables (what the ASCII table is built from).
fn septets_in_alphabets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_table_agrees_with_the_alphabets() {
        for byte in 0u8..128 {
            let c = char::from(byte);
            assert_eq!(gsm_septets(c), septets_in_alphabets(c), "{c:?}");
        }
        assert_eq!(gsm_septets('a'), Some(1));
        assert_eq!(gsm_septets('['), Some(2));
        assert_eq!(gsm_septets('`'), None);
    }

    const BRAND: &str = "Brandname1";
    const CODE: &str = "123456";

    #[test]
    fn every_language_fits_one_gsm7_segment_with_a_ten_character_brand() {
        for language in LANGUAGES {
            for minutes in [1, 10, 15, 60] {
                let text = render(language, BRAND, CODE, minutes, None);
                assert_eq!(encoding(&text), Encoding::Gsm7, "{language}: {text}");
                assert_eq!(segments(&text), 1, "{language}: {text}");
                assert!(text.contains(BRAND) && text.contains(CODE), "{text}");
                assert!(text.contains(&minutes.to_string()), "{text}");
            }
        }
    }

    #[test]
    fn web_otp_line_is_last_and_still_one_segment() {
        let web_otp = WebOtp {
            domain: "login.example.com".into(),
        };
        for language in LANGUAGES {
            let text = render(language, BRAND, CODE, 10, Some(&web_otp));
            assert_eq!(
                text.lines().last(),
                Some("@login.example.com #123456"),
                "{text}"
            );
            assert_eq!(segments(&text), 1, "{language} is {} units", units(&text));
        }
    }

    #[test]
    fn regional_locales_fall_back_to_their_language_then_english() {
        assert_eq!(language("pt-BR"), "pt");
        assert_eq!(language("de-AT"), "de");
        assert_eq!(language("fr_CA"), "fr");
        assert_eq!(language("nl"), "en");
        assert_eq!(language(""), "en");
        assert!(render("de-AT", BRAND, CODE, 10, None).starts_with("Ihr Code"));
        assert!(render("ja", BRAND, CODE, 10, None).starts_with("Your"));
    }

    #[test]
    fn singular_minute_reads_right() {
        assert!(render("en", BRAND, CODE, 1, None).contains("in 1 minute."));
        assert!(render("de", BRAND, CODE, 1, None).contains("1 Minute gültig"));
        assert!(render("it", BRAND, CODE, 5, None).contains("5 minuti"));
    }

    #[test]
    fn encoding_follows_the_gsm_03_38_table() {
        assert_eq!(
            encoding("é è ù ì ò à É Ä ö ñ ü ß Ç ¿ ¡ £ ¥ § Δ"),
            Encoding::Gsm7
        );
        assert_eq!(encoding("€ [ ] { } ~ ^ | \\"), Encoding::Gsm7);
        // Only the capital C cedilla is in the table.
        assert_eq!(encoding("ç"), Encoding::Ucs2);
        assert_eq!(encoding("ł"), Encoding::Ucs2);
        assert_eq!(encoding("á"), Encoding::Ucs2);
        assert_eq!(encoding("`"), Encoding::Ucs2);
        assert_eq!(encoding("Код"), Encoding::Ucs2);
        assert_eq!(encoding("hi 😀"), Encoding::Ucs2);
    }

    #[test]
    fn gsm7_segments_break_at_160_then_153() {
        assert_eq!(segments(""), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
    }

    #[test]
    fn gsm7_extension_characters_count_double_and_are_not_split() {
        assert_eq!(units("€"), 2);
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&format!("{}a", "€".repeat(80))), 2);
        // 152 septets then an escape pair: the pair moves whole into the next part.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(units(&text), 306);
        assert_eq!(segments(&text), 3);
    }

    #[test]
    fn ucs2_segments_break_at_70_then_67_counting_utf16_units() {
        assert_eq!(segments(&"ł".repeat(70)), 1);
        assert_eq!(segments(&"ł".repeat(71)), 2);
        assert_eq!(segments(&"ł".repeat(134)), 2);
        assert_eq!(segments(&"ł".repeat(135)), 3);
        assert_eq!(units("😀"), 2);
        assert_eq!(segments(&"😀".repeat(35)), 1);
        assert_eq!(segments(&"😀".repeat(36)), 2);
        // 66 units then a surrogate pair: the pair is not split across parts.
        let text = format!("{}😀{}", "ł".repeat(66), "ł".repeat(66));
        assert_eq!(units(&text), 134);
        assert_eq!(segments(&text), 3);
    }
}
