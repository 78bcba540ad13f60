//! The patient's care team across organizations: one `CareTeam` per patient (the first active
//! one is "the" team; more are shown too), members with their role, the organization they act
//! for (`onBehalfOf`), a period and a lead.
//!
//! Who may change the team is the policy's decision, not this module's: a CareTeam is patient
//! data, so only someone with the patient in reach may write it, and a member added that way
//! gains the patient through the care-relationship rule (`policy::reach`), until the end of
//! their period. R4 has no element for a team's lead; it is the extension [`LEAD_EXTENSION`]
//! (`valueBoolean`) on the participant.

use crate::{Error, Result};
use access::Access;
use chart::elements;
use chart::read;
use serde_json::{Value, json};

/// The extension marking a participant as the team's lead (`valueBoolean`).
pub const LEAD_EXTENSION: &str = "urn:continuum:care-team-lead";

/// Most care teams shown for one patient.
const MOST_TEAMS: usize = 20;

/// One member of a care team, as the chart shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its position in `CareTeam.participant` (what an edit names).
    pub index: usize,
    /// `Practitioner/x`, `PractitionerRole/y`, `Organization/z`, `RelatedPerson/…`.
    pub reference: String,
    /// The member's name as shown (the reference when it cannot be read).
    pub name: String,
    /// The role on the team (text of `participant.role`).
    pub role: String,
    /// `Organization/…` the member acts for, when given.
    pub organization: Option<String>,
    /// Its name as shown.
    pub organization_name: Option<String>,
    /// Start of membership (`YYYY-MM-DD…`), when given.
    pub start: Option<String>,
    /// End of membership, when given.
    pub end: Option<String>,
    /// Whether the member leads the team.
    pub lead: bool,
    /// Whether the membership is in force today.
    pub current: bool,
}

/// A care team with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Its id.
    pub id: String,
    /// The version read (for `If-Match`).
    pub version: String,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: String,
    /// Its members, in the order stored.
    pub members: Vec<Member>,
}

/// A member to add.
#[derive(Debug, Clone, Default)]
pub struct NewMember {
    /// `Practitioner/x`, `PractitionerRole/y` or `Organization/z`.
    pub reference: String,
    /// The role on the team, as text (a SNOMED CT or local code may follow later).
    pub role: String,
    /// `Organization/…` the member acts for.
    pub organization: Option<String>,
    /// Start of membership (`YYYY-MM-DD`); today when absent.
    pub start: Option<String>,
    /// End of membership (`YYYY-MM-DD`), when known.
    pub end: Option<String>,
    /// Whether the member leads the team.
    pub lead: bool,
}

/// The patient's care teams (active first), with their members.
pub fn teams(access: &Access, patient: &str) -> Result<Vec<Team>> {
    let found = read::search(access, "CareTeam", &[("patient", format!("Patient/{patient}"))], MOST_TEAMS)?;
    let today = today();
    let mut teams: Vec<Team> = found.iter().map(|team| team_view(access, team, &today)).collect();
    teams.sort_by_key(|t| t.status != "active");
    Ok(teams)
}

fn team_view(access: &Access, team: &Value, today: &str) -> Team {
    let members = team
        .get("participant")
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .enumerate()
                .filter_map(|(index, p)| {
                    let reference = elements::reference(p.get("member"))?.to_string();
                    let organization = elements::reference(p.get("onBehalfOf")).map(str::to_string);
                    let day =
                        |at: &str| p.pointer(&format!("/period/{at}")).and_then(Value::as_str).map(str::to_string);
                    let (start, end) = (day("start"), day("end"));
                    let current = start.as_deref().is_none_or(|s| s.get(..10).unwrap_or(s) <= today)
                        && end.as_deref().is_none_or(|e| e.get(..10).unwrap_or(e) >= today);
                    Some(Member {
                        index,
                        name: display_name(access, &reference),
                        organization_name: organization.as_deref().map(|o| display_name(access, o)),
                        reference,
                        role: p
                            .get("role")
                            .and_then(Value::as_array)
                            .and_then(|r| r.first())
                            .map(|r| elements::concept(Some(r)))
                            .unwrap_or_default(),
                        organization,
                        start,
                        end,
                        lead: is_lead(p),
                        current,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Team {
        id: text(team, "id"),
        version: team.pointer("/meta/versionId").and_then(Value::as_str).unwrap_or("1").to_string(),
        name: team.get("name").and_then(Value::as_str).unwrap_or("Care team").to_string(),
        status: team.get("status").and_then(Value::as_str).unwrap_or("active").to_string(),
        members,
    }
}

fn is_lead(participant: &Value) -> bool {
    participant.get("extension").and_then(Value::as_array).is_some_and(|all| {
        all.iter().any(|e| {
            e.get("url").and_then(Value::as_str) == Some(LEAD_EXTENSION)
                && e.get("valueBoolean").and_then(Value::as_bool) == Some(true)
        })
    })
}

/// The name of a Practitioner, PractitionerRole (its practitioner's), Organization or other
/// resource as a list shows it; the reference itself when the caller may not read it.
pub fn display_name(access: &Access, reference: &str) -> String {
    let Some((resource_type, id)) = reference.split_once('/') else { return reference.to_string() };
    let Ok(resource) = read::read(access, resource_type, id) else { return reference.to_string() };
    match resource_type {
        "PractitionerRole" => match elements::reference(resource.get("practitioner")) {
            Some(practitioner) => display_name(access, practitioner),
            None => reference.to_string(),
        },
        "Organization" => resource.get("name").and_then(Value::as_str).unwrap_or(reference).to_string(),
        _ => person_name(&resource).unwrap_or_else(|| reference.to_string()),
    }
}

/// "Given Family, suffix" of a person resource's first name.
pub fn person_name(resource: &Value) -> Option<String> {
    let name = resource.get("name").and_then(Value::as_array)?.first()?;
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return Some(text.to_string());
    }
    let given: Vec<&str> = name
        .get("given")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let family = name.get("family").and_then(Value::as_str).unwrap_or_default();
    let mut shown = format!("{} {family}", given.join(" ")).trim().to_string();
    if let Some(suffix) = name.get("suffix").and_then(Value::as_array).and_then(|s| s.first()).and_then(Value::as_str) {
        shown = format!("{shown}, {suffix}");
    }
    (!shown.is_empty()).then_some(shown)
}

/// Adds `member` to the patient's active care team, creating the team when the patient has
/// none; written with `If-Match` on the version read. The caller must have the patient in
/// reach (the door's guard decides; this only refuses early with a clear answer).
pub fn add_member(access: &Access, patient: &str, member: &NewMember) -> Result<String> {
    check_member(member)?;
    read::may_write(access, patient)?;
    let participant = participant_of(member);
    let existing =
        read::search(access, "CareTeam", &[("patient", format!("Patient/{patient}")), ("status", "active".into())], 1)?;
    match existing.into_iter().next() {
        Some(mut team) => {
            let id = text(&team, "id");
            if member.lead {
                clear_lead(&mut team);
            }
            match team.get_mut("participant").and_then(Value::as_array_mut) {
                Some(all) => all.push(participant),
                None => team["participant"] = json!([participant]),
            }
            read::write_back(access, team)?;
            Ok(id)
        }
        None => {
            let team = json!({
                "resourceType": "CareTeam",
                "status": "active",
                "name": "Care team",
                "subject": {"reference": format!("Patient/{patient}")},
                "period": {"start": today()},
                "participant": [participant],
            });
            let outcome = access.create(team, None)?;
            Ok(outcome.version.map(|v| v.id).unwrap_or_default())
        }
    }
}

/// Ends the membership at position `index` of team `team_id` on `end` (`YYYY-MM-DD`, today when
/// absent), written with `If-Match` on `read_version`. The member keeps the patient until then
/// and loses them after (the policy reads the period).
pub fn end_membership(
    access: &Access,
    team_id: &str,
    read_version: &str,
    index: usize,
    end: Option<&str>,
) -> Result<()> {
    let end = end.map(str::to_string).unwrap_or_else(today);
    if !is_date(&end) {
        return Err(Error::Invalid("the end of a membership is a date (YYYY-MM-DD)".into()));
    }
    let mut team = read::read(access, "CareTeam", team_id)?;
    if team.pointer("/meta/versionId").and_then(Value::as_str) != Some(read_version) {
        return Err(
            access::Error::Store(store::Error::PreconditionFailed("the care team changed meanwhile".into())).into()
        );
    }
    let participant = team
        .get_mut("participant")
        .and_then(Value::as_array_mut)
        .and_then(|all| all.get_mut(index))
        .ok_or(Error::NotFound)?;
    if let Some(start) = participant.pointer("/period/start").and_then(Value::as_str)
        && start.get(..10).unwrap_or(start) > end.as_str()
    {
        return Err(Error::Invalid("a membership cannot end before it starts".into()));
    }
    participant["period"]["end"] = json!(end);
    read::write_back(access, team)?;
    Ok(())
}

fn participant_of(member: &NewMember) -> Value {
    let mut participant = json!({
        "role": [{"text": member.role.trim()}],
        "member": {"reference": member.reference.trim()},
        "period": {"start": member.start.clone().unwrap_or_else(today)},
    });
    if let Some(end) = &member.end {
        participant["period"]["end"] = json!(end);
    }
    if let Some(organization) = &member.organization {
        participant["onBehalfOf"] = json!({"reference": organization.trim()});
    }
    if member.lead {
        participant["extension"] = json!([{"url": LEAD_EXTENSION, "valueBoolean": true}]);
    }
    participant
}

fn clear_lead(team: &mut Value) {
    if let Some(all) = team.get_mut("participant").and_then(Value::as_array_mut) {
        for participant in all {
            if let Some(extensions) = participant.get_mut("extension").and_then(Value::as_array_mut) {
                extensions.retain(|e| e.get("url").and_then(Value::as_str) != Some(LEAD_EXTENSION));
                if extensions.is_empty() {
                    participant.as_object_mut().map(|p| p.remove("extension"));
                }
            }
        }
    }
}

fn check_member(member: &NewMember) -> Result<()> {
    let (kind, id) = member.reference.trim().split_once('/').unwrap_or_default();
    if !matches!(kind, "Practitioner" | "PractitionerRole" | "Organization" | "RelatedPerson" | "Patient")
        || !fhir::reference::is_id(id)
    {
        return Err(Error::Invalid(
            "a member is a Practitioner, PractitionerRole, Organization, RelatedPerson or Patient reference".into(),
        ));
    }
    if member.role.trim().is_empty() {
        return Err(Error::Invalid("a member needs a role on the team".into()));
    }
    if let Some(org) = &member.organization {
        let (kind, id) = org.trim().split_once('/').unwrap_or_default();
        if kind != "Organization" || !fhir::reference::is_id(id) {
            return Err(Error::Invalid("a member acts for an Organization reference".into()));
        }
    }
    for day in member.start.iter().chain(member.end.iter()) {
        if !is_date(day) {
            return Err(Error::Invalid("membership dates are dates (YYYY-MM-DD)".into()));
        }
    }
    if let (Some(start), Some(end)) = (&member.start, &member.end)
        && end < start
    {
        return Err(Error::Invalid("a membership cannot end before it starts".into()));
    }
    Ok(())
}

fn is_date(text: &str) -> bool {
    time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).is_ok()
}

/// Today (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

fn text(resource: &Value, key: &str) -> String {
    resource.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}
