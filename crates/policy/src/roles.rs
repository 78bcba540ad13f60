//! What each staff role may do with each kind of resource, before any question of *whose*
//! record it is (that is [`crate::reach`]'s part).

use auth::Interaction;
use auth::Role;

/// Administrative and financial record types a front desk keeps.
const FRONT_DESK: &[&str] =
    &["Patient", "RelatedPerson", "Person", "Appointment", "AppointmentResponse", "Coverage", "Encounter", "Flag"];

/// What billing reads to code and claim.
const BILLING_READS: &[&str] = &[
    "Patient",
    "RelatedPerson",
    "Coverage",
    "Encounter",
    "Condition",
    "Procedure",
    "Claim",
    "ClaimResponse",
    "Account",
    "ChargeItem",
    "ExplanationOfBenefit",
    "Invoice",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "PaymentNotice",
];

/// What billing writes.
const BILLING_WRITES: &[&str] =
    &["Claim", "Account", "ChargeItem", "Invoice", "Coverage", "CoverageEligibilityRequest", "PaymentNotice"];

/// Orders only a prescriber signs: nurses read but do not write them.
const PRESCRIBER_ONLY: &[&str] = &["MedicationRequest", "ServiceRequest", "DiagnosticReport"];

/// What care managers write: plans, teams, tasks, referrals, messages.
const CARE_MANAGER_WRITES: &[&str] = &[
    "CarePlan",
    "CareTeam",
    "Task",
    "Goal",
    "Communication",
    "CommunicationRequest",
    "ServiceRequest",
    "Flag",
    "Appointment",
    "QuestionnaireResponse",
    // The Provenance of their own edits (who changed a care plan, from which organization).
    "Provenance",
];

/// What a patient (or their proxy) writes in their own record: what they report themselves.
pub(crate) const PATIENT_WRITES: &[&str] = &[
    "Observation",
    "QuestionnaireResponse",
    "Communication",
    "Consent",
    "Appointment",
    "AppointmentResponse",
    "Provenance",
];

fn is_write(interaction: Interaction) -> bool {
    matches!(interaction, Interaction::Create | Interaction::Update | Interaction::Delete)
}

/// Whether `role` may do `interaction` on patient-owned records of `resource_type`.
pub(crate) fn role_allows_patient_data(role: Role, interaction: Interaction, resource_type: &str) -> bool {
    if resource_type == "AuditEvent" {
        // The trail is written by the server alone; reading it is an administrator's task.
        return role == Role::Administrator && !is_write(interaction);
    }
    let write = is_write(interaction);
    match role {
        Role::Physician | Role::BehavioralHealthClinician => true,
        Role::Nurse => !write || !PRESCRIBER_ONLY.contains(&resource_type),
        Role::CareManager => !write || CARE_MANAGER_WRITES.contains(&resource_type),
        Role::FrontDesk => FRONT_DESK.contains(&resource_type),
        Role::Billing => {
            if write {
                BILLING_WRITES.contains(&resource_type)
            } else {
                BILLING_READS.contains(&resource_type)
            }
        }
        Role::QualityAnalyst => !write,
        Role::Administrator => false,
    }
}

/// Whether `role` may do `interaction` on shared (non-patient) resources of `resource_type`:
/// every member of staff reads the directory and terminology; administrators maintain it.
pub(crate) fn role_allows_shared(role: Role, interaction: Interaction, resource_type: &str) -> bool {
    if !is_write(interaction) {
        return true;
    }
    match role {
        Role::Administrator => true,
        // Scheduling resources are the front desk's.
        Role::FrontDesk => matches!(resource_type, "Schedule" | "Slot"),
        // Clinicians subscribe to what happens to their patients (what a Subscription sends
        // passes the policy for its owner: see the `subscriptions` crate).
        Role::Physician | Role::BehavioralHealthClinician | Role::Nurse => {
            matches!(resource_type, "Medication" | "Group" | "List" | "Device" | "Substance" | "Subscription")
        }
        Role::CareManager => matches!(resource_type, "Group" | "List" | "Subscription"),
        Role::Billing | Role::QualityAnalyst => false,
    }
}

/// Whether a role may see records labelled behavioral health (psychotherapy, mental health).
pub(crate) fn sees_behavioral_health(role: Role) -> bool {
    role == Role::BehavioralHealthClinician
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_split_clinical_from_administrative_work() {
        assert!(role_allows_patient_data(Role::Physician, Interaction::Create, "MedicationRequest"));
        assert!(!role_allows_patient_data(Role::Nurse, Interaction::Create, "MedicationRequest"));
        assert!(role_allows_patient_data(Role::Nurse, Interaction::Create, "Observation"));
        assert!(!role_allows_patient_data(Role::FrontDesk, Interaction::Read, "Observation"));
        assert!(role_allows_patient_data(Role::FrontDesk, Interaction::Update, "Appointment"));
        assert!(!role_allows_patient_data(Role::QualityAnalyst, Interaction::Update, "Observation"));
        assert!(role_allows_patient_data(Role::QualityAnalyst, Interaction::Search, "Observation"));
        assert!(!role_allows_patient_data(Role::Administrator, Interaction::Read, "Observation"));
        assert!(role_allows_patient_data(Role::Administrator, Interaction::Search, "AuditEvent"));
        for role in Role::ALL {
            assert!(!role_allows_patient_data(role, Interaction::Create, "AuditEvent"), "{role}");
        }
        assert!(!role_allows_shared(Role::Nurse, Interaction::Update, "Organization"));
        assert!(role_allows_shared(Role::Nurse, Interaction::Read, "Organization"));
        assert!(role_allows_shared(Role::Administrator, Interaction::Update, "Organization"));
    }
}
