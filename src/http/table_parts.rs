//! The shared pieces of the route table's documentation: the problem answers every operation
//! may give, and the parameters several rows name (a leaf beside `doc.rs`).

use super::doc::{answer, json, named, path, query, Answer, Content, Param, Place, Schema};
use super::error::Problem;
use super::wire_pins::GraphErrorBody;

pub(super) const PROBLEM_JSON: Content = Content {
    media: "application/problem+json",
    schema: named::<Problem>(),
};

/// A problem answer.
pub(super) const fn problem(status: &'static str, description: &'static str) -> Answer {
    answer(status, description, &[PROBLEM_JSON])
}

/// What most operations answer besides their success.
pub(super) const PROBLEM: Answer = problem("default", "A problem");

/// A Graph route's error: Graph's error object, or a problem before the facade took the call.
pub(super) const fn graph_error(description: &'static str) -> Answer {
    const GRAPH_ERROR: &[Content] = &[json::<GraphErrorBody>(), PROBLEM_JSON];
    answer("default", description, GRAPH_ERROR)
}

pub(super) const TEXT: Content = Content {
    media: "text/plain",
    schema: Schema::Text,
};

pub(super) const ACCOUNT: Param = path("account", "The account id (`AC…`)");
pub(super) const VERIFICATION: Param = path("id", "The verification id (`VE…`)");
pub(super) const USER: Param = path("user", "The user id");
pub(super) const DEVICE: Param = path("device", "The device id");
pub(super) const NUMBER: Param = path("id", "The phone-number id");
pub(super) const PROVIDER: Param = path("provider", "The provider's configured name");
pub(super) const GRAPH_VERSION: Param = path("version", "A Graph API version: v22.0 to v26.0");
pub(super) const GRAPH_NUMBER: Param = path("phone_number_id", "The phone-number id");
pub(super) const LINK_TOKEN: Param = query("token", true, "The e-mailed single-use token");
pub(super) const IDEMPOTENT_SEND: Param = Param {
    name: "Idempotency-Key",
    place: Place::Header,
    required: false,
    description: "1 to 255 visible ASCII characters, scoped to the account and the number `to`: a retry with the same key and number replays the first answer (`Idempotent-Replayed: true`) and sends nothing; the same key for another number starts a new verification",
    schema: Schema::Text,
};
pub(super) const IDEMPOTENT_CHECK: Param = Param {
    description: "1 to 255 visible ASCII characters, scoped to the account and the verification's number: the first check that counts records its outcome under the key, and a retry with the key answers that outcome again (an approval too, `Idempotent-Replayed: true`) and counts nothing; the key used for a check of another verification is refused (422)",
    ..IDEMPOTENT_SEND
};
pub(super) const WEBHOOK: Param = path("id", "The webhook id (`WH…`)");
pub(super) const AUDIT_LIMIT: Param = Param {
    schema: Schema::Integer {
        minimum: 1,
        maximum: 500,
    },
    ..query("limit", false, "1 to 500, default 50")
};

pub(super) const KEY_ID: Param = path("id", "The key id (`KY…`)");
pub(super) const PAGE_LIMIT: Param = Param {
    schema: Schema::Integer {
        minimum: 1,
        maximum: 200,
    },
    ..query("limit", false, "How many items: 1 to 200, default 50")
};
pub(super) const PAGE_CURSOR: Param = query(
    "cursor",
    false,
    "`next_cursor` of an earlier page (opaque); absent for the first page",
);
