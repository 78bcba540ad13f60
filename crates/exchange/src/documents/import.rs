//! Filing a C-CDA document (see the module above).

use crate::{Error, Result};
use access::Access;
use base64::Engine;
use ccda::{Document, Mapped, SectionKind, Warning};
use chart::reconcile;
use search::query::SearchQuery;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use store::audit::Subtype;

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The patient it was filed to.
    pub patient: String,
    /// Whether that patient was created by this import.
    pub patient_created: bool,
    /// The DocumentReference of the document.
    pub document_reference: String,
    /// Whether the document had been imported before (nothing was added).
    pub already_imported: bool,
    /// Resources created per section (`problems`, `results`…).
    pub filed: BTreeMap<&'static str, usize>,
    /// The items filed pending reconciliation (`Type/id`).
    pub pending: Vec<String>,
    /// Problems, allergies and medications not filed because the chart holds them.
    pub already_on_chart: usize,
    /// Entries the reader could not map.
    pub warnings: Vec<Warning>,
}

fn reconciled(mapped: &Mapped) -> bool {
    matches!(mapped.section, Some(SectionKind::Problems | SectionKind::Allergies | SectionKind::Medications))
        && reconcile::RECONCILED_TYPES.contains(&type_of(&mapped.resource))
}

fn type_of(resource: &Value) -> &str {
    resource.get("resourceType").and_then(Value::as_str).unwrap_or_default()
}

/// Imports the C-CDA document `xml` for `access`, to `patient` when given.
pub fn import_ccda(access: &Access, xml: &[u8], patient: Option<&str>) -> Result<ImportReport> {
    let document = ccda::read(xml)?;
    // The same document again (the same bytes) adds nothing. Not its id alone: senders reuse
    // ids (the HL7 examples share theirs), and a corrected document may keep it.
    let digest = digest_of(xml);
    if let Some(existing) = access.by_identifier("DocumentReference", Some(DIGEST_SYSTEM), &digest)?.first() {
        let body: Value = existing.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
        let filed_to = body
            .pointer("/subject/reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("Patient/"))
            .unwrap_or_default()
            .to_string();
        if let Some(asked) = patient
            && asked != filed_to
        {
            return Err(Error::invalid("this document was already filed to another patient"));
        }
        return Ok(ImportReport {
            patient: filed_to,
            patient_created: false,
            document_reference: existing.id.clone(),
            already_imported: true,
            filed: BTreeMap::new(),
            pending: Vec::new(),
            already_on_chart: 0,
            warnings: document.warnings,
        });
    }
    let patient = match patient {
        Some(id) => {
            access.read("Patient", id)?;
            Some(id.to_string())
        }
        None => find_patient(access, &document)?,
    };
    let held = match &patient {
        Some(id) => chart_codes(access, id)?,
        None => HashMap::new(),
    };
    let mut on_file = already_on_file(access, &document, patient.as_deref())?;
    file_parties(access, &document, &mut on_file)?;
    let mut plan = Plan::new(&document, patient.as_deref(), &held, &on_file, xml);
    // A consult note answering a referral names it (`inFulfillmentOf`): the DocumentReference
    // is related to that ServiceRequest, which closes the referral's loop.
    let fulfilled = orders_fulfilled(access, &document, patient.as_deref())?;
    if !fulfilled.is_empty() {
        let related: Vec<Value> =
            fulfilled.iter().map(|id| json!({"reference": format!("ServiceRequest/{id}")})).collect();
        plan.bundle["entry"][plan.document_entry]["resource"]["context"]["related"] = json!(related);
    }
    let response = access.transaction_for(plan.bundle.clone(), patient.as_deref())?;
    plan.report(&response, document.warnings)
}

/// The ServiceRequests of `patient` the caller may see that the document's orders name: by the
/// entry id a Continuum referral note gives its referral (`ServiceRequest/id` under
/// [`ccda::ENTRY_ID_ROOT`]), by a bare UUID that is the request's id, or by its identifier.
fn orders_fulfilled(access: &Access, document: &Document, patient: Option<&str>) -> Result<Vec<String>> {
    let Some(patient) = patient else { return Ok(Vec::new()) };
    let entry_system = format!("urn:uuid:{}", ccda::ENTRY_ID_ROOT);
    let mut found: Vec<String> = Vec::new();
    for order in &document.orders {
        let (Some(system), Some(value)) =
            (order.get("system").and_then(Value::as_str), order.get("value").and_then(Value::as_str))
        else {
            continue;
        };
        let candidates: Vec<store::ResourceVersion> = match (system, value) {
            (s, v) if s == entry_system => match v.strip_prefix("ServiceRequest/") {
                Some(id) if fhir::reference::is_id(id) => access.read("ServiceRequest", id).into_iter().collect(),
                _ => Vec::new(),
            },
            ("urn:ietf:rfc:3986", v) => match v.strip_prefix("urn:uuid:") {
                Some(id) if fhir::reference::is_id(id) => access.read("ServiceRequest", id).into_iter().collect(),
                _ => Vec::new(),
            },
            (s, v) => access.by_identifier("ServiceRequest", Some(s), v).unwrap_or_default(),
        };
        for version in candidates {
            let Some(body) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
                continue;
            };
            let of_patient =
                body.pointer("/subject/reference").and_then(Value::as_str) == Some(&format!("Patient/{patient}"));
            if of_patient && !found.contains(&version.id) {
                found.push(version.id);
            }
        }
    }
    Ok(found)
}

/// The identifier system of a document's SHA-256 digest (lower-case hex) on its
/// DocumentReference.
pub const DIGEST_SYSTEM: &str = "urn:continuum:document-sha256";

fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `system` and `value` of a FHIR Identifier.
fn identifier_parts(identifier: &Value) -> Option<(String, String)> {
    let value = identifier.get("value").and_then(Value::as_str)?;
    let system = identifier.get("system").and_then(Value::as_str).unwrap_or_default();
    Some((system.to_string(), value.to_string()))
}

/// The patient the document's own identifiers name, when exactly one does; else the one
/// record the matcher finds certain.
fn find_patient(access: &Access, document: &Document) -> Result<Option<String>> {
    let Some(patient) = document.resources.iter().find(|m| m.full_url == document.patient_url) else {
        return Ok(None);
    };
    let mut found = HashSet::new();
    for identifier in patient.resource.get("identifier").and_then(Value::as_array).into_iter().flatten() {
        let Some((system, value)) = identifier_parts(identifier) else { continue };
        let system = (!system.is_empty()).then_some(system);
        for version in access.by_identifier("Patient", system.as_deref(), &value)? {
            found.insert(version.id);
        }
    }
    if found.len() == 1 {
        return Ok(found.into_iter().next());
    }
    // No identifier decides: the document's patient is the one record the matcher finds
    // certain (through the caller's door: only patients the importer may see), else new.
    // Probable matches are then the patient index's to put on the review list.
    let identity = crate::identity::Identity::new(matching::Model::default(), NO_PERSON_IDS);
    let answer = identity.find(
        access,
        &crate::identity::MatchRequest { patient: patient.resource.clone(), only_certain: true, count: Some(2) },
    )?;
    Ok(match answer.matches.as_slice() {
        [only] => Some(only.version.id.clone()),
        _ => None,
    })
}

/// A person-id system no identifier carries: a document's identifiers are the sender's, so
/// none of them is this installation's person id.
const NO_PERSON_IDS: &str = "urn:continuum:no-person-id";

/// The codes on `patient`'s chart per reconciled type (`system|code` → the item's
/// reference), items already in reconciliation included, rejected and merged ones not.
fn chart_codes(access: &Access, patient: &str) -> Result<HashMap<String, String>> {
    let mut held = HashMap::new();
    for resource_type in reconcile::RECONCILED_TYPES {
        let params = vec![("patient".to_string(), patient.to_string())];
        let query = SearchQuery::parse(Some(resource_type), &params, false).map_err(access::Error::from)?;
        let page = match access.search(query, &params, 1000, Subtype::SearchType) {
            Ok(page) => page,
            Err(access::Error::Forbidden(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        for version in &page.matches {
            let Some(resource) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
                continue;
            };
            if matches!(reconcile::tag_of(&resource), Some("rejected") | Some("merged")) {
                continue;
            }
            for code in reconcile::codes_of(reconcile::concept_of(&resource)) {
                held.entry(format!("{}:{code}", family(resource_type)))
                    .or_insert_with(|| format!("{resource_type}/{}", version.id));
            }
        }
    }
    Ok(held)
}

/// Medication statements and requests are one list for reconciliation.
fn family(resource_type: &str) -> &str {
    match resource_type {
        "MedicationStatement" | "MedicationRequest" => "Medication",
        other => other,
    }
}

/// The transaction an import runs, and what each entry is.
struct Plan {
    bundle: Value,
    /// Per entry: the section it came from, whether pending.
    entries: Vec<(Option<SectionKind>, bool, &'static str)>,
    patient: Option<String>,
    patient_entry: Option<usize>,
    document_entry: usize,
    already_on_chart: usize,
}

impl Plan {
    fn new(
        document: &Document,
        patient: Option<&str>,
        held: &HashMap<String, String>,
        on_file: &HashMap<String, String>,
        xml: &[u8],
    ) -> Plan {
        // Entries the chart holds are not filed; references to them go to the chart's item.
        let mut redirect: HashMap<String, String> = on_file.clone();
        if let Some(id) = patient {
            redirect.insert(document.patient_url.clone(), format!("Patient/{id}"));
        }
        let mut already_on_chart = 0;
        for mapped in document.resources.iter().filter(|m| reconciled(m)) {
            let resource_type = type_of(&mapped.resource);
            let codes = reconcile::codes_of(reconcile::concept_of(&mapped.resource));
            if let Some(existing) = codes.iter().find_map(|c| held.get(&format!("{}:{c}", family(resource_type)))) {
                redirect.insert(mapped.full_url.clone(), existing.clone());
                already_on_chart += 1;
            }
        }
        let mut entries = Vec::new();
        let mut bundle_entries = Vec::new();
        let mut targets = Vec::new();
        let mut patient_entry = None;
        for mapped in &document.resources {
            if redirect.contains_key(&mapped.full_url) {
                continue;
            }
            let mut resource = mapped.resource.clone();
            rewrite_references(&mut resource, &redirect);
            let pending = reconciled(mapped);
            if pending {
                reconcile::mark_pending(&mut resource);
            }
            let is_patient = mapped.full_url == document.patient_url;
            if is_patient {
                patient_entry = Some(bundle_entries.len());
            } else if mapped.section.is_some() {
                targets.push(json!({"reference": mapped.full_url}));
            }
            let resource_type = type_of(&resource).to_string();
            let request = json!({"method": "POST", "url": resource_type});
            entries.push((mapped.section, pending, kind_name(&resource_type)));
            bundle_entries.push(json!({"fullUrl": mapped.full_url, "resource": resource, "request": request}));
        }
        let subject = patient.map_or_else(|| document.patient_url.clone(), |p| format!("Patient/{p}"));
        // The document itself: its exact bytes, and what it is.
        let binary_id = uuid::Uuid::new_v4().to_string();
        bundle_entries.push(json!({
            "resource": {"resourceType": "Binary", "id": binary_id, "contentType": "application/xml",
                         "securityContext": {"reference": subject},
                         "data": base64::engine::general_purpose::STANDARD.encode(xml)},
            "request": {"method": "PUT", "url": format!("Binary/{binary_id}")}
        }));
        entries.push((None, false, "document"));
        let document_url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let document_entry = bundle_entries.len();
        let mut reference = document_reference(document, &subject, &binary_id, xml);
        rewrite_references(&mut reference, &redirect);
        bundle_entries.push(json!({
            "fullUrl": document_url,
            "resource": reference,
            "request": {"method": "POST", "url": "DocumentReference"}
        }));
        entries.push((None, false, "document"));
        // Where every resource made came from.
        let source = document.author_organization_url.clone().or_else(|| document.custodian_url.clone());
        let mut agents = Vec::new();
        match &source {
            Some(org) => agents.push(json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]}, "who": {"reference": org}})),
            None => agents.push(json!({"who": {"display": "the document names no authoring organization"}})),
        }
        if let Some(custodian) = &document.custodian_url
            && source.as_ref() != Some(custodian)
        {
            agents.push(json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "custodian"}]}, "who": {"reference": custodian}}));
        }
        if !targets.is_empty() {
            // The document and the patient too: the Provenance is part of their record.
            targets.push(json!({"reference": document_url}));
            targets.push(json!({"reference": subject}));
            let mut provenance = json!({
                "resource": {
                    "resourceType": "Provenance",
                    "target": targets,
                    "recorded": store::format_instant(time::OffsetDateTime::now_utc()),
                    "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]},
                    "agent": agents,
                    "entity": [{"role": "source", "what": {"reference": document_url}}]
                },
                "request": {"method": "POST", "url": "Provenance"}
            });
            rewrite_references(&mut provenance, &redirect);
            bundle_entries.push(provenance);
            entries.push((None, false, "provenance"));
        }
        Plan {
            bundle: json!({"resourceType": "Bundle", "type": "transaction", "entry": bundle_entries}),
            entries,
            patient: patient.map(str::to_string),
            patient_entry,
            document_entry,
            already_on_chart,
        }
    }

    fn report(&self, response: &Value, warnings: Vec<Warning>) -> Result<ImportReport> {
        let answered: Vec<&Value> = response.get("entry").and_then(Value::as_array).into_iter().flatten().collect();
        let location = |i: usize| -> Option<(String, String, bool)> {
            let response = answered.get(i)?.get("response")?;
            let location = response.get("location").and_then(Value::as_str)?;
            let mut parts = location.split('/');
            let (t, id) = (parts.next()?.to_string(), parts.next()?.to_string());
            let created = response.get("status").and_then(Value::as_str).is_some_and(|s| s.starts_with("201"));
            Some((t, id, created))
        };
        let patient = match (&self.patient, self.patient_entry.and_then(location)) {
            (Some(p), _) => p.clone(),
            (None, Some((_, id, _))) => id,
            (None, None) => return Err(Error::invalid("the document's patient could not be filed")),
        };
        let (_, document_reference, _) =
            location(self.document_entry).ok_or_else(|| Error::invalid("the document could not be filed"))?;
        let mut filed = BTreeMap::new();
        let mut pending = Vec::new();
        for (i, (section, is_pending, _)) in self.entries.iter().enumerate() {
            let (Some(section), Some((t, id, created))) = (section, location(i)) else { continue };
            if !created {
                continue;
            }
            *filed.entry(section.name()).or_insert(0) += 1;
            if *is_pending {
                pending.push(format!("{t}/{id}"));
            }
        }
        Ok(ImportReport {
            patient,
            patient_created: self.patient.is_none(),
            document_reference,
            already_imported: false,
            filed,
            pending,
            already_on_chart: self.already_on_chart,
            warnings,
        })
    }
}

fn kind_name(resource_type: &str) -> &'static str {
    match resource_type {
        "Practitioner" | "PractitionerRole" | "Organization" | "Device" | "Location" => "party",
        _ => "entry",
    }
}

/// The resources of the document the store already has, by their `urn:uuid:` name: a
/// person or organization carrying one of the same identifiers (when exactly one does), an
/// entry of the same patient carrying one of the same identifiers and one of the same codes
/// (entry ids are not unique enough alone: senders reuse them, the HL7 examples among them).
fn already_on_file(access: &Access, document: &Document, patient: Option<&str>) -> Result<HashMap<String, String>> {
    let mut found = HashMap::new();
    for mapped in &document.resources {
        if mapped.full_url == document.patient_url {
            continue;
        }
        let resource_type = type_of(&mapped.resource);
        let is_party = mapped.section.is_none();
        if !is_party && patient.is_none() {
            continue;
        }
        let codes = entry_codes(&mapped.resource);
        for identifier in mapped.resource.get("identifier").and_then(Value::as_array).into_iter().flatten() {
            let Some((system, value)) = identifier_parts(identifier) else { continue };
            let system = (!system.is_empty()).then_some(system);
            let matches = access.by_identifier(resource_type, system.as_deref(), &value)?;
            let hit = if is_party {
                (matches.len() == 1).then(|| matches[0].id.clone())
            } else {
                matches.iter().find_map(|version| {
                    let stored: Value = serde_json::from_str(version.body.as_deref()?).ok()?;
                    let same_patient = store::compartment::patients_of(resource_type, &stored)
                        .iter()
                        .any(|p| Some(p.as_str()) == patient);
                    let stored_codes = entry_codes(&stored);
                    let same_code =
                        codes.is_empty() && stored_codes.is_empty() || codes.iter().any(|c| stored_codes.contains(c));
                    (same_patient && same_code).then(|| version.id.clone())
                })
            };
            if let Some(id) = hit {
                found.insert(mapped.full_url.clone(), format!("{resource_type}/{id}"));
                break;
            }
        }
    }
    Ok(found)
}

/// The name the service files a document's people and organizations under.
pub const DIRECTORY_JOB: &str = "exchange-directory";

/// Files the document's people and organizations the store lacks (authors, custodian,
/// performers) into the directory, as the service's own job: keeping the directory is not the
/// clinician's work (their role may not write it), and a person or organization made from a
/// document is shared data, not the patient's. Adds them to `on_file`.
fn file_parties(access: &Access, document: &Document, on_file: &mut HashMap<String, String>) -> Result<()> {
    let parties: Vec<&Mapped> = document
        .resources
        .iter()
        .filter(|m| m.section.is_none() && m.full_url != document.patient_url && !on_file.contains_key(&m.full_url))
        .collect();
    if parties.is_empty() {
        return Ok(());
    }
    let entries: Vec<Value> = parties
        .iter()
        .map(|m| {
            let mut resource = m.resource.clone();
            rewrite_references(&mut resource, on_file);
            json!({"fullUrl": m.full_url, "resource": resource, "request": {"method": "POST", "url": type_of(&m.resource)}})
        })
        .collect();
    let directory = access.door().enter(access::Who::Job(DIRECTORY_JOB));
    let response = directory.transaction(json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}));
    if !directory.settle_queued() {
        tracing::error!("the directory entries' audit could not be queued");
    }
    let response = response?;
    for (party, answer) in parties.iter().zip(response.get("entry").and_then(Value::as_array).into_iter().flatten()) {
        if let Some(location) = answer.pointer("/response/location").and_then(Value::as_str) {
            let mut parts = location.split('/');
            if let (Some(t), Some(id)) = (parts.next(), parts.next()) {
                on_file.insert(party.full_url.clone(), format!("{t}/{id}"));
            }
        }
    }
    Ok(())
}

/// Every `system|code` of what an entry is about.
fn entry_codes(resource: &Value) -> Vec<String> {
    let mut codes = Vec::new();
    for field in ["code", "vaccineCode", "medicationCodeableConcept"] {
        codes.extend(reconcile::codes_of(resource.get(field)));
    }
    for concept in resource.get("type").and_then(Value::as_array).into_iter().flatten() {
        codes.extend(reconcile::codes_of(Some(concept)));
    }
    codes
}

/// Rewrites every `reference` naming a key of `to` to its value.
fn rewrite_references(value: &mut Value, to: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "reference"
                    && let Some(target) = item.as_str().and_then(|r| to.get(r))
                {
                    *item = Value::String(target.clone());
                } else {
                    rewrite_references(item, to);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_references(i, to)),
        _ => {}
    }
}

/// The DocumentReference of an imported document.
fn document_reference(document: &Document, subject: &str, binary: &str, xml: &[u8]) -> Value {
    let size = xml.len();
    let format = if document.r2 { ccda::FORMAT_STRUCTURED_BODY_R21 } else { ccda::FORMAT_STRUCTURED_BODY_R11 };
    let mut reference = json!({
        "resourceType": "DocumentReference",
        "masterIdentifier": document.id,
        "identifier": [document.id, {"system": DIGEST_SYSTEM, "value": digest_of(xml)}],
        "status": "current",
        "docStatus": "final",
        "type": document.code,
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note", "display": "Clinical Note"}]}],
        "subject": {"reference": subject},
        "content": [{
            "attachment": {"contentType": "application/xml", "url": format!("Binary/{binary}"), "size": size},
            "format": {"system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "code": format}
        }]
    });
    if let Some(title) = &document.title {
        reference["description"] = json!(title);
        reference["content"][0]["attachment"]["title"] = json!(title);
    }
    // `date` is an instant: only a time with its zone can be one.
    if let Some(at) = &document.effective_time
        && at.len() > 10
        && time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok()
    {
        reference["date"] = json!(at);
    }
    let authors: Vec<Value> = document
        .author_urls
        .iter()
        .chain(&document.author_organization_url)
        .map(|url| json!({"reference": url}))
        .collect();
    if !authors.is_empty() {
        reference["author"] = json!(authors);
    }
    if let Some(custodian) = &document.custodian_url {
        reference["custodian"] = json!({"reference": custodian});
    }
    reference
}
