//! The CapabilityStatement, generated from the definitions and what this server implements.

use serde_json::{Value, json};

/// Interactions every resource type supports here.
const TYPE_INTERACTIONS: [&str; 9] =
    ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"];

/// The search parameters of a type that this server indexes and searches.
fn search_params(resource_type: &str) -> Vec<Value> {
    search::registry()
        .params(resource_type)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.kind != search::ParamKind::Special && (p.expression.is_some() || p.name.starts_with('_')))
        .filter_map(|p| {
            let def = fhir::definitions().search_param(resource_type, &p.name)?;
            Some(json!({"name": p.name, "definition": def.url, "type": def.kind}))
        })
        .collect()
}

fn operations(resource_type: &str) -> Vec<Value> {
    let mut ops = vec![json!({
        "name": "validate",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"
    })];
    match resource_type {
        "Patient" => {
            ops.push(
                json!({"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}),
            );
            // Bulk Data (HL7 FHIR Bulk Data Access 2.0) and the C-CDA document of a patient.
            ops.push(json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}));
            ops.push(json!({"name": "ccda-export", "definition": "urn:continuum:operation:ccda-export"}));
            // Patient merge (FHIR R5's operation on the R4 record) and its undoing.
            ops.push(json!({"name": "merge", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-merge"}));
            ops.push(json!({"name": "unmerge", "definition": "urn:continuum:operation:unmerge"}));
            // Continuum nodes sharing a record (answered 404 by a server without peers).
            for name in ["locate", "pull", "push"] {
                ops.push(json!({"name": name, "definition": format!("urn:continuum:operation:{name}")}));
            }
            // Patient matching (FHIR R4) and the duplicate review work list.
            ops.push(json!({"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match"}));
            ops.push(json!({"name": "match-review", "definition": "urn:continuum:operation:match-review"}));
        }
        "Group" => {
            ops.push(json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}));
        }
        "DocumentReference" => {
            ops.push(json!({"name": "docref", "definition": "http://hl7.org/fhir/us/core/OperationDefinition/docref"}));
        }
        _ => {}
    }
    ops
}

/// The server's CapabilityStatement (`GET /fhir/metadata`).
pub(crate) fn capability_statement(base_url: &str) -> Value {
    let definitions = fhir::definitions();
    let resources: Vec<Value> = definitions
        .resource_types()
        .into_iter()
        .map(|resource_type| {
            json!({
                "type": resource_type,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{resource_type}"),
                "interaction": TYPE_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "multiple",
                "referencePolicy": ["literal", "logical", "enforced", "local"],
                "searchInclude": ["*"],
                "searchRevInclude": ["*"],
                "searchParam": search_params(resource_type),
                "operation": operations(resource_type),
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": time::OffsetDateTime::now_utc().date().to_string(),
        "publisher": "Continuum",
        "kind": "instance",
        "software": {"name": "Continuum", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Continuum FHIR R4 server", "url": base_url},
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Conditional operations (If-None-Exist, conditional update/delete, \
                conditional references in transactions) accept any search parameter; unknown ones are refused.",
            "resource": resources,
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "history-system"},
                {"code": "search-system"}
            ],
            "operation": [
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"},
                {"name": "import", "definition": "urn:continuum:operation:bulk-import"},
                {"name": "ccda-import", "definition": "urn:continuum:operation:ccda-import"}
            ],
            "searchParam": [
                {"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
                {"name": "_lastUpdated", "type": "date", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
                {"name": "_text", "type": "string", "definition": "http://hl7.org/fhir/SearchParameter/DomainResource-text"},
                {"name": "_content", "type": "string", "definition": "http://hl7.org/fhir/SearchParameter/Resource-content"},
                {"name": "_list", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-list"}
            ],
        }],
    })
}
