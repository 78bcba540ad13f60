//! The longitudinal timeline: every encounter, result, report, note, procedure, medication
//! order, immunization and document of a patient, newest first, across organizations, each
//! with its source organization (named by the resource, else by its Provenance, else by the
//! encounter it belongs to), filterable by kind, date range and organization, one page at a
//! time.
//!
//! Pages follow a cursor: the full-precision instant and the `Type/id` of the last entry shown.
//! Entries are ordered strictly by (instant, reference), newest first, so a page starts exactly
//! after the previous one whatever share one instant (a laboratory panel's results do): no
//! entry is shown twice and none is skipped.

use crate::elements::{self, concept, observation_value, rfc3339};
use crate::lists::medication_name;
use crate::read::{search, search_if_allowed};
use crate::{Error, Result};
use access::Access;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use time::{Date, OffsetDateTime};

/// Entries per page.
pub const PAGE: usize = 40;

/// The most resources of one kind read for one page: the cut to the cursor and the
/// organization filter are made after reading, so a page may need more than one page's worth.
const MOST_PER_KIND: usize = 4_000;

/// A kind of entry: what it is called, the resource type it comes from and how it is searched.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// Its key in a filter (`type=result`).
    pub key: &'static str,
    /// Its label on a page.
    pub label: &'static str,
    /// The resource type.
    pub resource_type: &'static str,
    /// The search parameter of its date.
    date_param: &'static str,
    /// Further search parameters that make a resource of the type this kind.
    extra: &'static [(&'static str, &'static str)],
}

/// Every kind, in the order a filter lists them.
pub const KINDS: &[Kind] = &[
    Kind { key: "encounter", label: "Encounter", resource_type: "Encounter", date_param: "date", extra: &[] },
    Kind {
        key: "result",
        label: "Result",
        resource_type: "Observation",
        date_param: "date",
        extra: &[("category", "laboratory")],
    },
    Kind { key: "report", label: "Report", resource_type: "DiagnosticReport", date_param: "date", extra: &[] },
    Kind { key: "note", label: "Note", resource_type: "DocumentReference", date_param: "date", extra: &[] },
    Kind { key: "procedure", label: "Procedure", resource_type: "Procedure", date_param: "date", extra: &[] },
    Kind {
        key: "medication",
        label: "Medication",
        resource_type: "MedicationRequest",
        date_param: "authoredon",
        extra: &[],
    },
    Kind { key: "immunization", label: "Immunization", resource_type: "Immunization", date_param: "date", extra: &[] },
    Kind { key: "document", label: "Document", resource_type: "Composition", date_param: "date", extra: &[] },
];

/// Where a page starts: strictly after (older than) this instant and reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The instant of the last entry shown, at full precision.
    pub at: OffsetDateTime,
    /// Its `Type/id`; empty: the page starts strictly before the instant.
    pub reference: String,
}

impl Cursor {
    /// The cursor written in a page link: `<unix nanoseconds>~<Type/id>`.
    pub fn to_text(&self) -> String {
        format!("{}~{}", self.at.unix_timestamp_nanos(), self.reference)
    }

    /// A cursor read from a page link; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (nanos, reference) = text.split_once('~')?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?;
        if !reference.is_empty() {
            let (resource_type, id) = reference.split_once('/')?;
            if !KINDS.iter().any(|k| k.resource_type == resource_type) || !fhir::reference::is_id(id) {
                return None;
            }
        }
        Some(Cursor { at, reference: reference.to_string() })
    }

    /// Whether an entry at `at` with `reference` comes after this cursor (is older).
    fn precedes(&self, at: OffsetDateTime, reference: &str) -> bool {
        (at, reference) < (self.at, self.reference.as_str())
    }
}

/// What to show.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filters {
    /// The kinds asked for, by key (none: every kind).
    pub kinds: Vec<&'static str>,
    /// From this day on.
    pub from: Option<Date>,
    /// Up to this day, inclusive.
    pub to: Option<Date>,
    /// Only entries from this organization (`Organization/id`).
    pub organization: Option<String>,
    /// The page's cursor (none: the newest page).
    pub before: Option<Cursor>,
}

impl Filters {
    /// The filters of a query string (`type` repeated, `from`, `to`, `org`, `before`); an
    /// unknown kind is ignored, a malformed date or page link refused with what is wrong.
    pub fn from_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Filters> {
        let mut filters = Filters::default();
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let day = |name: &str, value: &str| -> Result<Option<Date>> {
            let value = value.trim();
            if value.is_empty() {
                return Ok(None);
            }
            Date::parse(value, format)
                .map(Some)
                .map_err(|_| Error::InvalidFilter(format!("“{name}” must be a real date (YYYY-MM-DD)")))
        };
        for (name, value) in pairs {
            match name {
                "type" => {
                    if let Some(kind) = KINDS.iter().find(|k| k.key == value)
                        && !filters.kinds.contains(&kind.key)
                    {
                        filters.kinds.push(kind.key);
                    }
                }
                "from" => filters.from = day(name, value)?,
                "to" => filters.to = day(name, value)?,
                "org" => filters.organization = Some(value.trim().to_string()).filter(|o| !o.is_empty()),
                "before" => {
                    let cursor = Cursor::parse(value)
                        .ok_or_else(|| Error::InvalidFilter("the page link is not valid".into()))?;
                    filters.before = Some(cursor);
                }
                _ => {}
            }
        }
        if let (Some(from), Some(to)) = (filters.from, filters.to)
            && from > to
        {
            return Err(Error::InvalidFilter("the start date is after the end date".into()));
        }
        Ok(filters)
    }

    /// The kinds shown.
    fn kinds(&self) -> impl Iterator<Item = &'static Kind> + '_ {
        KINDS.iter().filter(|k| self.kinds.is_empty() || self.kinds.contains(&k.key))
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When it happened.
    pub at: OffsetDateTime,
    /// What kind of entry it is.
    pub kind: &'static Kind,
    /// The resource's id.
    pub id: String,
    /// `Type/id`.
    pub reference: String,
    /// What it is (the encounter type, the test, the note's title…).
    pub title: String,
    /// Its value, state or reason.
    pub detail: String,
    /// The name of the organization it comes from, when known.
    pub organization: Option<String>,
}

impl Entry {
    /// The cursor of the page that starts after this entry.
    pub fn cursor(&self) -> Cursor {
        Cursor { at: self.at, reference: self.reference.clone() }
    }

    /// The entry a resource of `kind` makes; `None` without a readable date.
    fn of(kind: &'static Kind, resource: &Value) -> Option<Entry> {
        let at = elements::when(resource).and_then(elements::instant)?;
        let id = resource.get("id").and_then(Value::as_str)?.to_string();
        let (title, detail) = describe(kind, resource);
        let reference = format!("{}/{id}", kind.resource_type);
        Some(Entry { at, kind, id, reference, title, detail, organization: None })
    }
}

/// One page of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePage {
    /// The entries, newest first.
    pub entries: Vec<Entry>,
    /// The cursor of the next (older) page, when there is one.
    pub next: Option<Cursor>,
    /// The organizations the page's entries come from, as (reference, name), by name.
    pub organizations: Vec<(String, String)>,
    /// The labels of the kinds the caller may not read (left out, and said so).
    pub hidden: Vec<&'static str>,
}

/// A resource read for the page, with what it says of its source.
struct Candidate {
    entry: Entry,
    /// The organization the resource names itself: (reference, display).
    own: Option<(Option<String>, Option<String>)>,
    /// The encounter it belongs to (`Encounter/id`).
    encounter: Option<String>,
}

/// One page of `patient`'s timeline (with the records linked to it as the same person's),
/// read through the door as `access`'s caller may see it.
pub fn page(access: &Access, patient: &str, filters: &Filters) -> Result<TimelinePage> {
    let mut hidden = Vec::new();
    // With an organization filter more is read per kind, then filtered.
    let wanted = if filters.organization.is_some() { PAGE * 4 } else { PAGE + 1 };
    let mut candidates = Vec::new();
    // Below the highest floor some kind may not have been read: the page stops there (the
    // kind with that floor has enough entries above it to fill the page).
    let mut floor: Option<OffsetDateTime> = None;
    // The whole person: the records the patient index linked to this one (each entry keeps
    // its own source).
    let mut records = vec![patient.to_string()];
    records.extend(access.linked_records(patient)?);
    let patients = records.join(",");
    for kind in filters.kinds() {
        match of_kind(access, &patients, kind, filters, wanted)? {
            Some(found) => {
                candidates.extend(found.candidates);
                floor = floor.max(found.floor);
            }
            None => hidden.push(kind.label),
        }
    }
    if let Some(floor) = floor {
        candidates.retain(|c| c.entry.at > floor);
    }
    newest_first(&mut candidates);
    candidates.truncate(PAGE * 4);
    let sources = Sources::find(access, &candidates)?;
    let mut organizations: Vec<(String, String)> = sources.names.iter().map(|(r, n)| (r.clone(), n.clone())).collect();
    organizations.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let mut entries = Vec::new();
    for candidate in candidates {
        let (reference, name) = sources.of(&candidate);
        if let Some(wanted) = &filters.organization
            && reference.as_deref() != Some(wanted.as_str())
        {
            continue;
        }
        let mut entry = candidate.entry;
        entry.organization = name;
        entries.push(entry);
        if entries.len() > PAGE {
            break;
        }
    }
    let next = if entries.len() > PAGE {
        Some(entries[PAGE - 1].cursor())
    } else {
        // A short page (an organization filter left out most of what was read) while more
        // may lie at or below the floor: the next page starts there.
        floor
            .and_then(|floor| floor.checked_add(time::Duration::NANOSECOND))
            .map(|at| Cursor { at, reference: String::new() })
    };
    entries.truncate(PAGE);
    Ok(TimelinePage { entries, next, organizations, hidden })
}

/// What was read of one kind for a page.
struct Found {
    /// The entries past the cursor that are certainly all there are down to `floor`.
    candidates: Vec<Candidate>,
    /// Entries at or before this instant may not have been read (the kind has more than
    /// was read); `None`: everything past the cursor was read.
    floor: Option<OffsetDateTime>,
}

/// At least `wanted` entries of `kind` past the cursor and within the dates, when there are
/// so many; `None` when the caller may not read the kind.
///
/// A search sorts by its own key (the latest instant a date may mean: a period's end, the
/// end of a second or of a day), not by the instant the timeline shows, and in no set order
/// among equals. So what was read is trusted only above the latest instant the last resource
/// read may mean: whatever was not read lies at or below it.
fn of_kind(
    access: &Access,
    patient: &str,
    kind: &'static Kind,
    filters: &Filters,
    wanted: usize,
) -> Result<Option<Found>> {
    let mut pairs: Vec<(&str, String)> = vec![("patient", patient.to_string())];
    pairs.extend(kind.extra.iter().map(|(k, v)| (*k, v.to_string())));
    pairs.push(("_sort", format!("-{}", kind.date_param)));
    if let Some(before) = &filters.before {
        // The search cuts at the second after the cursor's (a superset: a search date has
        // no finer precision to rely on); the exact cut is made below.
        let second = before.at.unix_timestamp().saturating_add(1);
        if let Ok(at) = OffsetDateTime::from_unix_timestamp(second) {
            pairs.push((kind.date_param, format!("lt{}", rfc3339(at))));
        }
    }
    if let Some(from) = filters.from {
        pairs.push((kind.date_param, format!("ge{from}")));
    }
    if let Some(to) = filters.to {
        pairs.push((kind.date_param, format!("le{to}")));
    }
    let mut count = wanted;
    loop {
        let Some(found) = search_if_allowed(access, kind.resource_type, &pairs, count)? else { return Ok(None) };
        let floor = if found.len() < count { None } else { found.last().map(latest_possible) };
        let candidates: Vec<Candidate> = found
            .iter()
            .filter_map(|resource| candidate(kind, resource))
            .filter(|c| filters.before.as_ref().is_none_or(|b| b.precedes(c.entry.at, &c.entry.reference)))
            .filter(|c| floor.is_none_or(|floor| c.entry.at > floor))
            .collect();
        if floor.is_none() || candidates.len() >= wanted || count >= MOST_PER_KIND {
            return Ok(Some(Found { candidates, floor }));
        }
        count = (count * 4).min(MOST_PER_KIND);
    }
}

/// The latest instant a resource's date may mean, as a search sorts it (at least that late):
/// a period's end (an open period: any time), the end of the second, day, month or year a
/// date is written to. A resource without a date sorts last: the earliest instant.
fn latest_possible(resource: &Value) -> OffsetDateTime {
    let end_of = |text: &str| -> Option<OffsetDateTime> {
        let at = elements::instant(text)?;
        let slack = match text.len() {
            4 => time::Duration::days(366),
            7 => time::Duration::days(31),
            10 => time::Duration::days(1),
            _ => time::Duration::seconds(1),
        };
        at.checked_add(slack)
    };
    let latest = time::PrimitiveDateTime::MAX.assume_utc();
    for key in ["period", "effectivePeriod", "performedPeriod"] {
        if let Some(period) = resource.get(key) {
            return period.get("end").and_then(Value::as_str).and_then(end_of).unwrap_or(latest);
        }
    }
    match elements::when(resource) {
        Some(text) => end_of(text).unwrap_or(latest),
        None => time::PrimitiveDateTime::MIN.assume_utc(),
    }
}

fn candidate(kind: &'static Kind, resource: &Value) -> Option<Candidate> {
    let entry = Entry::of(kind, resource)?;
    let encounter = elements::reference(resource.get("encounter").or_else(|| resource.pointer("/context/encounter/0")))
        .filter(|r| r.starts_with("Encounter/"))
        .map(str::to_string);
    Some(Candidate { entry, own: own_organization(resource), encounter })
}

/// Newest first; at one instant, by reference (descending), so the order is strict.
fn newest_first(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| (b.entry.at, &b.entry.reference).cmp(&(a.entry.at, &a.entry.reference)));
}

/// Where the entries of a page come from, beyond what they name themselves.
#[derive(Default)]
struct Sources {
    /// `Type/id` → `Organization/id`, from Provenance.
    provenance: HashMap<String, String>,
    /// `Encounter/id` → its service provider `Organization/id`.
    providers: HashMap<String, String>,
    /// `Organization/id` → its name.
    names: HashMap<String, String>,
}

impl Sources {
    /// The sources of `candidates`: their Provenance, their encounters' service providers
    /// and the organizations' names, in one search each per hundred.
    fn find(access: &Access, candidates: &[Candidate]) -> Result<Sources> {
        let mut sources = Sources::default();
        let unnamed: Vec<String> =
            candidates.iter().filter(|c| c.own.is_none()).map(|c| c.entry.reference.clone()).collect();
        for chunk in unnamed.chunks(100) {
            let found = search_if_allowed(access, "Provenance", &[("target", chunk.join(","))], 200)?;
            for provenance in found.into_iter().flatten() {
                let Some(organization) = provenance_organization(&provenance) else { continue };
                for target in provenance.get("target").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(target) = target.get("reference").and_then(Value::as_str)
                        && chunk.iter().any(|c| c == target)
                    {
                        sources.provenance.entry(target.to_string()).or_insert_with(|| organization.clone());
                    }
                }
            }
        }
        let visits: BTreeSet<&str> = candidates
            .iter()
            .filter(|c| c.own.is_none() && !sources.provenance.contains_key(&c.entry.reference))
            .filter_map(|c| c.encounter.as_deref()?.strip_prefix("Encounter/"))
            .collect();
        let visits: Vec<&str> = visits.into_iter().collect();
        for chunk in visits.chunks(100) {
            for visit in search_if_allowed(access, "Encounter", &[("_id", chunk.join(","))], 200)?.into_iter().flatten()
            {
                if let (Some(id), Some(provider)) = (
                    visit.get("id").and_then(Value::as_str),
                    elements::reference(visit.get("serviceProvider")).filter(|r| r.starts_with("Organization/")),
                ) {
                    sources.providers.insert(format!("Encounter/{id}"), provider.to_string());
                }
            }
        }
        let mut named: BTreeSet<String> = BTreeSet::new();
        for candidate in candidates {
            match &candidate.own {
                Some((Some(reference), _)) => {
                    named.insert(reference.clone());
                }
                Some((None, _)) => {}
                None => named.extend(sources.inferred(candidate)),
            }
        }
        let ids: Vec<&str> = named.iter().filter_map(|r| r.strip_prefix("Organization/")).collect();
        for chunk in ids.chunks(100) {
            for organization in search(access, "Organization", &[("_id", chunk.join(","))], 200)? {
                if let (Some(id), Some(name)) =
                    (organization.get("id").and_then(Value::as_str), organization.get("name").and_then(Value::as_str))
                {
                    sources.names.insert(format!("Organization/{id}"), name.to_string());
                }
            }
        }
        Ok(sources)
    }

    /// The organization a candidate that names none comes from: its Provenance's, else its
    /// encounter's service provider.
    fn inferred(&self, candidate: &Candidate) -> Option<String> {
        self.provenance
            .get(&candidate.entry.reference)
            .or_else(|| candidate.encounter.as_ref().and_then(|e| self.providers.get(e)))
            .cloned()
    }

    /// A candidate's source: (`Organization/id` when known, the name shown).
    fn of(&self, candidate: &Candidate) -> (Option<String>, Option<String>) {
        match &candidate.own {
            Some((reference, display)) => {
                let name = reference.as_ref().and_then(|r| self.names.get(r)).cloned().or_else(|| display.clone());
                (reference.clone(), name)
            }
            None => {
                let reference = self.inferred(candidate);
                let name = reference.as_ref().and_then(|r| self.names.get(r)).cloned();
                (reference, name)
            }
        }
    }
}

/// The organization a Provenance names as an agent (on whose behalf, else who).
fn provenance_organization(provenance: &Value) -> Option<String> {
    provenance.get("agent").and_then(Value::as_array).into_iter().flatten().find_map(|agent| {
        [agent.get("onBehalfOf"), agent.get("who")]
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("reference").and_then(Value::as_str))
            .find(|r| r.starts_with("Organization/"))
            .map(str::to_string)
    })
}

/// The organization a resource names as its source, if any: (reference, display).
fn own_organization(resource: &Value) -> Option<(Option<String>, Option<String>)> {
    let candidates = [
        resource.get("serviceProvider"),
        resource.get("custodian"),
        resource.pointer("/performer/0/onBehalfOf"),
        resource.pointer("/performer/0/actor"),
        resource.pointer("/performer/0"),
        resource.get("requester"),
        resource.get("author").and_then(|a| a.get(0)),
    ];
    for reference in candidates.into_iter().flatten() {
        let target = reference.get("reference").and_then(Value::as_str);
        if target.is_some_and(|t| t.starts_with("Organization/"))
            || reference.get("type").and_then(Value::as_str) == Some("Organization")
        {
            return Some((
                target.map(str::to_string),
                reference.get("display").and_then(Value::as_str).map(str::to_string),
            ));
        }
    }
    None
}

/// The title and detail of a resource of `kind`.
fn describe(kind: &Kind, resource: &Value) -> (String, String) {
    let status = resource.get("status").and_then(Value::as_str).unwrap_or("");
    match kind.resource_type {
        "Encounter" => {
            let class = resource.pointer("/class/code").and_then(Value::as_str).unwrap_or("");
            let reason = concept(resource.pointer("/reasonCode/0"));
            (concept(resource.pointer("/type/0")), format!("{class} {reason}").trim().to_string())
        }
        "Observation" => (concept(resource.get("code")), observation_value(resource)),
        "DiagnosticReport" => {
            let count = resource.get("result").and_then(Value::as_array).map_or(0, Vec::len);
            (concept(resource.get("code")), format!("{count} results"))
        }
        "DocumentReference" => {
            let doc_status = resource.get("docStatus").and_then(Value::as_str).unwrap_or("");
            let title = resource
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| concept(resource.get("type")));
            let state = match (status, doc_status) {
                ("superseded", _) => "superseded by an amendment",
                ("entered-in-error", _) => "entered in error",
                (_, "final") => "signed",
                (_, "amended") => "signed amendment",
                (_, "preliminary") => "draft",
                _ => status,
            };
            (title, state.to_string())
        }
        "MedicationRequest" => {
            let reason = concept(resource.get("statusReason"));
            (medication_name(resource), format!("{status} {reason}").trim().to_string())
        }
        "Immunization" => (concept(resource.get("vaccineCode")), status.to_string()),
        "Composition" => {
            (resource.get("title").and_then(Value::as_str).unwrap_or("Document").to_string(), status.to_string())
        }
        _ => (concept(resource.get("code")), status.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(key: &str) -> &'static Kind {
        KINDS.iter().find(|k| k.key == key).unwrap()
    }

    fn result(id: &str, at: &str) -> Candidate {
        let resource = json!({"resourceType": "Observation", "id": id, "effectiveDateTime": at,
            "code": {"text": "HbA1c"}, "valueQuantity": {"value": 6.1, "unit": "%"}});
        candidate(kind("result"), &resource).unwrap()
    }

    fn references(candidates: &[Candidate]) -> Vec<&str> {
        candidates.iter().map(|c| c.entry.reference.as_str()).collect()
    }

    #[test]
    fn entries_are_newest_first_and_strictly_ordered_within_one_instant() {
        let mut candidates = vec![
            result("a", "2020-01-01T10:00:00.250Z"),
            result("c", "2020-01-01T10:00:00.900Z"),
            result("b", "2020-01-01T10:00:00.900Z"),
            result("d", "2019-12-31T23:59:59+00:00"),
            result("e", "2020-01-01T11:00:00+01:00"),
        ];
        newest_first(&mut candidates);
        // 11:00+01:00 is 10:00:00.000Z: ordered by the instant, not by the text written.
        assert_eq!(
            references(&candidates),
            ["Observation/c", "Observation/b", "Observation/a", "Observation/e", "Observation/d"]
        );
    }

    #[test]
    fn a_cursor_lets_through_exactly_what_is_older() {
        let cursor = result("b", "2020-01-01T10:00:00.900Z").entry.cursor();
        let older = |c: &Candidate| cursor.precedes(c.entry.at, &c.entry.reference);
        assert!(!older(&result("b", "2020-01-01T10:00:00.900Z")), "the entry itself is on the page before");
        assert!(!older(&result("c", "2020-01-01T10:00:00.900Z")), "a later reference at the instant was shown");
        assert!(older(&result("a", "2020-01-01T10:00:00.900Z")), "an earlier reference at the instant follows");
        // Same second, earlier fraction: older whatever its reference (the defect of a cursor
        // kept in whole seconds showed it twice).
        assert!(older(&result("z", "2020-01-01T10:00:00.100Z")));
        assert!(!older(&result("a", "2020-01-01T10:00:00.950Z")));
    }

    #[test]
    fn cursors_survive_a_page_link_and_refuse_anything_else() {
        let cursor = result("x-1", "2020-01-01T10:00:00.123456789Z").entry.cursor();
        let text = cursor.to_text();
        assert_eq!(Cursor::parse(&text), Some(cursor));
        for bad in ["", "12", "abc~Observation/x", "1~Observation", "1~Patient/x", "1~Observation/a b", "1~/x"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn walking_pages_by_cursor_shows_every_entry_once() {
        // 100 results over three instants, a laboratory panel's worth at each.
        let mut all: Vec<Candidate> = (0..100)
            .map(|i| {
                let at = ["2021-05-01T09:30:00.5Z", "2021-05-01T09:30:00Z", "2020-02-02T08:00:00Z"][i % 3];
                result(&format!("r{i:03}"), at)
            })
            .collect();
        newest_first(&mut all);
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page: Vec<&Candidate> = all
                .iter()
                .filter(|c| cursor.as_ref().is_none_or(|b| b.precedes(c.entry.at, &c.entry.reference)))
                .take(PAGE)
                .collect();
            let Some(last) = page.last() else { break };
            cursor = Some(last.entry.cursor());
            seen.extend(page.iter().map(|c| c.entry.reference.clone()));
        }
        assert_eq!(seen, references(&all));
    }

    #[test]
    fn what_a_search_may_have_left_unread_lies_at_or_below_the_last_resource_s_latest_instant() {
        let at = |text: &str| elements::instant(text).unwrap();
        let second = json!({"effectiveDateTime": "2020-01-01T10:00:00Z"});
        assert_eq!(latest_possible(&second), at("2020-01-01T10:00:01Z"));
        assert_eq!(latest_possible(&json!({"date": "2020-01-01"})), at("2020-01-02"));
        let visit = json!({"period": {"start": "2020-01-01T09:00:00Z", "end": "2020-01-01T17:00:00Z"}});
        assert_eq!(latest_possible(&visit), at("2020-01-01T17:00:01Z"));
        let open = json!({"period": {"start": "2020-01-01T09:00:00Z"}});
        assert!(latest_possible(&open) > at("9999-01-01"), "an open visit may mean any time");
        assert!(latest_possible(&json!({})) < at("0001-01-01"), "no date: sorted last");
    }

    #[test]
    fn filters_are_read_and_checked() {
        let filters = Filters::from_query([
            ("type", "result"),
            ("type", "note"),
            ("type", "result"),
            ("type", "nonsense"),
            ("from", "2020-01-01"),
            ("to", " "),
            ("org", " Organization/o1 "),
        ])
        .unwrap();
        assert_eq!(filters.kinds, ["result", "note"]);
        assert_eq!(filters.from, Some(time::macros::date!(2020 - 01 - 01)));
        assert_eq!(filters.to, None);
        assert_eq!(filters.organization.as_deref(), Some("Organization/o1"));
        assert_eq!(filters.kinds().map(|k| k.resource_type).collect::<Vec<_>>(), ["Observation", "DocumentReference"]);
        assert_eq!(Filters::from_query([]).unwrap().kinds().count(), KINDS.len());
        for bad in [
            vec![("from", "2020-02-30")],
            vec![("from", "2021-01-01"), ("to", "2020-01-01")],
            vec![("before", "yesterday")],
        ] {
            let refused = Filters::from_query(bad.clone()).unwrap_err();
            assert!(matches!(refused, Error::InvalidFilter(_)), "{bad:?}");
        }
    }

    #[test]
    fn sources_come_from_the_resource_then_provenance_then_the_encounter() {
        let named = json!({"resourceType": "Encounter", "id": "e1", "period": {"start": "2020-01-01"},
            "serviceProvider": {"reference": "Organization/o1", "display": "Clinic"}});
        let own = candidate(kind("encounter"), &named).unwrap();
        assert_eq!(own.own, Some((Some("Organization/o1".into()), Some("Clinic".into()))));

        let by_visit = json!({"resourceType": "Observation", "id": "r1", "effectiveDateTime": "2020-01-01",
            "encounter": {"reference": "Encounter/e1"}});
        let from_visit = candidate(kind("result"), &by_visit).unwrap();
        let by_provenance = candidate(
            kind("result"),
            &json!({"resourceType": "Observation", "id": "r2",
            "effectiveDateTime": "2020-01-01", "encounter": {"reference": "Encounter/e1"}}),
        )
        .unwrap();
        let mut sources = Sources::default();
        sources.providers.insert("Encounter/e1".into(), "Organization/o1".into());
        sources.provenance.insert("Observation/r2".into(), "Organization/o2".into());
        sources.names.insert("Organization/o1".into(), "First Clinic".into());
        sources.names.insert("Organization/o2".into(), "Second Lab".into());
        assert_eq!(sources.of(&own), (Some("Organization/o1".into()), Some("First Clinic".into())));
        assert_eq!(sources.of(&from_visit), (Some("Organization/o1".into()), Some("First Clinic".into())));
        assert_eq!(sources.of(&by_provenance), (Some("Organization/o2".into()), Some("Second Lab".into())));
    }

    #[test]
    fn notes_say_where_they_stand() {
        let note = |status: &str, doc_status: &str| {
            describe(kind("note"), &json!({"status": status, "docStatus": doc_status, "description": "Visit note"}))
        };
        assert_eq!(note("current", "preliminary"), ("Visit note".into(), "draft".into()));
        assert_eq!(note("current", "final"), ("Visit note".into(), "signed".into()));
        assert_eq!(note("current", "amended"), ("Visit note".into(), "signed amendment".into()));
        assert_eq!(note("entered-in-error", "final").1, "entered in error");
    }
}
