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
