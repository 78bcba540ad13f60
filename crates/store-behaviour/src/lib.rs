//! The store's behaviour, written once and proven on every backend: each check is a
//! function over a fresh [`store::Records`], and [`records_tests!`] turns the whole list into
//! `#[test]`s of a backend's test crate, given a function that makes an empty store.
//! (As `sqlx-test` serves sqlx's drivers.) The authorization server's store is proven the same
//! way: the checks of [`auth`], listed by [`auth_store_tests!`].

// Not `clippy::unwrap_used`/`expect_used`: this whole crate is test code, compiled as a library
// only so that every backend's tests can run it; a check reports a failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

pub mod auth;
pub mod hl7_interface;
pub mod hooks;
pub mod notify;
pub mod records;

/// Defines one `#[test]` per behaviour check of [`records`]. `$store` is a function returning
/// `(guard, Records)` over a fresh, empty store; the guard (a temporary directory, a scratch
/// database) is dropped when the test ends.
#[macro_export]
macro_rules! records_tests {
    ($store:path) => {
        $crate::records_tests!(@each $store;
            create_read_vread,
            element_order_and_decimals_round_trip,
            update_versions_and_update_as_create,
            if_match_mismatch_is_precondition_failed,
            patch_applies_json_patch,
            delete_writes_a_deletion_version,
            history_levels_since_and_paging,
            conditional_create,
            conditional_update,
            conditional_delete_deletes_every_match,
            dangling_references_are_refused_and_leave_no_trace,
            self_reference_in_update_as_create_resolves,
            concurrent_writers_with_if_match_retries,
            load_stores_resources_with_their_ids_without_reference_checks,
            transaction_rewrites_urns_and_orders_entries,
            transaction_is_all_or_nothing,
            transaction_conditional_entries_and_patch,
            batch_entries_succeed_or_fail_alone,
            invalid_resources_are_refused_with_their_location,
            searches_with_thousands_of_alternatives,
            snapshots_show_the_store_as_it_stood_at_the_cut,
        );
    };
    (@each $store:path; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let (_guard, records) = $store();
                $crate::records::$name(&records);
            }
        )*
    };
}

/// Defines one `#[test]` per check of [`auth`] (the authorization server's store). `$store` is
/// a function returning `(guard, store)` over a fresh, empty `auth::AuthStore`; the guard (a
/// temporary directory, a scratch database) is dropped when the test ends.
#[macro_export]
macro_rules! auth_store_tests {
    ($store:path) => {
        $crate::auth_store_tests!(@each $store;
            users_are_kept_and_usernames_unique,
            clients_are_kept_and_ids_unique,
            codes_are_redeemed_once,
            tokens_are_kept_and_revoked,
            launches_and_assertion_ids,
            expired_records_are_purged,
            concurrent_redemptions_and_replays_have_one_winner,
            failed_sign_ins_lock_the_account_and_success_clears_them,
            totp_secrets_are_kept_and_each_step_used_once,
            totp_secrets_are_resealed_in_one_go_and_tokens_retired_once,
            token_uses_are_noted_for_idle_sessions,
            concurrent_failures_and_code_uses_are_counted_once_each,
        );
    };
    (@each $store:path; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let (_guard, store) = $store();
                $crate::auth::$name(&store);
            }
        )*
    };
}
