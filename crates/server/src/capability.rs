//! The CapabilityStatement, generated from the definitions and what this server implements.

use serde_json::{Value, json};

/// Interactions every resource type supports here.
const TYPE_INTERACTIONS: [&str; 8] =
    ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"];

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
                "operation": [{
                    "name": "validate",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"
                }],
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
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Conditional operations (If-None-Exist, conditional update/delete, \
                conditional references in transactions) accept the _id and identifier parameters.",
            "resource": resources,
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "history-system"}
            ],
        }],
    })
}
