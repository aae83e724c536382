//! The store contract suite: every port called directly (verify's `Store`, the account's
//! `Accounts` and directory, the PIN store, the factor store, dispatch's `Outbox`), each scenario
//! run on the memory adapters,
//! a single redis-server and a 3-node Redis Cluster (the outbox's on the two Redis ones: it has
//! no memory adapter). It pins down what the Lua scripts and their in-process twins must
//! both do (attempts and lockouts, idempotency, stale versions, expiry by the caller's clock,
//! bounds) without HTTP in between; the HTTP suite (`tests/api`) covers the rest.

mod abuse;
mod accounts;
mod console;
mod console_sign_ins;
mod directory;
mod events;
mod factors;
mod outbox;
mod pin;
#[path = "../common/redis_server.rs"]
mod redis_server;
mod stores;
mod verify;
#[path = "../common/webhook_receiver.rs"]
mod webhook_receiver;
mod workflows;

/// Runs one scenario (an `async fn(Backend)`) on every store: memory, a single redis-server and
/// a 3-node Redis Cluster.
#[macro_export]
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {
        $crate::on_backends!(
            [on_memory => Memory, on_redis => Redis, on_redis_cluster => Cluster]
            $($scenario),*
        );
    };
}

/// Runs one outbox scenario on the stores that have an outbox: a single redis-server and a
/// 3-node Redis Cluster.
#[macro_export]
macro_rules! on_every_outbox {
    ($($scenario:ident),* $(,)?) => {
        $crate::on_backends!([on_redis => Redis, on_redis_cluster => Cluster] $($scenario),*);
    };
}

/// One module per scenario, one test per backend: `[test name => Backend variant, …]`.
#[macro_export]
macro_rules! on_backends {
    ($backends:tt $($scenario:ident),*) => {
        $($crate::scenario_on!($scenario $backends);)*
    };
}

#[macro_export]
macro_rules! scenario_on {
    ($scenario:ident [$($test:ident => $backend:ident),*]) => {
        mod $scenario {
            use $crate::stores::Backend;

            $(
                #[tokio::test]
                async fn $test() {
                    super::$scenario(Backend::$backend).await
                }
            )*
        }
    };
}
