//! `Patient/$match`: the candidates of every block, searched through the door (so a caller
//! finds only patients inside its reach), scored by the model and ranked.

use super::Identity;
use super::frequencies::Counting;
use crate::{Error, Result};
use access::Access;
use matching::{Comparison, Demographics, Grade};
use search::query::SearchQuery;
use serde_json::Value;
use std::collections::HashSet;
use store::ResourceVersion;
use store::audit::Subtype;

/// How many candidates one block may bring (a block larger than this is a common name in a
/// large population: the other blocks still bring the right record).
const BLOCK_LIMIT: usize = 200;
/// The most matches answered, whatever `count` asks.
pub const MAX_COUNT: usize = 100;

/// A `Patient/$match` request.
#[derive(Debug, Clone)]
pub struct MatchRequest {
    /// The Patient to match (need not be valid or stored).
    pub patient: Value,
    /// `onlyCertainMatches`: answer only certain matches.
    pub only_certain: bool,
    /// `count`: at most this many matches.
    pub count: Option<usize>,
}

/// One record that matched.
#[derive(Debug, Clone)]
pub struct Match {
    /// The stored Patient.
    pub version: ResourceVersion,
    /// How it compared.
    pub comparison: Comparison,
}

impl MatchRequest {
    /// A request for `patient` with the defaults.
    pub fn of(patient: Value) -> MatchRequest {
        MatchRequest { patient, only_certain: false, count: None }
    }

    /// Reads the operation's `Parameters` (`resource`, `onlyCertainMatches`, `count`); a bare
    /// Patient is taken as `resource`.
    pub fn from_parameters(body: Value) -> Result<MatchRequest> {
        match body.get("resourceType").and_then(Value::as_str) {
            Some("Patient") => return MatchRequest::of(body).checked(),
            Some("Parameters") => {}
            _ => return Err(Error::invalid("$match takes a Parameters resource with a Patient as `resource`")),
        }
        let mut request = MatchRequest { patient: Value::Null, only_certain: false, count: None };
        for parameter in body.get("parameter").and_then(Value::as_array).into_iter().flatten() {
            match parameter.get("name").and_then(Value::as_str) {
                Some("resource") => {
                    request.patient = parameter.get("resource").cloned().unwrap_or(Value::Null);
                }
                Some("onlyCertainMatches") => {
                    request.only_certain = parameter
                        .get("valueBoolean")
                        .and_then(Value::as_bool)
                        .ok_or_else(|| Error::invalid("onlyCertainMatches must be a valueBoolean"))?;
                }
                Some("count") => {
                    let count = parameter
                        .get("valueInteger")
                        .and_then(Value::as_u64)
                        .filter(|c| *c > 0)
                        .ok_or_else(|| Error::invalid("count must be a positive valueInteger"))?;
                    request.count = Some(usize::try_from(count).unwrap_or(MAX_COUNT));
                }
                _ => {}
            }
        }
        request.checked()
    }

    fn checked(self) -> Result<MatchRequest> {
        if self.patient.is_null() {
            return Err(Error::invalid("$match needs a `resource` parameter holding a Patient"));
        }
        if self.patient.get("resourceType").and_then(Value::as_str) != Some("Patient") {
            return Err(Error::invalid("the `resource` of $match must be a Patient"));
        }
        let d = Demographics::of_patient(&self.patient, None);
        if d.family.is_empty() && d.given.is_empty() && d.identifiers.is_empty() && d.birth.is_none() {
            return Err(Error::invalid("the Patient has nothing to match on: no name, birth date or identifier"));
        }
        Ok(self)
    }
}

/// The live Patients sharing a block with `patient`, by id (the patient's own id left out),
/// at most [`BLOCK_LIMIT`] per block, searched through `access`.
pub(crate) fn candidates(
    access: &Access,
    demographics: &Demographics,
    own_id: Option<&str>,
) -> Result<Vec<ResourceVersion>> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for block in matching::blocks(demographics) {
        let query = match SearchQuery::parse(Some("Patient"), &block.params, false) {
            Ok(query) => query,
            // A value the search cannot take (a malformed date) blocks nothing.
            Err(_) => continue,
        };
        let page = match access.search(query, &block.params, BLOCK_LIMIT, Subtype::SearchType) {
            Ok(page) => page,
            Err(access::Error::Forbidden(_)) => {
                return Err(access::Error::Forbidden("searching patients".into()).into());
            }
            Err(e) => return Err(e.into()),
        };
        for version in page.matches {
            if Some(version.id.as_str()) != own_id && seen.insert(version.id.clone()) {
                out.push(version);
            }
        }
    }
    Ok(out)
}

/// Whether a stored Patient was merged into another (inactive, `replaced-by`): never a match.
pub(crate) fn is_merged_away(patient: &Value) -> bool {
    patient.get("active").and_then(Value::as_bool) == Some(false)
        && patient
            .get("link")
            .and_then(Value::as_array)
            .is_some_and(|links| links.iter().any(|l| l.get("type").and_then(Value::as_str) == Some("replaced-by")))
}

/// Scores `candidates` against `demographics`, best first.
pub(crate) fn score(
    identity: &Identity,
    access: &Access,
    demographics: &Demographics,
    candidates: Vec<ResourceVersion>,
) -> Vec<Match> {
    let counting = Counting::new(&identity.frequencies, access);
    let mut matches: Vec<Match> = candidates
        .into_iter()
        .filter_map(|version| {
            let patient: Value = serde_json::from_str(version.body.as_deref()?).ok()?;
            if is_merged_away(&patient) {
                return None;
            }
            let other = Demographics::of_patient(&patient, Some(&identity.enterprise_system));
            let comparison = identity.model.compare(demographics, &other, &counting);
            Some(Match { version, comparison })
        })
        .collect();
    matches.sort_by(|a, b| {
        b.comparison.score.total_cmp(&a.comparison.score).then_with(|| a.version.id.cmp(&b.version.id))
    });
    matches
}

/// The answer to `Patient/$match`.
#[derive(Debug, Clone, Default)]
pub struct MatchAnswer {
    /// The matches the caller may see, best first.
    pub matches: Vec<Match>,
    /// How many more records match (certain or probable) outside the caller's reach: counted
    /// only for registration staff and administrators, and only when the installation allows
    /// it ([`Identity::reveal_matches_outside_reach`]); never who they are.
    pub outside_reach: usize,
}

fn wanted(request: &MatchRequest, grade: Grade) -> bool {
    grade != Grade::CertainlyNot && (!request.only_certain || grade == Grade::Certain)
}

pub(crate) fn find(identity: &Identity, access: &Access, request: &MatchRequest) -> Result<MatchAnswer> {
    let demographics = Demographics::of_patient(&request.patient, Some(&identity.enterprise_system));
    let own = request.patient.get("id").and_then(Value::as_str);
    let found = candidates(access, &demographics, own)?;
    let mut matches = score(identity, access, &demographics, found);
    matches.retain(|m| wanted(request, m.comparison.grade));
    let mut outside_reach = 0;
    if identity.reveal_outside_reach && registers(access) {
        // The bare fact: matched as the index (unrestricted), counted, never shown.
        let index = access.door().enter(access::Who::Job(super::index::JOB));
        let all = candidates(&index, &demographics, own)?;
        let seen: HashSet<&str> = matches.iter().map(|m| m.version.id.as_str()).collect();
        outside_reach = score(identity, &index, &demographics, all)
            .iter()
            .filter(|m| m.comparison.grade <= Grade::Probable && wanted(request, m.comparison.grade))
            .filter(|m| !seen.contains(m.version.id.as_str()))
            .count();
        index.settle_queued();
    }
    matches.truncate(request.count.unwrap_or(MAX_COUNT).min(MAX_COUNT));
    Ok(MatchAnswer { matches, outside_reach })
}

/// Whether the caller registers patients (front desk) or administers the installation.
fn registers(access: &Access) -> bool {
    access
        .caller()
        .is_some_and(|c| c.roles().iter().any(|r| matches!(r, auth::Role::FrontDesk | auth::Role::Administrator)))
}
