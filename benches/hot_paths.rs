//! Criterion benches of every hot function on the request path, gathered in one target.
//!
//! Each group sets `Throughput` (one element per call, or the bytes handled) and does its setup
//! outside the timed closure. Where two ways of doing the same job exist they sit side by side
//! under one group with `BenchmarkId`, so a report reads as a comparison.
//!
//! Run all of them with `cargo bench --bench hot_paths`; `-- --quick` gives CI-friendly figures
//! in well under two minutes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

use otpgate::account::{key_digest, AccountId, ApiKeyRecord, KeyDigest, Role};
use otpgate::cache::TtlCache;
use otpgate::clock::rfc3339;
use otpgate::http::routes;
use otpgate::phone::PhoneNumber;
use otpgate::store::memory::MemoryStore;
use otpgate::store::Store;
use otpgate::verify::code::{self, CodeMac, MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use otpgate::verify::model::{
    Channel, CheckOutcome, CheckTarget, NewVerification, SendQuota, StartOutcome, VerificationId,
};
use otpgate::verify::Code;

/// Code generation: one draw from the OS generator plus formatting, for the shortest, the
/// default and the longest code.
fn code_generation(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let mut group = c.benchmark_group("code_generate");
    group.throughput(Throughput::Elements(1));
    for length in [MIN_CODE_LENGTH, 6, MAX_CODE_LENGTH] {
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{length}_digits")),
            &length,
            |b, &length| b.iter(|| code::generate(&rng, black_box(length))),
        );
    }
    group.finish();
}

/// The code MAC: HMAC-SHA256 over account id and code, once per send and once per check.
fn code_mac(c: &mut Criterion) {
    let mac = CodeMac::new(&[7u8; 32]);
    let account = "AC0123456789abcdef0123456789abcdef";
    let code = Code::parse("123456").expect("a constant valid code");
    let mut group = c.benchmark_group("code_mac");
    group.throughput(Throughput::Bytes((account.len() + 1 + 6) as u64));
    group.bench_function("tag", |b| {
        b.iter(|| mac.tag(black_box(account), black_box(&code)))
    });
    // Parsing the typed code is part of every check, so it is shown next to the MAC.
    group.bench_function("parse_and_tag", |b| {
        b.iter(|| {
            let code = Code::parse(black_box("123456")).expect("valid");
            mac.tag(black_box(account), &code)
        })
    });
    group.finish();
}

/// Phone parsing: strict E.164 check plus libphonenumber metadata validation, for a valid
/// number, a number refused by the cheap syntax check, and one refused by the metadata.
fn phone_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("phone_parse");
    group.throughput(Throughput::Elements(1));
    for (name, input) in [
        ("valid_de_mobile", "+4915112345678"),
        ("valid_us", "+14155552671"),
        ("refused_syntax", "+49 151 1234"),
        ("refused_metadata", "+99912345678"),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter(|| PhoneNumber::parse(black_box(input)))
        });
    }
    group.finish();
}

/// Authentication of a request: digest the bearer key, then find its record in the cache.
fn api_key_lookup(c: &mut Criterion) {
    let key = "ogk_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5";
    let rng = SystemRandom::new();
    let account = AccountId::random(&rng).expect("the OS generator works");
    let cache: TtlCache<KeyDigest, ApiKeyRecord> = TtlCache::new(Duration::from_secs(30), 100_000);
    // A realistic population: a thousand keys, the one we look up among them.
    for n in 0..1_000u32 {
        let secret = format!("ogk_filler_{n}");
        let digest = key_digest(&secret);
        cache.insert(digest, record(&account, digest), 0);
    }
    let digest = key_digest(key);
    cache.insert(digest, record(&account, digest), 0);

    let mut group = c.benchmark_group("api_key");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("lookup", "digest_only"), |b| {
        b.iter(|| key_digest(black_box(key)))
    });
    group.bench_function(BenchmarkId::new("lookup", "cache_hit_only"), |b| {
        b.iter(|| cache.get(black_box(&digest), 1_000))
    });
    group.bench_function(BenchmarkId::new("lookup", "digest_and_cache_hit"), |b| {
        b.iter(|| cache.get(&key_digest(black_box(key)), 1_000))
    });
    let missing = key_digest("ogk_not_a_key");
    group.bench_function(BenchmarkId::new("lookup", "cache_miss"), |b| {
        b.iter(|| cache.get(black_box(&missing), 1_000))
    });
    group.finish();
}

fn record(account: &AccountId, digest: KeyDigest) -> ApiKeyRecord {
    ApiKeyRecord {
        id: "KY0123456789abcdef0123456789abcdef".to_owned(),
        account: account.clone(),
        role: Role::Service,
        digest,
        created_ms: 0,
    }
}

/// Route lookup for the hot paths, a path with a parameter, and an unknown path.
fn route_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_find");
    group.throughput(Throughput::Elements(1));
    for (name, path) in [
        ("check", "/v1/verifications/check"),
        ("start", "/v1/verifications"),
        (
            "get_by_id",
            "/v1/verifications/VE07abcdef0123456789abcdef012345",
        ),
        ("not_found", "/v2/nothing/here"),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), path, |b, path| {
            b.iter(|| routes::find(black_box(path)))
        });
    }
    group.finish();
}

/// The check request body as the HTTP layer reads it (mirrors `http::handlers::CheckBody`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the fields are read only by serde; the bench measures the parse
struct CheckBody {
    id: Option<String>,
    to: Option<String>,
    code: String,
}

/// The same body borrowing from the input: what a zero-copy parse would cost.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CheckBodyBorrowed<'a> {
    id: Option<&'a str>,
    to: Option<&'a str>,
    code: &'a str,
}

/// A verification as the API shows it (mirrors `http::handlers::VerificationBody`).
#[derive(Serialize)]
struct VerificationBody<'a> {
    id: &'a str,
    account_id: &'a str,
    to: &'a str,
    channel: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid: Option<bool>,
    attempts_left: u32,
    send_count: u32,
    code_length: u8,
    created_at: String,
    expires_at: String,
}

fn json(c: &mut Criterion) {
    let by_id = br#"{"id":"VE07abcdef0123456789abcdef012345","code":"000000"}"#;
    let by_to = br#"{"to":"+4915112345678","code":"000000"}"#;
    let mut group = c.benchmark_group("json_parse_check_body");
    for (name, body) in [("by_id", &by_id[..]), ("by_to", &by_to[..])] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("owned", name), body, |b, body| {
            b.iter(|| serde_json::from_slice::<CheckBody>(black_box(body)))
        });
        group.bench_with_input(BenchmarkId::new("borrowed", name), body, |b, body| {
            b.iter(|| serde_json::from_slice::<CheckBodyBorrowed>(black_box(body)))
        });
    }
    group.finish();

    let created_ms = 1_780_000_000_000u64;
    let expires_ms = created_ms + 600_000;
    let mut group = c.benchmark_group("json_encode_verification");
    let sample = serde_json::to_vec(&verification_body(created_ms, expires_ms))
        .expect("the body serialises");
    group.throughput(Throughput::Bytes(sample.len() as u64));
    // The handler formats both timestamps and then serialises: both are on the hot path.
    group.bench_function("with_timestamps", |b| {
        b.iter(|| {
            serde_json::to_vec(&verification_body(
                black_box(created_ms),
                black_box(expires_ms),
            ))
        })
    });
    let prepared = verification_body(created_ms, expires_ms);
    group.bench_function("serialise_only", |b| {
        b.iter(|| serde_json::to_vec(black_box(&prepared)))
    });
    let mut buffer = Vec::with_capacity(512);
    group.bench_function("serialise_into_reused_buffer", |b| {
        b.iter(|| {
            buffer.clear();
            serde_json::to_writer(&mut buffer, black_box(&prepared))
        })
    });
    group.bench_function("rfc3339_only", |b| {
        b.iter(|| rfc3339(black_box(created_ms)))
    });
    group.finish();
}

fn verification_body(created_ms: u64, expires_ms: u64) -> VerificationBody<'static> {
    VerificationBody {
        id: "VE07abcdef0123456789abcdef012345",
        account_id: "AC0123456789abcdef0123456789abcdef",
        to: "+4915112345678",
        channel: "sms",
        status: "pending",
        valid: Some(false),
        attempts_left: 999_999,
        send_count: 1,
        code_length: 6,
        created_at: rfc3339(created_ms),
        expires_at: rfc3339(expires_ms),
    }
}

/// A check on the memory store with a wrong tag: compare, count the attempt, copy the state out.
/// `max_attempts` is huge so every iteration takes the full path and the record stays pending.
fn memory_store_check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime starts");
    let rng = SystemRandom::new();
    let store = MemoryStore::new(1_000_000);
    let account = AccountId::random(&rng).expect("the OS generator works");
    let mac = CodeMac::new(&[7u8; 32]);
    let to = PhoneNumber::parse("+4915112345678").expect("a valid German mobile number");
    // Now, so the record does not expire under a long run; a far-future clock is passed below.
    let now_ms = otpgate::clock::Clock::now_ms(&otpgate::clock::SystemClock);
    let new = NewVerification {
        id: VerificationId::random(&rng, to.shard()).expect("the OS generator works"),
        account: account.clone(),
        to: to.clone(),
        channel: Channel::Sms,
        code_tag: mac.tag(account.as_str(), &Code::parse("123456").expect("valid")),
        code_length: 6,
        now_ms,
        ttl_ms: 600_000,
        retention_ms: 3_600_000,
        max_attempts: u32::MAX,
        max_sends: 5,
        send_quota: SendQuota {
            limit: 1_000,
            window_ms: 600_000,
        },
        idempotency_key: None,
        // The memory store queues nothing itself; the dispatcher does.
        outbox: None,
    };
    let id = match runtime
        .block_on(store.start_verification(&new))
        .expect("the memory store accepts it")
    {
        StartOutcome::Created(verification) => verification.id,
        other => panic!("expected a new verification, got {other:?}"),
    };
    // Fill the store around it so the lookups hash into realistic maps.
    for n in 0..10_000u32 {
        let number = PhoneNumber::parse(&format!("+49151{n:08}")).expect("valid");
        let filler = NewVerification {
            id: VerificationId::random(&rng, number.shard()).expect("the OS generator works"),
            to: number,
            ..new.clone()
        };
        runtime
            .block_on(store.start_verification(&filler))
            .expect("the memory store accepts it");
    }
    let wrong = mac.tag(account.as_str(), &Code::parse("000000").expect("valid"));
    let by_id = CheckTarget::Id(id);
    let by_number = CheckTarget::To(to);

    let mut group = c.benchmark_group("memory_store_check");
    group.throughput(Throughput::Elements(1));
    for (name, target) in [("by_id", &by_id), ("by_number", &by_number)] {
        group.bench_with_input(BenchmarkId::new("wrong_code", name), target, |b, target| {
            b.iter(|| {
                let outcome = runtime
                    .block_on(store.check_verification(&account, target, &wrong, now_ms))
                    .expect("the memory store answers");
                debug_assert!(matches!(
                    outcome,
                    CheckOutcome::Checked { valid: false, .. }
                ));
                outcome
            })
        });
    }
    // The whole domain-side check minus HTTP: parse the typed code, MAC it, then the store step.
    group.bench_function(BenchmarkId::new("parse_mac_check", "by_id"), |b| {
        b.iter(|| {
            let code = Code::parse(black_box("000000")).expect("valid");
            let tag = mac.tag(account.as_str(), &code);
            runtime
                .block_on(store.check_verification(&account, &by_id, &tag, now_ms))
                .expect("the memory store answers")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = code_generation, code_mac, phone_parse, api_key_lookup, route_lookup, json,
        memory_store_check
}
criterion_main!(benches);
