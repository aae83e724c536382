//! Abuse protection through the API (issue 16): geo permissions and number types refuse a send
//! before anything is stored or sent, the pumping guard throttles a prefix that sends without
//! approvals and leaves a converting one alone, the safe list bypasses it, two instances share
//! its counters, daily caps hold until midnight UTC, `GET /v1/usage` shows all of it, and the
//! Twilio facade answers with Twilio's codes.

use std::time::Duration;

use otpgate::clock::Clock;
use serde_json::{json, Value};

use crate::helpers::{
    reply, spawn_app, spawn_app_with, spawn_peer, Backend, Reply, TestApp, ROOT_KEY,
};
use crate::on_every_store;
use crate::redis_harness::RedisServer;

on_every_store!(
    an_account_allowing_only_de_and_at_refuses_other_countries_and_stores_and_sends_nothing,
    number_types_are_refused_by_type_and_the_owner_may_allow_more,
    a_pumped_prefix_is_throttled_while_a_converting_one_of_the_same_country_is_not,
    daily_caps_refuse_past_the_cap_until_midnight_utc,
    bad_abuse_policies_are_refused_and_change_nothing,
);

/// An owner key of the app's account.
async fn owner(app: &TestApp) -> String {
    app.mint_key(&app.account_id, "owner").await
}

async fn put_abuse(app: &TestApp, key: &str, abuse: Value) -> Reply {
    app.request(
        reqwest::Method::PUT,
        "/v1/policy",
        Some(key),
        Some(json!({ "abuse": abuse })),
    )
    .await
}

async fn usage(app: &TestApp, key: &str) -> Reply {
    let usage = app
        .request(reqwest::Method::GET, "/v1/usage", Some(key), None)
        .await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    usage
}

/// The account's audit entries of `action`, newest first.
async fn audited(app: &TestApp, key: &str, action: &str) -> Vec<Value> {
    let page = app
        .request(reqwest::Method::GET, "/v1/audit?limit=500", Some(key), None)
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let entries = page.body["entries"].as_array().cloned().unwrap_or_default();
    entries
        .into_iter()
        .filter(|entry| entry["action"] == action)
        .collect()
}

/// The sum of a metric's samples whose labels hold every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Lets the pumping guard through for every number starting so: for the suites that send
/// thousands of codes without approving them (a safe list bypasses the guard; caps are off).
pub async fn safe_list(app: &TestApp, prefix: &str) {
    let key = owner(app).await;
    let answer = put_abuse(app, &key, json!({ "safe_list": [format!("{prefix}*")] })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

fn assert_refused(reply: &Reply, rule: &str) {
    let status = if rule.ends_with("permission") || rule == "number-type" {
        422
    } else {
        429
    };
    let slug = if status == 422 { "refused" } else { rule };
    reply.assert_problem(status, slug);
    assert_eq!(reply.body["rule"], rule, "{}", reply.body);
}

async fn an_account_allowing_only_de_and_at_refuses_other_countries_and_stores_and_sends_nothing(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let owner = owner(&app).await;
    let only = json!({"geo": {"sms": {"countries": ["DE", "AT"]}}});
    let policy = put_abuse(&app, &owner, only).await;
    assert_eq!(policy.status, 200, "{}", policy.body);
    assert_eq!(
        policy.body["abuse"]["geo"]["sms"]["countries"],
        json!(["AT", "DE"])
    );
    let read = app.get("/v1/policy").await;
    assert_eq!(read.body["abuse"], policy.body["abuse"], "{}", read.body);

    let us = "+14155552671";
    let refused = app.send(us).await;
    assert_refused(&refused, "geo-permission");
    assert_eq!(refused.body["country"], "US");
    // Nothing stored: no verification to check, and a second refusal is the same refusal.
    app.check_to(us, "123456")
        .await
        .assert_problem(404, "not-found");
    assert_refused(&app.send(us).await, "geo-permission");
    // WhatsApp keeps the operator's default: every region but the high-risk list.
    let whatsapp = app
        .post(
            "/v1/verifications",
            json!({"to": us, "channel": "whatsapp"}),
        )
        .await;
    assert_eq!(whatsapp.status, 201, "{}", whatsapp.body);

    assert_eq!(app.send("+4915112345678").await.status, 201);
    assert_eq!(app.send("+436641234567").await.status, 201);
    let messages = app.wait_for_messages(3).await;
    let texts_to_us = messages
        .iter()
        .filter(|message| message["to"] == us && message["channel"] == "sms")
        .count();
    assert_eq!(texts_to_us, 0, "nothing was sent: {messages:?}");

    let today = usage(&app, &owner).await;
    assert_eq!(today.body["total"], 3, "{}", today.body);
    assert_eq!(
        today.body["countries"],
        json!({"AT": 1, "DE": 1, "US": 1}),
        "refused sends count nowhere"
    );

    let changes = audited(&app, &owner, "policy.updated").await;
    assert_eq!(
        changes[0]["details"]["after"]["abuse"]["geo"]["sms"]["countries"],
        json!(["AT", "DE"]),
        "{changes:?}"
    );
    assert_eq!(changes[0]["details"]["before"]["abuse"], json!({}));
    let metrics = app.metrics().await;
    let refusals = metric(
        &metrics,
        "otpgate_verifications_started_total",
        &["outcome=\"geo-permission\""],
    );
    assert_eq!(refusals, 2);
    assert_eq!(
        metric(
            &metrics,
            "otpgate_sends_admitted_total",
            &["country_code=\"DE\""]
        ),
        1
    );
    app.stop().await;
}

async fn number_types_are_refused_by_type_and_the_owner_may_allow_more(backend: Backend) {
    let app = spawn_app(backend).await;
    // libphonenumber's example numbers of each type, in several plans.
    let table = [
        ("+499001234567", "premium_rate"),
        ("+449012345678", "premium_rate"),
        ("+19002345678", "premium_rate"),
        ("+18002345678", "toll_free"),
        ("+448001234567", "toll_free"),
        ("+4930123456", "fixed_line"),
        ("+33123456789", "fixed_line"),
        ("+445612345678", "voip"),
        ("+33912345678", "voip"),
        ("+4918012345", "shared_cost"),
    ];
    for (to, number_type) in table {
        let refused = app.send(to).await;
        assert_refused(&refused, "number-type");
        assert_eq!(refused.body["number_type"], number_type, "{to}");
    }
    for mobile in [
        "+4915123456789",
        "+447400123456",
        "+12015550123",
        "+33612345678",
    ] {
        assert_eq!(app.send(mobile).await.status, 201, "{mobile}");
    }

    // The owner lets SMS reach VoIP numbers too; premium rate stays out of reach.
    let owner = owner(&app).await;
    let voip = json!({"number_types": {"sms": ["mobile", "fixed_line_or_mobile", "voip"]}});
    assert_eq!(put_abuse(&app, &owner, voip).await.status, 200);
    assert_eq!(app.send("+445612345678").await.status, 201);
    assert_refused(&app.send("+449012345678").await, "number-type");
    app.stop().await;
}

/// Sends to `to` and, when `approve`, checks the delivered code (the `nth` message overall).
async fn send_and_maybe_approve(app: &TestApp, to: &str, nth: usize, approve: bool) -> Reply {
    let sent = app.send(to).await;
    if sent.status == 201 && approve {
        let code = app.code_sent_to(to, nth).await;
        let checked = app.check_to(to, &code).await;
        assert_eq!(checked.body["status"], "approved", "{}", checked.body);
    }
    sent
}

async fn a_pumped_prefix_is_throttled_while_a_converting_one_of_the_same_country_is_not(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let owner = owner(&app).await;
    let (mut delivered, mut pumped_sent, mut throttled_at) = (0, 0, None);
    // Ten minutes: a send every five seconds to each prefix; only the first prefix's codes are
    // approved.
    for n in 0..60 {
        let converting = format!("+491512222{n:04}");
        let sent = send_and_maybe_approve(&app, &converting, delivered + 1, true).await;
        assert_eq!(sent.status, 201, "converting send {n}: {}", sent.body);
        delivered += 1;
        let pumped = app.send(&format!("+491519999{n:04}")).await;
        match pumped.status {
            201 => {
                pumped_sent += 1;
                delivered += 1;
            }
            _ => {
                assert_refused(&pumped, "suspected-pumping");
                assert_eq!(pumped.body["scope"], "prefix");
                let retry_after: u64 = pumped.headers["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((3_540..=3_600).contains(&retry_after), "{retry_after}");
                throttled_at.get_or_insert(n);
            }
        }
        app.clock.advance(Duration::from_secs(5));
    }
    assert_eq!(
        throttled_at,
        Some(49),
        "the 50th send without approvals is refused"
    );
    assert_eq!(pumped_sent, 49);

    let today = usage(&app, &owner).await;
    let blocks = today.body["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{}", today.body);
    assert_eq!(blocks[0]["prefix"], "+491519999");
    assert_eq!(blocks[0]["rule"], "suspected-pumping");
    assert_eq!(today.body["countries"]["DE"], 109);
    assert_eq!(audited(&app, &owner, "abuse.blocked").await.len(), 1);
    let metrics = app.metrics().await;
    let labels = ["country=\"DE\"", "rule=\"suspected-pumping\""];
    assert_eq!(metric(&metrics, "otpgate_abuse_blocks_total", &labels), 1);
    assert!(
        metric(
            &metrics,
            "otpgate_verification_approvals_total",
            &["country_code=\"DE\""]
        ) >= 60
    );

    // A safe-listed number passes the guard; the rest of its prefix stays paused.
    let safe = json!({"safe_list": ["+4915199990999"]});
    assert_eq!(put_abuse(&app, &owner, safe).await.status, 200);
    assert_eq!(app.send("+4915199990999").await.status, 201);
    assert_refused(&app.send("+4915199990998").await, "suspected-pumping");
    // When the cool-down ends, the same rules judge again.
    app.clock.advance(Duration::from_secs(3_600));
    assert_eq!(app.send("+4915199990997").await.status, 201);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_share_the_pumping_guards_counters() {
    let first = spawn_app(Backend::Redis).await;
    let second = spawn_peer(&first, Backend::Redis).await;
    let mut throttled_at = None;
    for n in 0..60 {
        let instance = if n % 2 == 0 { &first } else { &second };
        let sent = instance.send(&format!("+491519999{n:04}")).await;
        if sent.status != 201 {
            assert_refused(&sent, "suspected-pumping");
            throttled_at.get_or_insert(n);
        }
        first.clock.advance(Duration::from_secs(5));
    }
    assert_eq!(throttled_at, Some(49), "one count across both instances");
    let owner = owner(&first).await;
    assert_eq!(
        usage(&second, &owner).await.body["blocks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    second.stop().await;
    first.stop().await;
}

async fn daily_caps_refuse_past_the_cap_until_midnight_utc(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = owner(&app).await;
    let caps = json!({"caps": {"total": 3, "per_country": 2}});
    assert_eq!(put_abuse(&app, &owner, caps).await.status, 200);
    assert_eq!(app.send("+4915112340001").await.status, 201);
    assert_eq!(app.send("+4915112340002").await.status, 201);
    let country = app.send("+4915112340003").await;
    assert_refused(&country, "daily-message-cap");
    assert_eq!(country.body["scope"], "country");
    assert_eq!(app.send("+436641234567").await.status, 201);
    let account = app.send("+447400123456").await;
    assert_refused(&account, "daily-message-cap");
    assert_eq!(account.body["scope"], "account");
    let now_ms = app.clock.now_ms();
    let to_midnight = (86_400_000 - now_ms % 86_400_000).div_ceil(1000);
    assert_eq!(
        account.headers["retry-after"],
        to_midnight.to_string().as_str()
    );
    assert_refused(&app.send("+447400123457").await, "daily-message-cap");

    let today = usage(&app, &owner).await;
    assert_eq!(today.body["total"], 3);
    assert_eq!(today.body["caps"], json!({"total": 3, "per_country": 2}));
    // One entry and one count per cap reached, not per refusal.
    assert_eq!(audited(&app, &owner, "abuse.blocked").await.len(), 2);
    let metrics = app.metrics().await;
    let caps = ["rule=\"daily-message-cap\""];
    assert_eq!(metric(&metrics, "otpgate_abuse_blocks_total", &caps), 2);

    app.clock.advance(Duration::from_millis(to_midnight * 1000));
    assert_eq!(app.send("+4915112340003").await.status, 201);
    assert_eq!(usage(&app, &owner).await.body["total"], 1);
    app.stop().await;
}

async fn bad_abuse_policies_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = owner(&app).await;
    let before = app.get("/v1/policy").await;
    let too_long: Vec<String> = (0..101).map(|n| format!("+4915112{n:04}*")).collect();
    for bad in [
        json!({"geo": {"sms": {"countries": ["XX"]}}}),
        json!({"geo": {"sms": {"countries": []}}}),
        json!({"number_types": {"sms": ["premium_rate"]}}),
        json!({"guard": {"prefix": {"min_sends": 0, "min_conversion_percent": 20, "surge_factor": 10, "surge_min_sends": 100, "cooldown_seconds": 3600}}}),
        json!({"caps": {"total": 0}}),
        json!({"safe_list": ["0151*"]}),
        json!({"safe_list": too_long}),
        json!({"colour": "red"}),
    ] {
        let refused = put_abuse(&app, &owner, bad.clone()).await;
        refused.assert_problem(400, "invalid-request");
        assert_eq!(app.get("/v1/policy").await.body, before.body, "{bad}");
    }
    // A partner acts for a client and never changes its protection; an admin may.
    let partner = app.mint_key(&app.account_id, "partner").await;
    let looser = json!({"geo": {"sms": {"countries": ["*"]}}});
    let refused = put_abuse(&app, &partner, looser.clone()).await;
    refused.assert_problem(422, "refused");
    assert_eq!(refused.body["rule"], "partners-never-weaken-protection");
    let admin = app.mint_key(&app.account_id, "admin").await;
    assert_eq!(put_abuse(&app, &admin, looser).await.status, 200);
    // The usage is the owner's and admins' to read.
    for (key, status) in [
        (&app.key, 403),
        (&partner, 403),
        (&admin, 200),
        (&owner, 200),
    ] {
        let answer = app
            .request(reqwest::Method::GET, "/v1/usage", Some(key), None)
            .await;
        assert_eq!(answer.status, status, "{}", answer.body);
    }
    let root = app
        .request(reqwest::Method::GET, "/v1/usage", Some(ROOT_KEY), None)
        .await;
    assert_eq!(root.status, 403, "{}", root.body);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twilio_facade_answers_twilios_codes() {
    let app = spawn_app(Backend::Memory).await;
    let owner = owner(&app).await;
    let only = json!({"geo": {"sms": {"countries": ["DE"]}}});
    assert_eq!(put_abuse(&app, &owner, only).await.status, 200);
    for (to, status, code) in [("+14155552671", 403, 60605), ("+4930123456", 400, 60205)] {
        let refused = twilio_send(&app, to).await;
        assert_twilio(&refused, status, code);
    }
    let mut last = None;
    for n in 0..50 {
        last = Some(twilio_send(&app, &format!("+491519999{n:04}")).await);
    }
    let pumped = last.unwrap();
    assert_twilio(&pumped, 403, 60410);
    assert!(pumped.headers.contains_key("retry-after"));
    app.stop().await;
}

fn assert_twilio(reply: &Reply, status: u16, code: u64) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["code"], code, "{}", reply.body);
}

/// A Twilio Verify start, as the SDKs send it.
async fn twilio_send(app: &TestApp, to: &str) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("To", to), ("Channel", "sms")])
        .finish();
    let request = app
        .http
        .post(format!(
            "{}/v2/Services/VA{}/Verifications",
            app.address,
            &app.account_id[2..]
        ))
        .basic_auth(&app.account_id, Some(&app.key))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    reply(request.send().await.expect("the server answers")).await
}

/// A gateway on a Redis of its own (so its command counts are the gateway's alone) with no
/// worker running, and an owner key of its account.
async fn on_a_redis_of_its_own() -> (RedisServer, TestApp, String) {
    let redis = RedisServer::start(&[]);
    let app = spawn_app_with(Backend::RedisAt(redis.url()), |settings| {
        settings.dispatch.workers = false;
    })
    .await;
    let owner = owner(&app).await;
    (redis, app, owner)
}

/// On a single Redis a send is one script call, abuse protection's admission included (the
/// issue's bound: no second round trip), and a refused one too (the account's policy is a cache
/// hit, and no worker runs here; background tasks' pings and polls are not scripts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_on_a_single_redis_is_one_script_call_admission_included() {
    let (redis, app, owner) = on_a_redis_of_its_own().await;
    let caps = json!({"caps": {"total": 2}});
    assert_eq!(put_abuse(&app, &owner, caps).await.status, 200);
    // The first send loads the script and fills the policy cache.
    assert_eq!(app.send("+4915112340001").await.status, 201);
    let calls = || {
        let stats = redis.command(&["INFO", "commandstats"]);
        let count = |command: &str| -> u64 {
            stats
                .lines()
                .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |calls| calls.parse().unwrap())
        };
        (count("evalsha"), count("eval"), count("script|load"))
    };
    assert!(redis.command(&["CONFIG", "RESETSTAT"]).starts_with("+OK"));
    assert_eq!(app.send("+4915112340002").await.status, 201);
    assert_eq!(calls(), (1, 0, 0), "one EVALSHA and no other script");
    assert_eq!(app.send("+4915112340003").await.status, 429);
    assert_eq!(calls(), (2, 0, 0), "a refused send is the same one call");
    app.stop().await;
}

/// On a single Redis, a burst to one prefix at one instant: most sends use sends an earlier
/// admission counted ahead (src/abuse/reserve.rs) and run the start script alone, and still the
/// 50th send without approvals is the first refused and the usage counts exactly the sends let
/// through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_one_prefix_skips_most_admissions_and_still_refuses_the_50th() {
    let (redis, app, owner) = on_a_redis_of_its_own().await;
    // The clock at a minute's start: sends are counted ahead only in a minute's first 58 s.
    let into_minute = app.clock.now_ms() % 60_000;
    app.clock
        .advance(Duration::from_millis(60_000 - into_minute));
    // The first sends load both scripts (the fifth runs the start alone) and fill the policy
    // cache.
    for n in 1..=5 {
        assert_eq!(app.send(&format!("+491511234000{n}")).await.status, 201);
    }
    for setting in [
        ["slowlog-log-slower-than", "0"],
        ["slowlog-max-len", "1000"],
    ] {
        assert!(redis
            .command(&["CONFIG", "SET", setting[0], setting[1]])
            .starts_with("+OK"));
    }
    assert!(redis.command(&["SLOWLOG", "RESET"]).starts_with("+OK"));
    let mut refused_at = None;
    // Script calls by script (the start alone, and the admission with the start), read from the
    // slow log after each send (every command is logged; one send's entries fit a reply).
    let mut by_script = std::collections::BTreeMap::<String, u32>::new();
    for n in 0..60 {
        let sent = app.send(&format!("+491519999{n:04}")).await;
        if sent.status != 201 {
            assert_refused(&sent, "suspected-pumping");
            refused_at.get_or_insert(n);
        }
        let log = redis.command(&["SLOWLOG", "GET", "100"]);
        assert!(redis.command(&["SLOWLOG", "RESET"]).starts_with("+OK"));
        let lines: Vec<&str> = log.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.eq_ignore_ascii_case("evalsha") {
                *by_script.entry(lines[i + 2].to_owned()).or_default() += 1;
            }
        }
    }
    assert_eq!(refused_at, Some(49), "the 50th send without approvals");
    let mut calls: Vec<u32> = by_script.into_values().collect();
    calls.sort_unstable_by(|a, b| b.cmp(a));
    // Of the 49 sent, 2 were admissions (asking for 0 and 1 more) and 5 refilled the pool with
    // their start (4, 6, 12 and 24 more, reaching the 49th; the fifth was granted none, and the
    // pool is not refilled again); the 11 refused were admissions; the other 42 ran the start
    // alone.
    assert_eq!(calls, [42, 18], "one script call per send");
    let today = usage(&app, &owner).await;
    assert_eq!(today.body["total"], 54, "{}", today.body);
    app.stop().await;
}
