//! Unit tests of the parent module.

use super::*;

#[tokio::test]
async fn a_zero_bound_makes_one_try() {
    let mut tries = 0;
    let result: Result<(), &str> = retry_within(Duration::ZERO, || {
        tries += 1;
        async { Err("down") }
    })
    .await;
    assert_eq!((result, tries), (Err("down"), 1));
}

#[tokio::test]
async fn failures_are_retried_until_one_succeeds_within_the_bound() {
    let mut tries = 0;
    let result = retry_within(Duration::from_secs(5), || {
        tries += 1;
        let answer = if tries < 3 { Err("down") } else { Ok(tries) };
        async move { answer }
    })
    .await;
    assert_eq!(result, Ok(3));
}

#[tokio::test]
async fn the_last_error_comes_back_once_the_bound_has_passed() {
    let started = std::time::Instant::now();
    let mut tries = 0;
    let result: Result<(), u32> = retry_within(Duration::from_millis(300), || {
        tries += 1;
        let attempt = tries;
        async move { Err(attempt) }
    })
    .await;
    // 50 ms, then 100 ms between tries; the next pause (200 ms) would end past the bound.
    assert!(tries >= 2, "{tries} tries");
    assert_eq!(result, Err(tries));
    assert!(started.elapsed() < Duration::from_secs(1));
}
