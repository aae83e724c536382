//! Factors across instances and at rest: one code raced on two instances, secrets unreadable in
//! Redis, encryption-key rotation.
