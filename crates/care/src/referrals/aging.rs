//! Aging: a referral open past the overdue age raises one follow-up Task for the referring
//! organization.

use super::dashboard::{fulfil_code, gather, view};
use super::{CARE_TASK_SYSTEM, DASHBOARD_SIZE, FOLLOW_UP_CODE, FOLLOW_UP_SYSTEM, JOB, reference_id};
use crate::Result;
use crate::tasks::{self, Status};
use access::{Access, Door, Who};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::WriteKind;
use time::OffsetDateTime;

/// What [`raise_overdue`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Aging {
    /// Overdue open referrals found.
    pub overdue: usize,
    /// Follow-up Tasks created (the others had theirs already).
    pub raised: usize,
}

/// Raises a follow-up Task for every referral open longer than `overdue_days` at `now` that
/// has none yet, as the caller of `access` (the aging job): owned by the referring
/// organization (the referral Task's requester), `focus` the ServiceRequest, due in two
/// days. Created conditionally on its identifier, so a second run raises nothing more.
pub fn raise_overdue(access: &Access, overdue_days: u32, now: OffsetDateTime) -> Result<Aging> {
    let cut = now - time::Duration::days(i64::from(overdue_days));
    let open = [
        Status::Draft,
        Status::Requested,
        Status::Received,
        Status::Accepted,
        Status::Ready,
        Status::InProgress,
        Status::OnHold,
    ]
    .map(Status::code)
    .join(",");
    let found = tasks::search(
        access,
        "Task",
        &[("code", fulfil_code()), ("status", open), ("authored-on", format!("lt{}", store::format_instant(cut)))],
        DASHBOARD_SIZE * 10,
    )?;
    let mut ids = Vec::new();
    for task in &found {
        if let Some(sr) = reference_id(task.get("focus"), "ServiceRequest") {
            ids.push(sr.to_string());
        }
    }
    let data = gather(access, &ids, found)?;
    let mut names = HashMap::new();
    let mut aging = Aging::default();
    for id in &ids {
        let Some(referral) = view(access, id, &data, &mut names, overdue_days, now) else { continue };
        if !referral.overdue {
            continue;
        }
        aging.overdue += 1;
        let owner = data
            .tasks
            .get(id)
            .and_then(|t| t.pointer("/requester/reference"))
            .and_then(Value::as_str)
            .filter(|r| tasks::is_owner_reference(r))
            .map(str::to_string);
        let due = (now + time::Duration::days(2)).date();
        let task = tasks::NewTask {
            patient: referral.patient.clone(),
            description: format!("Follow up overdue referral: {} ({} days open)", referral.service, referral.age_days),
            owner,
            due: Some(due.to_string()),
            priority: tasks::Priority::Routine,
            focus: Some(format!("ServiceRequest/{id}")),
            code: Some(
                json!({"coding": [{"system": CARE_TASK_SYSTEM, "code": FOLLOW_UP_CODE, "display": "Follow up overdue referral"}], "text": "follow up overdue referral"}),
            ),
            requester: None,
            identifier: Some((FOLLOW_UP_SYSTEM.to_string(), id.clone())),
        };
        let resource = tasks::task_resource(access, &task)?;
        let outcome = access.create(resource, Some(&format!("identifier={FOLLOW_UP_SYSTEM}|{id}")))?;
        if outcome.kind == WriteKind::Created {
            aging.raised += 1;
        }
    }
    Ok(aging)
}

/// The aging job: [`raise_overdue`] through the door as the job [`JOB`], on a thread of its
/// own, every `every`.
#[derive(Clone)]
pub struct ReferralAging {
    inner: Arc<AgingInner>,
}

struct AgingInner {
    door: Door,
    overdue_days: u32,
    every: Duration,
    stop: AtomicBool,
}

impl ReferralAging {
    /// The job over the records behind `door`: referrals open longer than `overdue_days`
    /// raise their follow-up Task, looked for every `every`.
    pub fn new(door: Door, overdue_days: u32, every: Duration) -> ReferralAging {
        ReferralAging { inner: Arc::new(AgingInner { door, overdue_days, every, stop: AtomicBool::new(false) }) }
    }

    /// One run, now.
    pub fn run_once(&self) -> Result<Aging> {
        let access = self.inner.door.enter(Who::Job(JOB));
        let result = raise_overdue(&access, self.inner.overdue_days, OffsetDateTime::now_utc());
        access.settle_queued();
        result
    }

    /// Runs on a thread of its own until [`ReferralAging::stop`]: at once, then every
    /// `every`.
    pub fn start(&self) -> std::io::Result<()> {
        let job = self.clone();
        std::thread::Builder::new().name("referral-aging".into()).spawn(move || {
            while !job.inner.stop.load(Ordering::Relaxed) {
                match job.run_once() {
                    Ok(aging) if aging.raised > 0 => {
                        tracing::info!(raised = aging.raised, "overdue referrals raised follow-up tasks")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(class = ?e.class(), "the referral aging job could not run"),
                }
                let deadline = std::time::Instant::now() + job.inner.every;
                while !job.inner.stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(250).min(job.inner.every));
                }
            }
        })?;
        Ok(())
    }

    /// Stops the thread after its current run.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}
