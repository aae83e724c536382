//! The wire format of ordered channel workflows (`verify::workflow`): a verification's steps as
//! `GET /v1/verifications/{id}` shows them, and an account's default workflow in its policy.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::destination::mask;
use crate::verify::workflow::{Reason, StepStatus, Workflow};

/// A verification's workflow: each channel in order and what became of it.
#[derive(Serialize, ToSchema)]
#[schema(as = Workflow)]
pub struct WorkflowBody {
    pub fallback_after_seconds: u64,
    pub steps: Vec<StepBody>,
}

/// One step of a workflow.
#[derive(Serialize, ToSchema)]
#[schema(as = WorkflowStep)]
pub struct StepBody {
    /// A channel, as in `channel`.
    #[schema(value_type = String, example = "sms")]
    pub channel: &'static str,
    /// pending (not reached, or no provider has its message yet), sent, delivered, failed, or
    /// skipped (never reached: the verification ended or an earlier step was delivered).
    pub status: &'static str,
    /// The step's message (`send_attempts` lists it).
    pub message_id: String,
    /// Where the step sends, masked (`+491*******001`, `a***@example.com`): the
    /// verification's `to`, or for the e-mail step of a workflow whose `to` is a phone number
    /// the send's `email`.
    #[schema(example = "a***@example.com")]
    pub to: String,
    /// When its message was queued; absent for a step not reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Why the workflow moved on from it: failed, timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fell_back: Option<&'static str>,
}

impl WorkflowBody {
    /// `to`: the verification's destination, in full (masked here).
    pub fn new(workflow: &Workflow, statuses: &[StepStatus], to: &str) -> Self {
        let to = mask(to);
        Self {
            fallback_after_seconds: workflow.fallback_after_ms / 1000,
            steps: workflow
                .steps
                .iter()
                .zip(statuses)
                .map(|(step, status)| StepBody {
                    channel: step.channel.as_str(),
                    status: status.as_str(),
                    message_id: step.message_id.clone(),
                    to: match (&workflow.email, step.channel.is_email()) {
                        (Some(email), true) => email.clone(),
                        _ => to.clone(),
                    },
                    started_at: step.queued_ms.map(rfc3339),
                    fell_back: step.left.map(Reason::as_str),
                })
                .collect(),
        }
    }
}

/// An account's default workflow.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DefaultWorkflow)]
pub struct DefaultWorkflowBody {
    /// 1 to 5 channels allowed by the policy, in order; `[]` in an update removes the
    /// default workflow.
    #[schema(value_type = Vec<String>, example = json!(["whatsapp", "sms"]))]
    pub channels: Vec<String>,
    /// How long a step waits for its delivery receipt (5 to 600; default 60).
    pub fallback_after_seconds: Option<u32>,
}
