//! Criterion benches of every hot function on the request path, gathered in one target.
//!
//! Each group sets `Throughput` (one element per call, or the bytes handled) and does its setup
//! outside the timed closure. Where two ways of doing the same job exist they sit side by side
//! under one group with `BenchmarkId`, so a report reads as a comparison.
//!
//! Run all of them with `cargo bench --bench hot_paths`; `-- --quick` gives CI-friendly figures
//! in well under two minutes.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ring::rand::SystemRandom;
use serde::Deserialize;

use otpgate::account::login::{decide, AllowReason, Decision, Presented};
use otpgate::account::policy::{Policy, TrustDuration};
use otpgate::account::rules::Actor;
use otpgate::account::service::{AccountService, NewUser, PolicyUpdate};
use otpgate::account::settings::DirectorySettings;
use otpgate::account::trust::cache::{HotCache, Lookup};
use otpgate::account::trust::devices::Proof;
use otpgate::account::trust::metrics::HotPathMetrics;
use otpgate::account::trust::{mint_token, DeviceId, DeviceKey, DeviceRecord};
use otpgate::account::user::{User, UserId, UserRole};
use otpgate::account::{key_digest, AccountId, ApiKeyRecord, KeyDigest, Role};
use otpgate::cache::TtlCache;
use otpgate::clock::{rfc3339, Clock, SystemClock};
use otpgate::factors::crypto::FactorKeys;
use otpgate::factors::totp::{self, Algorithm, Totp, TotpParams};
use otpgate::http::table as routes;
use otpgate::http::wire::{CheckBody, VerificationBody};
use otpgate::memory::MemoryDirectory;
use otpgate::memory::MemoryStore;
use otpgate::metrics::Metrics;
use otpgate::phone::PhoneNumber;
use otpgate::verify::code::{self, CodeMac, MAX_CODE_LENGTH, MIN_CODE_LENGTH};
use otpgate::verify::model::{
    Channel, CheckOutcome, CheckTarget, CodeCheck, NewVerification, SendQuota, StartOutcome,
    VerificationId,
};
use otpgate::verify::store::Store;
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
        // The crate's general parser, which `parse` skips for E.164 text (the reference its
        // property tests compare it with).
        group.bench_with_input(
            BenchmarkId::new("with_phonenumber", name),
            input,
            |b, input| b.iter(|| PhoneNumber::parse_with_phonenumber(black_box(input))),
        );
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

/// The same body borrowing from the input: what a zero-copy parse would cost.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBodyBorrowed<'a> {
    id: Option<&'a str>,
    to: Option<&'a str>,
    code: &'a str,
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
            b.iter(|| {
                let body: CheckBodyBorrowed = serde_json::from_slice(black_box(body)).unwrap();
                black_box((body.id, body.to, body.code))
            })
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
        send_attempts: None,
        workflow: None,
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
        to: to.clone().into(),
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
        workflow: None,
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
            to: number.into(),
            ..new.clone()
        };
        runtime
            .block_on(store.start_verification(&filler))
            .expect("the memory store accepts it");
    }
    let wrong = mac.tag(account.as_str(), &Code::parse("000000").expect("valid"));
    let by_id = CheckTarget::Id(id);
    let by_number = CheckTarget::To(to.into());

    let mut group = c.benchmark_group("memory_store_check");
    group.throughput(Throughput::Elements(1));
    for (name, target) in [("by_id", &by_id), ("by_number", &by_number)] {
        group.bench_with_input(BenchmarkId::new("wrong_code", name), target, |b, target| {
            b.iter(|| {
                let outcome = runtime
                    .block_on(store.check_verification(&CodeCheck {
                        account: &account,
                        target,
                        tag: &wrong,
                        now_ms,
                        idempotency_key: None,
                    }))
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
                .block_on(store.check_verification(&CodeCheck {
                    account: &account,
                    target: &by_id,
                    tag: &tag,
                    now_ms,
                    idempotency_key: None,
                }))
                .expect("the memory store answers")
        })
    });
    group.finish();
}

/// A TOTP check (RFC 6238, SHA-1, 6 digits, 30 s): the codes of the current step and one either
/// side are derived and compared in constant time, so a match in any step and a wrong code cost
/// the same. `key_setup_and_check` adds the HMAC key set-up the service does per attempt, and
/// `open_setup_and_check` the AES-256-GCM opening of the sealed secret before it.
fn totp_check(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let secret = *b"12345678901234567890";
    let params = TotpParams {
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
    };
    let totp = Totp::new(&secret, params);
    let now_ms = 1_780_000_000_000u64;
    let step = totp::step_at(now_ms, params.period);
    let current = totp.code_at_step(step);
    let previous = totp.code_at_step(step - 1);
    let next = totp.code_at_step(step + 1);
    // A code of none of the three live steps.
    let wrong = (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|code| *code != current && *code != previous && *code != next)
        .expect("three codes cannot cover a million");
    assert_eq!(totp.matching_step(&current, now_ms), Some(step));
    assert_eq!(totp.matching_step(&previous, now_ms), Some(step - 1));
    assert_eq!(totp.matching_step(&next, now_ms), Some(step + 1));
    assert_eq!(totp.matching_step(&wrong, now_ms), None);
    let keys = FactorKeys::new(&[("k1".to_owned(), vec![3u8; 32])]).expect("one valid key");
    let context = b"AC0123456789abcdef0123456789abcdef|alice|FA0123456789abcdef0123456789abcdef";
    let sealed = keys.seal(&rng, context, &secret).expect("the key seals");

    let mut group = c.benchmark_group("totp_check");
    group.throughput(Throughput::Elements(1));
    for (name, code) in [
        ("current_step", &current),
        ("previous_step", &previous),
        ("wrong_code", &wrong),
    ] {
        group.bench_with_input(BenchmarkId::new("sha1_6_digits", name), code, |b, code| {
            b.iter(|| totp.matching_step(black_box(code), black_box(now_ms)))
        });
    }
    group.bench_function(
        BenchmarkId::new("sha1_6_digits", "key_setup_and_check"),
        |b| {
            b.iter(|| {
                Totp::new(black_box(&secret), params).matching_step(black_box(&current), now_ms)
            })
        },
    );
    group.bench_function(
        BenchmarkId::new("sha1_6_digits", "open_setup_and_check"),
        |b| {
            b.iter(|| {
                let secret = keys
                    .open(black_box(context), black_box(&sealed))
                    .expect("it opens");
                Totp::new(&secret, params).matching_step(black_box(&current), now_ms)
            })
        },
    );
    group.finish();
}

/// The trusted-device check without HTTP: the token digest (HMAC-SHA256 over account, user and
/// token under the device key), the hot-cache lookup of the device on a hit, and the service's
/// whole `check_device` with policy, user and device all cached (memory directory).
fn trusted_device(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let key = DeviceKey::new(&[9u8; 32]);
    let account = AccountId::random(&rng).expect("the OS generator works");
    let user = UserId::parse("alice@example.com").expect("a valid user id");
    let token = mint_token(&rng).expect("the OS generator works");
    let now_ms = 1_780_000_000_000u64;
    let record = |user: &UserId| DeviceRecord {
        id: DeviceId::random(&rng).expect("the OS generator works"),
        user: user.clone(),
        created_ms: now_ms,
        expires_ms: now_ms + TrustDuration::ThirtyDays.millis(),
        epoch: 0,
    };
    let cache = HotCache::new(Duration::from_secs(3_600), 100_000);
    cache.set_link(true);
    // A realistic population: ten thousand devices, the one we look up among them.
    for n in 0..10_000u32 {
        let other = UserId::parse(&format!("user{n}")).expect("a valid user id");
        let digest = key.digest(&account, &other, &mint_token(&rng).expect("works"));
        cache.put_device(cache.ticket(), digest, &account, record(&other), now_ms);
    }
    let digest = key.digest(&account, &user, &token);
    cache.put_device(cache.ticket(), digest, &account, record(&user), now_ms);
    assert!(matches!(cache.device(&digest, now_ms), Lookup::Hit(_)));

    let mut group = c.benchmark_group("trusted_device");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("check", "digest_only"), |b| {
        b.iter(|| key.digest(black_box(&account), black_box(&user), black_box(&token)))
    });
    group.bench_function(BenchmarkId::new("check", "cache_hit_only"), |b| {
        b.iter(|| cache.device(black_box(&digest), black_box(now_ms)))
    });
    group.bench_function(BenchmarkId::new("check", "digest_and_cache_hit"), |b| {
        b.iter(|| {
            cache.device(
                &key.digest(black_box(&account), black_box(&user), black_box(&token)),
                now_ms,
            )
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime starts");
    let fixture = runtime.block_on(ServiceFixture::new(1_000));
    group.bench_function(BenchmarkId::new("check", "service_all_cached"), |b| {
        b.iter(|| {
            let checked = runtime
                .block_on(fixture.service.check_device(
                    &fixture.account,
                    black_box(&fixture.user),
                    black_box(&fixture.token),
                ))
                .expect("the memory directory answers");
            debug_assert!(checked.trusted);
            checked
        })
    });
    group.finish();
}

/// The login decision with policy and user from the hot cache: the pure `decide` on values in
/// hand, and the service's `login` (cache lookups, digest, decision, metric) with a trusted
/// device (allow) and without one (an SMS challenge, which masks the phone number).
fn login_decision(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime starts");
    let fixture = runtime.block_on(ServiceFixture::new(1_000));
    let policy = fixture.policy;
    let user = fixture.user_record.clone();

    let mut group = c.benchmark_group("login_decision");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("decide_only", "trusted_device"), |b| {
        b.iter(|| {
            decide(
                black_box(&policy),
                black_box(&user),
                black_box(Presented {
                    trusted_device: true,
                    ..Presented::default()
                }),
            )
        })
    });
    group.bench_function(BenchmarkId::new("decide_only", "sms_challenge"), |b| {
        b.iter(|| {
            decide(
                black_box(&policy),
                black_box(&user),
                black_box(Presented::default()),
            )
        })
    });
    for (name, token) in [
        ("trusted_device", Some(fixture.token.as_str())),
        ("sms_challenge", None),
    ] {
        group.bench_with_input(
            BenchmarkId::new("service_cached", name),
            &token,
            |b, token| {
                b.iter(|| {
                    runtime
                        .block_on(fixture.service.login(
                            &fixture.account,
                            black_box(&fixture.user),
                            black_box(*token),
                            false,
                        ))
                        .expect("the memory directory answers")
                })
            },
        );
    }
    group.finish();
}

/// An account service on the memory directory: policy with 30-day trusted devices, `users`
/// users with phones, each with one trusted device, every one checked once so the hot cache
/// holds the policy, the users and the devices (the cache lives 10 minutes here).
struct ServiceFixture {
    service: AccountService,
    account: AccountId,
    user: UserId,
    user_record: User,
    token: String,
    policy: Policy,
}

impl ServiceFixture {
    async fn new(users: u32) -> Self {
        let rng = SystemRandom::new();
        let metrics = Metrics::new();
        let service = AccountService::new(
            Arc::new(MemoryDirectory::new(1_000)),
            Arc::new(HotCache::new(Duration::from_secs(600), 100_000)),
            Arc::new(HotPathMetrics::new(&metrics)),
            Arc::new(SystemClock),
            &[9u8; 32],
            DirectorySettings {
                cache_ttl: Duration::from_secs(600),
                cache_max_entries: 100_000,
                invalidation_ping: Duration::from_secs(5),
                max_devices_per_user: 10,
                audit_max_entries: 1_000,
            },
        );
        let account = AccountId::random(&rng).expect("the OS generator works");
        let owner = Actor::new(
            "KY0123456789abcdef0123456789abcdef".to_owned(),
            Role::Owner,
            None,
        );
        let policy = service
            .set_policy(
                &account,
                &owner,
                &PolicyUpdate {
                    trusted_device: Some(TrustDuration::ThirtyDays),
                    ..PolicyUpdate::default()
                },
            )
            .await
            .expect("the owner may allow trusted devices");
        let mut pairs = Vec::new();
        for n in 0..users {
            let id = UserId::parse(&format!("user{n}@example.com")).expect("a valid user id");
            service
                .create_user(
                    &account,
                    &owner,
                    &NewUser {
                        id: Some(id.clone()),
                        role: UserRole::Member,
                        phone: Some(PhoneNumber::parse(&format!("+49151{n:08}")).expect("valid")),
                        email: None,
                        two_factor: None,
                    },
                )
                .await
                .expect("the owner adds users");
            let expires_ms = SystemClock.now_ms() + 600_000;
            let trusted = service
                .trust_device(
                    &account,
                    &owner,
                    &id,
                    &Proof::Challenge {
                        id: format!("CH{n:032x}"),
                        user: id.clone(),
                        expires_ms,
                    },
                )
                .await
                .expect("a fresh challenge of this user trusts a device");
            let checked = service
                .check_device(&account, &id, &trusted.token)
                .await
                .expect("the memory directory answers");
            assert!(checked.trusted, "a device just trusted is trusted");
            pairs.push((id, trusted.token));
        }
        let (user, token) = pairs.swap_remove(pairs.len() / 2);
        let now = SystemClock.now_ms();
        assert!(matches!(
            service.cache().policy(&account, now),
            Lookup::Hit(_)
        ));
        let user_record = match service.cache().user(&account, &user, now) {
            Lookup::Hit(found) => User::clone(&found),
            other => panic!("the user should be cached, got {other:?}"),
        };
        assert_eq!(
            service
                .login(&account, &user, Some(&token), false)
                .await
                .expect("the memory directory answers"),
            Decision::Allow(AllowReason::TrustedDevice)
        );
        Self {
            service,
            account,
            user,
            user_record,
            token,
            policy,
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = code_generation, code_mac, phone_parse, api_key_lookup, route_lookup, json,
        memory_store_check, totp_check, trusted_device, login_decision
}
criterion_main!(benches);
