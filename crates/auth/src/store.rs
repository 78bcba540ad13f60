//! The storage contract of the authorization server. SQLite implements it in
//! [`crate::sqlite`], PostgreSQL in [`crate::postgres`].

use crate::Result;
use crate::model::{Client, CodeRecord, LaunchContext, TokenRecord, User};

/// How [`AuthStore::reseal_totp_secrets`] rewrites one stored secret: `(user id, stored)` →
/// the new value, or `None` to leave it.
pub type Reseal<'a> = &'a dyn Fn(&str, &[u8]) -> Result<Option<Vec<u8>>>;

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
    /// Counts a failed sign-in of the user, atomically (servers sharing a database count
    /// together). The failure that brings the count to `limit` locks the account until
    /// `now + lock_seconds` and starts the count again; it returns that time.
    fn record_failed_sign_in(&self, user_id: &str, now: i64, limit: u32, lock_seconds: i64) -> Result<Option<i64>>;
    /// Forgets the user's failed sign-ins and lifts a lock (a successful sign-in, an
    /// administrator's unlock).
    fn clear_failed_sign_ins(&self, user_id: &str) -> Result<()>;

    /// Enrols the user's TOTP secret (replacing an earlier one, forgetting its used steps), or
    /// removes it with `None`.
    fn set_totp_secret(&self, user_id: &str, secret: Option<&[u8]>, now: i64) -> Result<()>;
    /// The user's TOTP secret, if enrolled.
    fn totp_secret(&self, user_id: &str) -> Result<Option<Vec<u8>>>;
    /// Rewrites stored TOTP secrets in one transaction (start-up: sealing the clear-text
    /// secrets of an earlier version). `reseal(user_id, stored)` returns the new value, or
    /// `None` to leave the row as it is; an error stops and rolls back. Returns how many rows
    /// changed; once any did, the store also makes sure the old values leave its files.
    fn reseal_totp_secrets(&self, reseal: Reseal<'_>) -> Result<usize>;
    /// Records that the code of time step `step` was used, atomically: true only if no code of
    /// this or a later step was used before (RFC 6238 §5.2: a code is accepted once).
    fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool>;

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
    /// Retires one token that is still active, atomically: true only for the call that
    /// revoked it (a refresh token presented twice at once is used once).
    fn retire_token(&self, hash: &str) -> Result<bool>;
    /// Revokes every token of a grant.
    fn revoke_grant(&self, grant_id: &str) -> Result<()>;
    /// Notes that the token was used at `at` (never moves the time back).
    fn touch_token(&self, hash: &str, at: i64) -> Result<()>;
    /// The latest use of any token of the grant (its last use, else its issue), if it has any.
    fn grant_last_used(&self, grant_id: &str) -> Result<Option<i64>>;

    /// Stores a launch context.
    fn insert_launch(&self, launch: &LaunchContext) -> Result<()>;
    /// The launch context with this id.
    fn launch(&self, id: &str) -> Result<Option<LaunchContext>>;

    /// Records a client assertion's `jti` until `expires_at`; false if it was already seen.
    fn record_assertion_id(&self, client_id: &str, jti: &str, expires_at: i64) -> Result<bool>;

    /// Deletes codes, tokens, launches and assertion ids expired before `now`.
    fn purge_expired(&self, now: i64) -> Result<()>;
}
