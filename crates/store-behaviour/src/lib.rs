//! The store's behaviour, written once and proven on every backend: each check is a
//! function over a fresh [`store::Records`], and [`records_tests!`] turns the whole list into
//! `#[test]`s of a backend's test crate, given a function that makes an empty store.
//! (As `sqlx-test` serves sqlx's drivers.)

// Lints met by this crate ahead of the workspace; they move to `[workspace.lints]` once every
// crate meets them.
#![warn(missing_docs)]
// Not `clippy::unwrap_used`/`expect_used`: this whole crate is test code, compiled as a library
// only so that every backend's tests can run it; a check reports a failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

pub mod hl7_interface;
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
