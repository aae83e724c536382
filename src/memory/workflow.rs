//! The embedded store's workflows (`verify::workflow`): each kept in its verification's record,
//! the shard's due set beside the records, every step under the shard's lock like the rest of
//! the verification's steps.

use crate::verify::model::{Status, VerificationId};
use crate::verify::workflow::{
    is_delivered, is_failed, Fired, NewWorkflow, Reason, Step, Workflow,
};

use super::verify::{MemoryStore, Shard};

/// A workflow as the embedded store keeps it.
pub(super) struct StoredWorkflow {
    workflow: Workflow,
    /// Each step's sealed message until it is reached (the first step's is the start's own).
    sealed: Vec<Option<Vec<u8>>>,
    /// When the current step falls back, while there is a next step.
    due_ms: Option<u64>,
}

impl Shard {
    /// Stores `new` as the workflow of the record `id` (its first step reached now), or drops
    /// the record's workflow when the send has none.
    pub(super) fn set_workflow(&mut self, id: &str, new: Option<&NewWorkflow>, now_ms: u64) {
        let Some(record) = self.records.get_mut(id) else {
            return;
        };
        if let Some(due_ms) = record.workflow.as_ref().and_then(|stored| stored.due_ms) {
            self.due.remove(&(due_ms, id.to_owned()));
        }
        record.workflow = new.map(|new| {
            let steps = new
                .steps
                .iter()
                .enumerate()
                .map(|(index, step)| Step {
                    channel: step.channel,
                    message_id: step.message_id.clone(),
                    queued_ms: (index == 0).then_some(now_ms),
                    left: None,
                })
                .collect();
            StoredWorkflow {
                workflow: Workflow {
                    fallback_after_ms: new.fallback_after_ms,
                    current: 0,
                    steps,
                    email: new.email.clone(),
                },
                sealed: new
                    .steps
                    .iter()
                    .map(|step| Some(step.sealed.clone()))
                    .collect(),
                due_ms: Some(now_ms + new.fallback_after_ms),
            }
        });
        if let Some(due_ms) = record.workflow.as_ref().and_then(|stored| stored.due_ms) {
            self.due.insert((due_ms, id.to_owned()));
        }
    }
}

impl MemoryStore {
    pub(super) fn workflow_of(&self, id: &VerificationId) -> Option<Workflow> {
        let shard = self.shard(id.shard());
        let record = shard.records.get(id.as_str())?;
        record
            .workflow
            .as_ref()
            .map(|stored| stored.workflow.clone())
    }

    /// The status of the message `message_id` of verification `id`, as recorded.
    fn message_status(&self, id: &str, message_id: &str) -> Option<String> {
        let attempts = self.attempts.get(id)?;
        attempts
            .iter()
            .find(|attempt| attempt.message_id == message_id && !attempt.is_provider_try())
            .map(|attempt| attempt.status.clone())
    }

    pub(super) fn fire_due(&self, shard_index: u8, now_ms: u64, limit: usize) -> Vec<Fired> {
        // The messages' statuses are read without the shard's lock (the sweep takes the
        // attempts' map first, then a shard), and each entry is decided again under it.
        let due: Vec<((u64, String), Option<String>)> = {
            let shard = self.shard(shard_index);
            shard
                .due
                .range(..(now_ms.saturating_add(1), String::new()))
                .take(limit)
                .map(|entry| {
                    let current = shard.records.get(&entry.1).and_then(|record| {
                        let workflow = &record.workflow.as_ref()?.workflow;
                        Some(workflow.steps[workflow.current].message_id.clone())
                    });
                    (entry.clone(), current)
                })
                .collect()
        };
        let due: Vec<_> = due
            .into_iter()
            .map(|(entry, current)| {
                let status = current
                    .as_deref()
                    .and_then(|message| self.message_status(&entry.1, message));
                (entry, status)
            })
            .collect();
        let mut shard = self.shard(shard_index);
        due.into_iter()
            .filter_map(|(entry, status)| {
                if !shard.due.remove(&entry) {
                    return None;
                }
                let id = entry.1;
                let record = shard.records.get_mut(&id)?;
                let pending = record.state.status_at(now_ms) == Status::Pending;
                let stored = record.workflow.as_mut()?;
                stored.due_ms = None;
                let current = stored.workflow.current;
                let next = current + 1;
                let delivered = status.as_deref().is_some_and(is_delivered);
                if !pending || delivered || next >= stored.workflow.steps.len() {
                    return None;
                }
                let reason = if status.as_deref().is_some_and(is_failed) {
                    Reason::Failed
                } else {
                    Reason::Timeout
                };
                let steps = &mut stored.workflow.steps;
                steps[current].left = Some(reason);
                steps[next].queued_ms = Some(now_ms);
                let (from, to) = (steps[current].channel, steps[next].channel);
                let later = next + 1 < steps.len();
                stored.workflow.current = next;
                let message = stored.sealed[next].take().unwrap_or_default();
                let due_ms = later.then(|| now_ms + stored.workflow.fallback_after_ms);
                stored.due_ms = due_ms;
                record.state.channel = to;
                let (account, to_number) = (record.state.account.clone(), record.state.to.clone());
                if let Some(due_ms) = due_ms {
                    shard.due.insert((due_ms, id.clone()));
                }
                Some(Fired {
                    verification: VerificationId::parse(&id)?,
                    account,
                    to_number,
                    from,
                    to,
                    reason,
                    message: Some(message),
                })
            })
            .collect()
    }

    /// When `message_id` is the current step's message of `id`'s workflow, that step is due
    /// now.
    pub(super) fn bring_forward(&self, id: &VerificationId, message_id: &str, now_ms: u64) {
        let mut shard = self.shard(id.shard());
        let Some(stored) = shard
            .records
            .get_mut(id.as_str())
            .and_then(|record| record.workflow.as_mut())
        else {
            return;
        };
        let current = &stored.workflow.steps[stored.workflow.current];
        let Some(due_ms) = stored.due_ms.filter(|_| current.message_id == message_id) else {
            return;
        };
        let now_due = due_ms.min(now_ms);
        stored.due_ms = Some(now_due);
        shard.due.remove(&(due_ms, id.as_str().to_owned()));
        shard.due.insert((now_due, id.as_str().to_owned()));
    }
}
