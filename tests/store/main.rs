//! The store contract suite: every port called directly (verify's `Store`, the directory, the
//! PIN store, the factor store), each scenario run on the memory adapters, a single redis-server
//! and a 3-node Redis Cluster. It pins down what the Lua scripts and their in-process twins must
//! both do (attempts and lockouts, idempotency, stale versions, expiry by the caller's clock,
//! bounds) without HTTP in between; the HTTP suite (`tests/api`) covers the rest.

mod directory;
mod factors;
mod pin;
#[path = "../common/redis_server.rs"]
mod redis_server;
mod stores;
mod verify;

/// Runs one scenario (an `async fn(Backend)`) on every store: memory, a single redis-server and
/// a 3-node Redis Cluster.
#[macro_export]
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use $crate::stores::Backend;

                #[tokio::test]
                async fn on_memory() {
                    super::$scenario(Backend::Memory).await
                }

                #[tokio::test]
                async fn on_redis() {
                    super::$scenario(Backend::Redis).await
                }

                #[tokio::test]
                async fn on_redis_cluster() {
                    super::$scenario(Backend::Cluster).await
                }
            }
        )*
    };
}
