//! `[server]`: the listener, its connection caps and deadlines, and the request body limit; the
//! rules on their values. `config.rs` reads the keys, `mod.rs` serves by them.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub request_body_limit: usize,
    pub shutdown_grace: Duration,
    /// From accept to the first request's head, whatever the protocol: a socket that sends
    /// nothing (or only half of the HTTP/2 preface) holds a file descriptor for no longer.
    pub first_request_timeout: Duration,
    /// Between requests (HTTP/1 keep-alive and HTTP/2 alike): an idle connection is closed.
    pub idle_timeout: Duration,
    /// From a request's head to the end of its body; past it the request gets 408.
    pub body_read_timeout: Duration,
    /// Open connections per process; 0 derives the cap from the file-descriptor limit
    /// (`limits::connection_cap`), so that the accept loop can never take the descriptors
    /// Redis and the providers need.
    pub max_connections: usize,
    /// Open connections per client address: one host cannot take the whole process cap.
    pub max_connections_per_ip: usize,
}

impl ServerSettings {
    /// Adds a line to `errors` for each value out of its range.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.max_connections_per_ip == 0 {
            errors.push("server.max_connections_per_ip: must be greater than 0".to_owned());
        }
        if !(256..=1_048_576).contains(&self.request_body_limit) {
            errors.push(
                "server.request_body_limit_bytes: must be between 256 and 1048576".to_owned(),
            );
        }
    }
}
