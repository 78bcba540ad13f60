//! The storage contract of the authorization server. SQLite implements it in
//! [`crate::sqlite`]; a PostgreSQL backend implements the same trait.

use crate::Result;
use crate::model::{Client, CodeRecord, LaunchContext, TokenRecord, User};

/// Where users, clients, codes and tokens are kept. Calls block: async callers run them on a
/// blocking thread.
pub trait AuthStore: Send + Sync {
    /// Adds a user; `Conflict` if the username is taken.
    fn insert_user(&self, user: &User) -> Result<()>;
    /// The user with this username.
    fn user_by_username(&self, username: &str) -> Result<Option<User>>;
    /// The user with this id.
    fn user_by_id(&self, id: &str) -> Result<Option<User>>;
    /// All users, by username.
    fn users(&self) -> Result<Vec<User>>;
    /// How many users exist.
    fn count_users(&self) -> Result<u64>;
    /// Disables or enables a user; false if there is no such user.
    fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<bool>;
    /// Replaces a user's password hash and its one-time/expiry flags.
    fn set_password(&self, user_id: &str, hash: &str, must_change: bool, expires_at: Option<i64>) -> Result<()>;

    /// Registers a client; `Conflict` if the id is taken.
    fn insert_client(&self, client: &Client) -> Result<()>;
    /// The client with this id.
    fn client(&self, id: &str) -> Result<Option<Client>>;
    /// All clients, by id.
    fn clients(&self) -> Result<Vec<Client>>;

    /// Stores a new authorization code.
    fn insert_code(&self, code: &CodeRecord) -> Result<()>;
    /// Marks the code used and returns it as it was (its `used` flag tells a replay), atomically.
    fn redeem_code(&self, hash: &str) -> Result<Option<CodeRecord>>;

    /// Stores an issued token.
    fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    /// The token with this hash.
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// Revokes one token; false if unknown.
    fn revoke_token(&self, hash: &str) -> Result<bool>;
    /// Revokes every token of a grant.
    fn revoke_grant(&self, grant_id: &str) -> Result<()>;

    /// Stores a launch context.
    fn insert_launch(&self, launch: &LaunchContext) -> Result<()>;
    /// The launch context with this id.
    fn launch(&self, id: &str) -> Result<Option<LaunchContext>>;

    /// Records a client assertion's `jti` until `expires_at`; false if it was already seen.
    fn record_assertion_id(&self, client_id: &str, jti: &str, expires_at: i64) -> Result<bool>;

    /// Deletes codes, tokens, launches and assertion ids expired before `now`.
    fn purge_expired(&self, now: i64) -> Result<()>;
}
