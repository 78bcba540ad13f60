//! The transaction a unit of work of [`crate::Records`] writes through: one wrapper around
//! the backend's transaction that applies, to every version put, what the records were set
//! up with — the caller's access guard (before and after the put), the write hooks that want
//! the type (inside the same transaction: an error rolls the whole write back), an audit
//! entry when an actor writes, and a note of the change for the commit feed.

use crate::feed::Committed;
use crate::guard::AccessGuard;
use crate::{NewVersion, ResourceVersion, Result, Transaction, WriteHook};
use std::sync::Arc;

pub(crate) struct RecordingTx<'t, 'r> {
    pub(crate) inner: &'t mut dyn Transaction,
    pub(crate) actor: Option<&'r crate::Agent>,
    pub(crate) hooks: &'r [Arc<dyn WriteHook>],
    pub(crate) guard: Option<&'r dyn AccessGuard>,
    /// Audit entries of the versions put (appended once the work is done).
    pub(crate) entries: Vec<crate::audit::NewAuditEntry>,
    /// The versions put, for the commit feed (only when someone listens).
    pub(crate) changes: Option<Vec<Committed>>,
}

impl RecordingTx<'_, '_> {
    fn note_audit(&mut self, version: &NewVersion<'_>) {
        let Some(actor) = self.actor else { return };
        let patient = if version.resource_type == "Patient" {
            Some(version.id.to_string())
        } else {
            crate::compartment::patients_in_index(version.resource_type, version.index).into_iter().next()
        };
        let what = [format!("{}/{}/_history/{}", version.resource_type, version.id, version.version)];
        let happening = crate::audit::Happening {
            action: crate::audit::Action::of(version.change),
            subtype: crate::audit::Subtype::of(version.change),
            outcome: crate::audit::Outcome::Success,
            entities: &what,
            query: None,
            patient: patient.as_deref(),
            reason: None,
        };
        self.entries.push(crate::audit::event(actor, &happening, time::OffsetDateTime::now_utc()));
    }
}

impl Transaction for RecordingTx<'_, '_> {
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<ResourceVersion>> {
        self.inner.current(resource_type, id)
    }

    fn find_by_identifier(&mut self, resource_type: &str, system: Option<&str>, value: &str) -> Result<Vec<String>> {
        self.inner.find_by_identifier(resource_type, system, value)
    }

    fn find_by_identifier_to_read(
        &mut self,
        resource_type: &str,
        system: Option<&str>,
        value: &str,
    ) -> Result<Vec<String>> {
        self.inner.find_by_identifier_to_read(resource_type, system, value)
    }

    fn version(&mut self, resource_type: &str, id: &str, version: u64) -> Result<Option<ResourceVersion>> {
        self.inner.version(resource_type, id, version)
    }

    fn current_version(&mut self, resource_type: &str, id: &str) -> Result<Option<(u64, bool)>> {
        self.inner.current_version(resource_type, id)
    }

    fn search_ids(&mut self, query: &search::query::SearchQuery, limit: usize) -> Result<Vec<String>> {
        self.inner.search_ids(query, limit)
    }

    fn visible(&mut self, resource_type: &str, ids: Vec<String>) -> Result<Vec<String>> {
        let ids = self.inner.visible(resource_type, ids)?;
        match self.guard {
            Some(guard) => guard.visible(self.inner, resource_type, ids),
            None => Ok(ids),
        }
    }

    fn put(&mut self, version: &NewVersion<'_>) -> Result<i64> {
        if let Some(guard) = self.guard {
            guard.before_put(self.inner, version)?;
        }
        let hooked = self.hooks.iter().any(|h| h.wants(version.resource_type));
        let previous = if hooked { self.inner.current(version.resource_type, version.id)? } else { None };
        let sequence = self.inner.put(version)?;
        for hook in self.hooks.iter().filter(|h| h.wants(version.resource_type)) {
            hook.written_by(self.inner, previous.as_ref(), version, sequence, self.actor)?;
        }
        if let Some(guard) = self.guard {
            guard.after_put(self.inner, version)?;
        }
        self.note_audit(version);
        if let Some(changes) = &mut self.changes {
            changes.push(Committed {
                resource_type: version.resource_type.to_string(),
                id: version.id.to_string(),
                version: version.version,
                change: version.change,
                sequence,
            });
        }
        Ok(sequence)
    }

    fn outbound_partners(&mut self, event: &str) -> Result<Vec<String>> {
        self.inner.outbound_partners(event)
    }

    fn append_audit(
        &mut self,
        entries: &[crate::audit::NewAuditEntry],
        key: Option<&crate::audit::AuditKey>,
    ) -> Result<()> {
        self.inner.append_audit(entries, key)
    }

    fn enqueue_outbound(&mut self, message: &crate::outbox::NewOutbound<'_>) -> Result<()> {
        self.inner.enqueue_outbound(message)
    }

    fn enqueue_notification(&mut self, notification: &crate::notify::NewNotification<'_>) -> Result<i64> {
        self.inner.enqueue_notification(notification)
    }
}
