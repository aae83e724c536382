//! Workflows on Redis (`verify::workflow`): the steps live in a hash beside the verification's
//! record, `P:{sNN}:w:<id>`, only for a verification that has a workflow (fields `wf`, `wi`,
//! `wn`, `we`, `w<i>`, `b<i>`: see `scripts/verify_fallback.lua`), the shard's due set
//! `P:{sNN}:f` beside them. The start script writes both with the verification; the fallback
//! script moves a due verification to its next step and appends that step's message to the
//! shard's outbox stream, in one step on the shard's slot, so it works unchanged on a Cluster
//! and a step fires once however many instances sweep.

use crate::account::AccountId;
use crate::dispatch::model::Channel;
use crate::redis::script::{corrupt, query, run, words, Failure};
use crate::store::StoreError;
use crate::verify::model::VerificationId;
use crate::verify::workflow::{Fired, NewWorkflow, Reason, Step, Workflow};

use super::verify::RedisStore;

/// The start script's workflow arguments (after its 18th): the fallback time (`''`: none),
/// the step count, each step's `<channel> <message id>`, the later steps' sealed messages, and
/// the e-mail step's masked address (`''`: none; field `we`).
pub(super) fn append_workflow(
    workflow: Option<&NewWorkflow>,
    invocation: &mut redis::ScriptInvocation<'_>,
) {
    let Some(workflow) = workflow else {
        invocation.arg("");
        return;
    };
    invocation
        .arg(workflow.fallback_after_ms)
        .arg(workflow.steps.len());
    for step in &workflow.steps {
        invocation.arg(format!("{} {}", step.channel.as_str(), step.message_id));
    }
    for step in &workflow.steps[1..] {
        invocation.arg(&step.sealed[..]);
    }
    invocation.arg(workflow.email.as_deref().unwrap_or(""));
}

/// One step's field `w<i>`: `<channel> <message id> <queued ms or -> <left or ->`.
fn parse_step(value: &str) -> Option<Step> {
    let [channel, message_id, queued, left] = value.split(' ').collect::<Vec<_>>()[..] else {
        return None;
    };
    Some(Step {
        channel: Channel::parse(channel)?,
        message_id: message_id.to_owned(),
        queued_ms: match queued {
            "-" => None,
            ms => Some(ms.parse().ok()?),
        },
        left: match left {
            "-" => None,
            reason => Some(Reason::parse(reason)?),
        },
    })
}

impl RedisStore {
    pub(super) async fn read_workflow(
        &self,
        id: &VerificationId,
    ) -> Result<Option<Workflow>, StoreError> {
        let key = self.keys.workflow(id);
        let head: Vec<Option<String>> = query(
            &self.connection,
            redis::cmd("HMGET").arg(&key).arg(&["wf", "wi", "wn", "we"]),
            Failure::Unavailable,
        )
        .await?;
        let [Some(fallback_after_ms), Some(current), Some(count), email] = &head[..] else {
            return Ok(None);
        };
        let number = |field: &str| field.parse::<u64>().map_err(|_| corrupt("workflow head"));
        let (fallback_after_ms, current, count) =
            (number(fallback_after_ms)?, number(current)?, number(count)?);
        let fields: Vec<String> = (0..count).map(|index| format!("w{index}")).collect();
        let steps: Vec<Option<String>> = query(
            &self.connection,
            redis::cmd("HMGET").arg(&key).arg(&fields),
            Failure::Unavailable,
        )
        .await?;
        let steps: Option<Vec<Step>> = steps
            .iter()
            .map(|step| parse_step(step.as_deref()?))
            .collect();
        let steps = steps.ok_or_else(|| corrupt("workflow step"))?;
        Ok(Some(Workflow {
            fallback_after_ms,
            current: usize::try_from(current).map_err(|_| corrupt("workflow step"))?,
            steps,
            email: email.clone(),
        }))
    }

    pub(super) async fn fire_due(
        &self,
        shard: u8,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Fired>, StoreError> {
        // Every instance sweeps every shard four times a second, and almost always finds
        // nothing due: a plain read first costs Redis a fraction of a script call (callgrind,
        // loadtest/instructions --scenarios idle), and the script runs only where one is due.
        let due: Vec<String> = query(
            &self.connection,
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.keys.fallbacks(shard))
                .arg("-inf")
                .arg(now_ms)
                .arg("LIMIT")
                .arg(0)
                .arg(1),
            Failure::Unavailable,
        )
        .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.fallback.prepare_invoke();
        invocation
            .key(self.keys.fallbacks(shard))
            .key(self.keys.outbox(shard))
            .arg(self.keys.shard_base(shard))
            .arg(now_ms)
            .arg(limit);
        let text: String = run(&self.connection, &invocation, self.writes()).await?;
        let reply = words(&text);
        let Some((&"fired", fired)) = reply.split_first() else {
            return Err(corrupt("unknown fallback reply"));
        };
        fired
            .chunks(6)
            .map(|fallback| {
                let [id, from, to, reason, account, number] = fallback else {
                    return Err(corrupt("fallback reply of the wrong shape"));
                };
                let channel = |name| Channel::parse(name).ok_or_else(|| corrupt("channel"));
                Ok(Fired {
                    verification: VerificationId::parse(id)
                        .ok_or_else(|| corrupt("verification id"))?,
                    account: AccountId::parse(account).ok_or_else(|| corrupt("account"))?,
                    to_number: (*number).to_owned(),
                    from: channel(from)?,
                    to: channel(to)?,
                    reason: Reason::parse(reason).ok_or_else(|| corrupt("fallback reason"))?,
                    // The script queued it on the shard's outbox stream.
                    message: None,
                })
            })
            .collect()
    }

    pub(super) async fn bring_forward(
        &self,
        id: &VerificationId,
        message_id: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut invocation = self.fallback_now.prepare_invoke();
        invocation
            .key(self.keys.workflow(id))
            .key(self.keys.fallbacks(id.shard()))
            .arg(id.as_str())
            .arg(message_id)
            .arg(now_ms);
        run::<String>(&self.connection, &invocation, self.writes()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_step_reads_back() {
        let step = parse_step("whatsapp MSabc 1764000000000 timeout").unwrap();
        assert_eq!(step.channel, Channel::Whatsapp);
        assert_eq!(step.queued_ms, Some(1_764_000_000_000));
        assert_eq!(step.left, Some(Reason::Timeout));
        let waiting = parse_step("sms MSdef - -").unwrap();
        assert_eq!((waiting.queued_ms, waiting.left), (None, None));
        assert!(parse_step("fax MSdef - -").is_none());
    }
}
