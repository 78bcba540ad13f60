//! The care-coordination service, HTTP-free: what an EHR adds to a chart so that the people
//! caring for one patient in several organizations work as one team. Every operation takes an
//! `access::Access` (the caller's door) and returns typed views or writes through it; the rules
//! that must hold whatever door a write comes through are [`store::WriteHook`]s the binary
//! installs.
//!
//! - [`teams`]: the patient's care team across organizations (members with role, period and
//!   lead); membership is what the policy's care-relationship rule reads.
//! - [`alerts`]: event alerts (admissions, ED visits, discharges, abnormal and critical
//!   results, medication changes, depression screens) queued by a write hook in the
//!   triggering write's transaction, delivered to the care team's inboxes, e-mail and webhooks.
//! - [`transitions`]: a discharge's follow-up Tasks and the packet to the primary-care
//!   practice; the discharges without follow-up.
//! - [`plans`]: shared care plans (status, care team, conditions addressed, goals, activities
//!   linked to requests or described), edited with `If-Match` on the version read, with a
//!   change history naming who and from which organization (Provenance written with each edit).
//! - [`goals`]: goals with targets (a LOINC measure, a quantity or range, a due date) and their
//!   achievement computed from the latest results.
//! - [`screening`]: the PHQ-9 and GAD-7 as Questionnaires, answered and scored on write into a
//!   survey Observation with its severity band (the app's transaction, and a scorer right
//!   behind the commits for every other door).
//! - [`tasks`]: Tasks for people, roles, teams and organizations, their lifecycle (a write
//!   hook, [`tasks::TaskLifecycle`]) and the work lists with overdue flags.
//! - [`referrals`]: referrals between organizations (a ServiceRequest and its Task) tracked
//!   through their steps to the report that closes them ([`referrals::ReferralCloser`], a
//!   follower behind the commits), the dashboard, and the aging job that raises a follow-up
//!   Task for an overdue referral ([`referrals::ReferralAging`]).

pub mod alerts;
mod error;
pub mod goals;
pub mod plans;
pub mod referrals;
pub mod screening;
pub mod tasks;
pub mod teams;
pub mod transitions;

pub use error::{Error, Result};
