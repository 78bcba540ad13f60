//! Access guards: the caller's rules applied inside a write's own transaction, where every
//! door's write finally lands (REST interactions, Bundle entries, patches, conditional
//! operations). What a guard sees is the resolved version about to be stored (references
//! rewritten, patches applied), so no door can write around it.

use crate::{NewVersion, Result, Transaction};

/// What a caller may write and which existing resources a conditional match may see.
pub trait AccessGuard: Send + Sync + 'static {
    /// Checks a version about to be put; `tx` still shows the version it replaces as current.
    fn before_put(&self, tx: &mut dyn Transaction, version: &NewVersion<'_>) -> Result<()>;
    /// Checks the version just put, inside the same transaction (what is checked by search,
    /// such as a scope's constraints, sees the new version there).
    fn after_put(&self, tx: &mut dyn Transaction, version: &NewVersion<'_>) -> Result<()>;
    /// Keeps, of the live resources `ids` of `resource_type` a conditional operation
    /// matched, those the caller may see (what it may not see does not exist for it).
    fn visible(&self, tx: &mut dyn Transaction, resource_type: &str, ids: Vec<String>) -> Result<Vec<String>>;
    /// Whether the caller may see `version` (read outside a transaction, e.g. the version a
    /// patch starts from), so that nothing about a hidden resource — its validity, its
    /// version — is told before the write's own checks.
    fn may_read(&self, version: &crate::ResourceVersion) -> Result<bool>;
}

/// A transaction whose puts and conditional matches pass through a guard.
pub(crate) struct GuardedTx<'t, 'g> {
    pub(crate) inner: &'t mut dyn Transaction,
    pub(crate) guard: &'g dyn AccessGuard,
}

impl Transaction for GuardedTx<'_, '_> {
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<crate::ResourceVersion>> {
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

    fn version(&mut self, resource_type: &str, id: &str, version: u64) -> Result<Option<crate::ResourceVersion>> {
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
        self.guard.visible(self.inner, resource_type, ids)
    }

    fn put(&mut self, version: &NewVersion<'_>) -> Result<i64> {
        self.guard.before_put(self.inner, version)?;
        let sequence = self.inner.put(version)?;
        self.guard.after_put(self.inner, version)?;
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
}
