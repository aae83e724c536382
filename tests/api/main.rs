//! The one integration-test binary: the real server over HTTP, real redis-server processes, a
//! fake provider on loopback.

mod abuse;
mod accounts;
mod accounts_logins;
mod accounts_support;
mod audit;
mod bad_input;
mod calls;
mod concurrency;
mod console;
mod console_ops;
mod console_users;
mod contract;
mod dispatch;
mod edge;
mod email;
mod events;
mod factors;
mod factors_authenticator;
mod factors_stores;
mod failover;
#[path = "../common/fake_smsc.rs"]
mod fake_smsc;
mod faults;
mod graph;
mod helpers;
mod lists;
mod openapi;
mod operations;
mod passkeys;
mod pin;
mod redis_harness;
#[path = "../common/redis_server.rs"]
mod redis_server;
mod smpp;
mod tenants;
mod trust;
mod twilio;
mod twilio_passkeys;
#[path = "../common/webhook_receiver.rs"]
mod webhook_receiver;
mod workflows;

/// Runs one contract scenario (an `async fn(Backend)`) on every store: the embedded memory
/// store, a single redis-server and a 3-node Redis Cluster.
#[macro_export]
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use $crate::helpers::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_memory() {
                    super::$scenario(Backend::Memory).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_redis() {
                    super::$scenario(Backend::Redis).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_redis_cluster() {
                    super::$scenario(Backend::Cluster).await
                }
            }
        )*
    };
}
