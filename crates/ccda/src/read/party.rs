//! The patient, and the people, devices, organizations and locations the document names: each
//! made once per document (same type and identifier, or same name when there is no
//! identifier → the same resource).

use super::Reader;
use super::data::{self, address, contact_point, human_name, identifiers, put, put_list};
use super::xml::{El, Narrative, attr, child, children, is_null, text_of};
use serde_json::{Map, Value, json};

/// US Core race and ethnicity extensions.
const US_CORE_RACE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
const US_CORE_ETHNICITY: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity";
/// The CDC Race and Ethnicity code system.
const CDC_RACE: &str = "urn:oid:2.16.840.1.113883.6.238";

impl Reader {
    /// Makes the Patient of `recordTarget/patientRole`; answers its name.
    pub(crate) fn patient(&mut self, role: El<'_>) -> String {
        let mut p = Map::new();
        p.insert("resourceType".into(), Value::String("Patient".into()));
        let person = child(role, "patient");
        if let Some(person) = person {
            let mut extensions = Vec::new();
            let race =
                race_extension(person, "raceCode", US_CORE_RACE, &["1002-5", "2028-9", "2054-5", "2076-8", "2106-3"]);
            extensions.extend(race);
            let ethnicity = race_extension(person, "ethnicGroupCode", US_CORE_ETHNICITY, &["2135-2", "2186-5"]);
            extensions.extend(ethnicity);
            put_list(&mut p, "extension", extensions);
        }
        put_list(&mut p, "identifier", identifiers(role));
        if let Some(person) = person {
            put_list(&mut p, "name", children(person, "name").filter_map(human_name).collect());
        }
        put_list(&mut p, "telecom", children(role, "telecom").filter_map(contact_point).collect());
        if let Some(person) = person {
            let gender = child(person, "administrativeGenderCode").map(|g| match attr(g, "code") {
                Some("M") => "male",
                Some("F") => "female",
                // The FHIR ConceptMap of v3 AdministrativeGender: undifferentiated → other.
                Some("UN") => "other",
                _ => "unknown",
            });
            put(&mut p, "gender", gender.map(|g| Value::String(g.into())));
            let birth = child(person, "birthTime").and_then(data::ts_of).map(|t| data::date_only(&t));
            put(&mut p, "birthDate", birth.map(Value::String));
            let sdtc =
                |name: &str| person.children().find(|c| c.is_element() && c.has_tag_name((crate::SDTC_NS, name)));
            if let Some(time) = sdtc("deceasedTime").and_then(data::ts_of) {
                p.insert("deceasedDateTime".into(), Value::String(time));
            } else if let Some(flag) = sdtc("deceasedInd").and_then(|d| attr(d, "value"))
                && let Ok(flag) = flag.parse::<bool>()
            {
                p.insert("deceasedBoolean".into(), Value::Bool(flag));
            }
        }
        put_list(&mut p, "address", children(role, "addr").filter_map(address).collect());
        if let Some(person) = person {
            let empty = Narrative::default();
            put(&mut p, "maritalStatus", child(person, "maritalStatusCode").and_then(|m| data::concept(m, &empty)));
            let mut communication = Vec::new();
            for lc in children(person, "languageCommunication") {
                let Some(code) = child(lc, "languageCode").filter(|c| !is_null(*c)).and_then(|c| attr(c, "code"))
                else {
                    continue;
                };
                let mut c = Map::new();
                c.insert("language".into(), json!({"coding": [{"system": "urn:ietf:bcp:47", "code": code}]}));
                match child(lc, "preferenceInd").and_then(|p| attr(p, "value")) {
                    Some("true") => {
                        c.insert("preferred".into(), Value::Bool(true));
                    }
                    Some("false") => {
                        c.insert("preferred".into(), Value::Bool(false));
                    }
                    _ => {}
                }
                communication.push(Value::Object(c));
            }
            put_list(&mut p, "communication", communication);
        }
        if let Some(org) = child(role, "providerOrganization")
            && let Some(url) = self.organization(org)
        {
            p.insert("managingOrganization".into(), json!({ "reference": url }));
        }
        self.add(p, None)
    }

    /// The Practitioner (`assignedPerson`), Device (`assignedAuthoringDevice`) or, with neither,
    /// the Organization of an `assignedAuthor` / `assignedEntity`; `None` when it names nobody.
    pub(crate) fn assigned(&mut self, assigned: El<'_>) -> Option<String> {
        let ids = identifiers(assigned);
        let telecoms: Vec<Value> = children(assigned, "telecom").filter_map(contact_point).collect();
        let addresses: Vec<Value> = children(assigned, "addr").filter_map(address).collect();
        if let Some(person) = child(assigned, "assignedPerson") {
            let names: Vec<Value> = children(person, "name").filter_map(human_name).collect();
            if ids.is_empty() && names.is_empty() {
                return None;
            }
            let key = identity("Practitioner", &ids, &names);
            if let Some(url) = key.as_ref().and_then(|k| self.parties.get(k)) {
                return Some(url.clone());
            }
            let mut r = Map::new();
            r.insert("resourceType".into(), Value::String("Practitioner".into()));
            put_list(&mut r, "identifier", ids);
            put_list(&mut r, "name", names);
            put_list(&mut r, "telecom", telecoms);
            put_list(&mut r, "address", addresses);
            let url = self.add(r, None);
            if let Some(key) = key {
                self.parties.insert(key, url.clone());
            }
            return Some(url);
        }
        if let Some(device) = child(assigned, "assignedAuthoringDevice") {
            let mut names = Vec::new();
            if let Some(model) = child(device, "manufacturerModelName").and_then(text_of) {
                names.push(json!({"name": model, "type": "model-name"}));
            }
            if let Some(software) = child(device, "softwareName").and_then(text_of) {
                names.push(json!({"name": software, "type": "user-friendly-name"}));
            }
            if ids.is_empty() && names.is_empty() {
                return None;
            }
            let key = identity("Device", &ids, &names);
            if let Some(url) = key.as_ref().and_then(|k| self.parties.get(k)) {
                return Some(url.clone());
            }
            let mut r = Map::new();
            r.insert("resourceType".into(), Value::String("Device".into()));
            put_list(&mut r, "identifier", ids);
            put_list(&mut r, "deviceName", names);
            let owner = child(assigned, "representedOrganization").and_then(|o| self.organization(o));
            put(&mut r, "owner", owner.map(|u| json!({ "reference": u })));
            let url = self.add(r, None);
            if let Some(key) = key {
                self.parties.insert(key, url.clone());
            }
            return Some(url);
        }
        child(assigned, "representedOrganization").and_then(|o| self.organization(o))
    }

    /// The Organization of an organization element; `None` when it has no id and no name.
    pub(crate) fn organization(&mut self, org: El<'_>) -> Option<String> {
        if is_null(org) {
            return None;
        }
        let ids = identifiers(org);
        let name = children(org, "name").find_map(text_of);
        if ids.is_empty() && name.is_none() {
            return None;
        }
        let names: Vec<Value> = name.iter().map(|n| Value::String(n.clone())).collect();
        let key = identity("Organization", &ids, &names);
        if let Some(url) = key.as_ref().and_then(|k| self.parties.get(k)) {
            return Some(url.clone());
        }
        let mut r = Map::new();
        r.insert("resourceType".into(), Value::String("Organization".into()));
        put_list(&mut r, "identifier", ids);
        put(&mut r, "name", name.map(Value::String));
        put_list(&mut r, "telecom", children(org, "telecom").filter_map(contact_point).collect());
        put_list(&mut r, "address", children(org, "addr").filter_map(address).collect());
        let url = self.add(r, None);
        if let Some(key) = key {
            self.parties.insert(key, url.clone());
        }
        Some(url)
    }

    /// The Location of a service delivery location (`participantRole` of a LOC participant).
    pub(crate) fn location(&mut self, role: El<'_>, narrative: &Narrative<'_>) -> Option<String> {
        let ids = identifiers(role);
        let name = child(role, "playingEntity").and_then(|e| children(e, "name").find_map(text_of));
        if ids.is_empty() && name.is_none() {
            return None;
        }
        let names: Vec<Value> = name.iter().map(|n| Value::String(n.clone())).collect();
        let key = identity("Location", &ids, &names);
        if let Some(url) = key.as_ref().and_then(|k| self.parties.get(k)) {
            return Some(url.clone());
        }
        let mut r = Map::new();
        r.insert("resourceType".into(), Value::String("Location".into()));
        put_list(&mut r, "identifier", ids);
        put(&mut r, "name", name.map(Value::String));
        let kind = child(role, "code").and_then(|c| data::concept(c, narrative));
        put_list(&mut r, "type", kind.into_iter().collect());
        put_list(&mut r, "telecom", children(role, "telecom").filter_map(contact_point).collect());
        put(&mut r, "address", child(role, "addr").and_then(address));
        let url = self.add(r, None);
        if let Some(key) = key {
            self.parties.insert(key, url.clone());
        }
        Some(url)
    }
}

/// The identity of a party: its type and first identifier, else its type and names.
fn identity(resource_type: &str, ids: &[Value], names: &[Value]) -> Option<String> {
    if let Some(id) = ids.first() {
        let system = id.get("system").and_then(Value::as_str).unwrap_or("");
        let value = id.get("value").and_then(Value::as_str).unwrap_or("");
        return Some(format!("{resource_type}|id|{system}|{value}"));
    }
    if names.is_empty() {
        return None;
    }
    Some(format!("{resource_type}|name|{}", Value::Array(names.to_vec())))
}

/// A US Core race or ethnicity extension from `code` (`raceCode`) and its SDTC repetitions:
/// OMB categories as `ombCategory`, other codes as `detailed`, their names as `text`.
fn race_extension(person: El<'_>, tag: &str, url: &str, omb: &[&str]) -> Option<Value> {
    let mut parts = Vec::new();
    let mut names = Vec::new();
    let all = person
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == tag)
        .filter(|c| matches!(c.tag_name().namespace(), Some(crate::CDA_NS | crate::SDTC_NS)));
    for code_el in all {
        let Some(code) = attr(code_el, "code").filter(|_| !is_null(code_el)) else { continue };
        let display = attr(code_el, "displayName").map(data::collapse);
        let slice = if omb.contains(&code) { "ombCategory" } else { "detailed" };
        let mut coding = Map::new();
        coding.insert("system".into(), Value::String(CDC_RACE.into()));
        coding.insert("code".into(), Value::String(code.into()));
        if let Some(d) = &display {
            coding.insert("display".into(), Value::String(d.clone()));
            names.push(d.clone());
        } else {
            names.push(code.to_owned());
        }
        parts.push(json!({"url": slice, "valueCoding": Value::Object(coding)}));
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(json!({"url": "text", "valueString": names.join(", ")}));
    Some(json!({"url": url, "extension": parts}))
}
