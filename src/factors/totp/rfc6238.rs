//! RFC 4226 (HOTP) and RFC 6238 (TOTP) on ring's HMAC, the `otpauth://` URI and its QR code.
//!
//! A few lines on ring rather than a crate: the project keeps one crypto stack, and the check
//! must return the matched time step so that the store can refuse its reuse.

use ring::hmac;
use subtle::ConstantTimeEq;

/// The HMAC of a TOTP factor. SHA-1 is what every authenticator app supports (RFC 6238's
/// default); SHA-256 and SHA-512 are options some apps understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// `SHA1`, `sha256`, `SHA-512`: case and the dash do not matter.
    pub fn parse(input: &str) -> Option<Self> {
        match input.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            // HOTP/TOTP need HMAC-SHA-1 for compatibility with authenticator apps; HMAC-SHA-1 is
            // not broken as a MAC (RFC 6238, RFC 4226 Appendix A).
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// How codes of one factor are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    pub algorithm: Algorithm,
    /// 6 or 8.
    pub digits: u8,
    /// Seconds per step (RFC 6238 recommends 30).
    pub period: u64,
}

/// Steps accepted either side of the current one (RFC 6238 §5.2: at most one for network delay).
pub const WINDOW: u64 = 1;

/// The secret's length: 160 bits, RFC 4226 §4's recommendation (R6 requires at least 128).
pub const SECRET_BYTES: usize = 20;

/// HOTP value of `counter` (RFC 4226 §5.3: dynamic truncation, then modulo 10^digits).
pub fn hotp(key: &hmac::Key, counter: u64, digits: u8) -> u32 {
    let tag = hmac::sign(key, &counter.to_be_bytes());
    truncate(tag.as_ref(), digits)
}

/// Dynamic truncation of an HMAC value to `digits` (6 to 9) decimal digits.
pub fn truncate(mac: &[u8], digits: u8) -> u32 {
    dynamic_binary_code(mac) % 10u32.pow(u32::from(digits.min(9)))
}

/// RFC 4226 §5.3's DBC: 31 bits at the offset named by the last nibble.
pub fn dynamic_binary_code(mac: &[u8]) -> u32 {
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ])
}

/// The time step of an instant (T = floor(unix time / X), T0 = 0), as u64 beyond 2038.
pub fn step_at(now_ms: u64, period: u64) -> u64 {
    now_ms / 1000 / period.max(1)
}

/// A TOTP key ready to derive codes.
pub struct Totp {
    key: hmac::Key,
    params: TotpParams,
}

impl Totp {
    pub fn new(secret: &[u8], params: TotpParams) -> Self {
        Self {
            key: hmac::Key::new(params.algorithm.hmac(), secret),
            params,
        }
    }

    /// The code of a step, zero-padded to the factor's digits.
    pub fn code_at_step(&self, step: u64) -> String {
        format!(
            "{:0width$}",
            hotp(&self.key, step, self.params.digits),
            width = usize::from(self.params.digits)
        )
    }

    pub fn code_at(&self, now_ms: u64) -> String {
        self.code_at_step(step_at(now_ms, self.params.period))
    }

    /// The step among `now`-1, `now`, `now`+1 whose code is `code`, if any. Every candidate is
    /// derived and compared in constant time, so the time taken does not tell which one matched.
    pub fn matching_step(&self, code: &str, now_ms: u64) -> Option<u64> {
        if code.len() != usize::from(self.params.digits) {
            return None;
        }
        let now = step_at(now_ms, self.params.period);
        let mut found = None;
        for step in now.saturating_sub(WINDOW)..=now + WINDOW {
            let candidate = self.code_at_step(step);
            if bool::from(candidate.as_bytes().ct_eq(code.as_bytes())) {
                found = Some(step);
            }
        }
        found
    }
}

/// `otpauth://totp/Issuer:label?secret=…&issuer=…&algorithm=…&digits=…&period=…` (the Key URI
/// format every authenticator app reads).
pub fn otpauth_uri(issuer: &str, label: &str, secret_base32: &str, params: &TotpParams) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={secret_base32}&issuer={}&algorithm={}&digits={}&period={}",
        encode_component(issuer),
        encode_component(label),
        encode_component(issuer),
        params.algorithm.as_str(),
        params.digits,
        params.period
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The URI as a QR code in SVG, for the enrolment page to show as is.
pub fn qr_svg(uri: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    fn params(algorithm: Algorithm, digits: u8) -> TotpParams {
        TotpParams {
            algorithm,
            digits,
            period: 30,
        }
    }

    #[test]
    fn rfc4226_appendix_d_hmacs_truncations_and_hotp_values_match() {
        let hmacs = [
            "cc93cf18508d94934c64b65d8ba7667fb7cde4b0",
            "75a48a19d4cbe100644e8ac1397eea747a2d33ab",
            "0bacb7fa082fef30782211938bc1c5e70416ff44",
            "66c28227d03a2d5529262ff016a1e6ef76557ece",
            "a904c900a64b35909874b33e61c5938a8e15ed1c",
            "a37e783d7b7233c083d4f62926c7a25f238d0316",
            "bc9cd28561042c83f219324d3c607256c03272ae",
            "a4fb960c0bc06e1eabb804e5b397cdc4b45596fa",
            "1b3c89f65e6c9e883012052823443f048b4332db",
            "1637409809a679dc698207310c8c7fc07290d9e5",
        ];
        let truncated: [u32; 10] = [
            1284755224, 1094287082, 137359152, 1726969429, 1640338314, 868254676, 1918287922,
            82162583, 673399871, 645520489,
        ];
        let hotps = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, SEED_SHA1);
        let mut passed = 0;
        for count in 0..10u64 {
            let mac = hmac::sign(&key, &count.to_be_bytes());
            assert_eq!(
                data_encoding::HEXLOWER.encode(mac.as_ref()),
                hmacs[count as usize]
            );
            assert_eq!(dynamic_binary_code(mac.as_ref()), truncated[count as usize]);
            assert_eq!(hotp(&key, count, 6), hotps[count as usize]);
            passed += 3;
        }
        assert_eq!(passed, 30);
        // Section 5.4's worked example.
        let example = [
            0x1f, 0x86, 0x98, 0x69, 0x0e, 0x02, 0xca, 0x16, 0x61, 0x85, 0x50, 0xef, 0x7f, 0x19,
            0xda, 0x8e, 0x94, 0x5b, 0x55, 0x5a,
        ];
        assert_eq!(truncate(&example, 6), 872921);
    }

    const RFC6238: [(u64, u64, &str, &str, &str); 6] = [
        (59, 0x1, "94287082", "46119246", "90693936"),
        (1111111109, 0x23523EC, "07081804", "68084774", "25091201"),
        (1111111111, 0x23523ED, "14050471", "67062674", "99943326"),
        (1234567890, 0x273EF07, "89005924", "91819424", "93441116"),
        (2000000000, 0x3F940AA, "69279037", "90698825", "38618901"),
        (20000000000, 0x27BC86AA, "65353130", "77737706", "47863826"),
    ];

    #[test]
    fn rfc6238_appendix_b_all_eighteen_vectors_match_with_per_algorithm_seeds() {
        let mut passed = 0;
        for (time, step, sha1, sha256, sha512) in RFC6238 {
            assert_eq!(step_at(time * 1000, 30), step, "T for {time} as u64");
            for (algorithm, seed, expected) in [
                (Algorithm::Sha1, SEED_SHA1, sha1),
                (Algorithm::Sha256, SEED_SHA256, sha256),
                (Algorithm::Sha512, SEED_SHA512, sha512),
            ] {
                let totp = Totp::new(seed, params(algorithm, 8));
                assert_eq!(
                    totp.code_at(time * 1000),
                    expected,
                    "{algorithm:?} at {time}"
                );
                passed += 1;
            }
        }
        assert_eq!(passed, 18);
    }

    #[test]
    fn sha256_with_the_twenty_byte_seed_is_not_the_rfc_value() {
        let wrong = Totp::new(SEED_SHA1, params(Algorithm::Sha256, 8));
        assert_eq!(wrong.code_at(59_000), "32247374");
        assert_ne!(wrong.code_at(59_000), "46119246");
    }

    #[test]
    fn six_digit_codes_are_the_last_six_digits_of_the_eight_digit_ones() {
        let expected_sha1 = ["287082", "081804", "050471", "005924", "279037", "353130"];
        for (n, (time, _, sha1, sha256, sha512)) in RFC6238.into_iter().enumerate() {
            for (algorithm, seed, eight) in [
                (Algorithm::Sha1, SEED_SHA1, sha1),
                (Algorithm::Sha256, SEED_SHA256, sha256),
                (Algorithm::Sha512, SEED_SHA512, sha512),
            ] {
                let six = Totp::new(seed, params(algorithm, 6)).code_at(time * 1000);
                assert_eq!(six, eight[2..]);
            }
            assert_eq!(
                Totp::new(SEED_SHA1, params(Algorithm::Sha1, 6)).code_at(time * 1000),
                expected_sha1[n]
            );
        }
    }

    /// A small deterministic generator, so the property test needs no extra crate.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn a_code_is_accepted_exactly_when_its_step_is_within_one_of_now() {
        let mut random = SplitMix(0x6238);
        let cases = 100_000;
        let mut accepted = 0;
        for _ in 0..cases {
            let mut secret = [0u8; SECRET_BYTES];
            for chunk in secret.chunks_mut(8) {
                let bytes = random.next().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            let algorithm = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]
                [(random.next() % 3) as usize];
            let digits = if random.next().is_multiple_of(2) {
                6
            } else {
                8
            };
            let totp = Totp::new(&secret, params(algorithm, digits));
            let now_ms = random.next() % 40_000_000_000_000;
            let offset = (random.next() % 7) as i64 - 3;
            let now = step_at(now_ms, 30) as i64;
            let code = totp.code_at_step((now + offset) as u64);
            let matched = totp.matching_step(&code, now_ms);
            if (-1..=1).contains(&offset) {
                assert_eq!(matched, Some((now + offset) as u64));
                accepted += 1;
            } else {
                // A code of another step may collide with a live one by chance (1 in 10^digits
                // per live step); then the live step is what matched, never the far one.
                if let Some(step) = matched {
                    assert!((step as i64 - now).abs() <= 1);
                }
            }
        }
        assert!(accepted > cases / 3);
    }

    #[test]
    fn a_code_of_the_wrong_length_never_matches() {
        let totp = Totp::new(SEED_SHA1, params(Algorithm::Sha1, 6));
        let eight = Totp::new(SEED_SHA1, params(Algorithm::Sha1, 8)).code_at(59_000);
        assert_eq!(totp.matching_step(&eight, 59_000), None);
        assert_eq!(totp.matching_step("287082", 59_000), Some(1));
    }

    #[test]
    fn the_uri_names_issuer_label_and_parameters() {
        let uri = otpauth_uri(
            "Acme Inc",
            "alice@example.com",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            &params(Algorithm::Sha256, 8),
        );
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Inc:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Inc&algorithm=SHA256&digits=8&period=30"
        );
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"));
    }

    /// Not a benchmark harness, a figure for the report: one check derives three codes.
    #[test]
    fn a_check_takes_microseconds() {
        let totp = Totp::new(SEED_SHA1, params(Algorithm::Sha1, 6));
        let rounds = 20_000u64;
        let started = std::time::Instant::now();
        let mut hits = 0;
        for n in 0..rounds {
            if totp
                .matching_step("123456", 1_700_000_000_000 + n * 1000)
                .is_some()
            {
                hits += 1;
            }
        }
        let per_check = started.elapsed() / rounds as u32;
        println!("TOTP check (SHA-1, 3 steps): {per_check:?} per call ({hits} chance hits)");
        assert!(per_check < std::time::Duration::from_millis(1));
    }
}
