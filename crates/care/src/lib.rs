//! The care-coordination service, HTTP-free: what an EHR adds to a chart so that the people
//! caring for one patient in several organizations work as one team. Every operation takes an
//! `access::Access` (the caller's door) and returns typed views or writes through it; the rules
//! that must hold whatever door a write comes through are [`store::WriteHook`]s the binary
//! installs.
//!
//! - [`teams`]: the patient's care team across organizations (members with role, period and
//!   lead); membership is what the policy's care-relationship rule reads.
//! - [`tasks`]: Tasks for people, roles, teams and organizations, their lifecycle (a write
//!   hook, [`tasks::TaskLifecycle`]) and the work lists with overdue flags.
//! - [`referrals`]: referrals between organizations (a ServiceRequest and its Task) tracked
//!   through their steps to the report that closes them ([`referrals::ReferralCloser`], a
//!   follower behind the commits), the dashboard, and the aging job that raises a follow-up
//!   Task for an overdue referral ([`referrals::ReferralAging`]).

mod error;
pub mod referrals;
pub mod tasks;
pub mod teams;

pub use error::{Error, Result};
