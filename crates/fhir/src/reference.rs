//! What a `Reference.reference` string points at.

/// The parsed target of a reference string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceTarget<'a> {
    /// `Type/id` or `Type/id/_history/vid` (relative to this server, or absolute to `base`).
    Local {
        /// The resource type named before the id (`Patient`).
        resource_type: &'a str,
        /// The logical id of the resource pointed at.
        id: &'a str,
        /// The version id after `_history/`, when the reference pins one version.
        version: Option<&'a str>,
    },
    /// `#id`: a contained resource (`#` alone is the container).
    Contained(&'a str),
    /// `urn:uuid:…` or `urn:oid:…`: an entry of the enclosing Bundle.
    Urn(&'a str),
    /// `Type?params`: a conditional reference, resolved by search inside a transaction.
    Conditional {
        /// The resource type searched (`Patient` in `Patient?identifier=…`).
        resource_type: &'a str,
        /// The search parameters after `?`, still URL-encoded.
        query: &'a str,
    },
    /// An absolute URL on another server.
    External(&'a str),
    /// Anything else (not a valid reference form).
    Invalid,
}

impl<'a> ReferenceTarget<'a> {
    /// Parses `reference`; absolute URLs that start with `base` (e.g. `http://host/fhir`) are
    /// treated as local.
    pub fn parse(reference: &'a str, base: Option<&str>) -> Self {
        if let Some(fragment) = reference.strip_prefix('#') {
            return ReferenceTarget::Contained(fragment);
        }
        if reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:") {
            return ReferenceTarget::Urn(reference);
        }
        let mut relative = reference;
        if let Some(rest) = base.filter(|b| !b.is_empty()).and_then(|b| reference.strip_prefix(b)) {
            match rest.strip_prefix('/') {
                Some(rest) => relative = rest,
                None => return ReferenceTarget::External(reference),
            }
        }
        // A conditional reference's query may itself hold URLs (`identifier=http://…|x`), so
        // `Type?` is recognised before anything that looks like a scheme.
        if let Some((resource_type, query)) = relative.split_once('?')
            && is_type_name(resource_type)
        {
            return ReferenceTarget::Conditional { resource_type, query };
        }
        if relative.contains("://") {
            return ReferenceTarget::External(reference);
        }
        if relative.contains('?') {
            return ReferenceTarget::Invalid;
        }
        let parts: Vec<&str> = relative.split('/').collect();
        match parts.as_slice() {
            [t, id] if is_type_name(t) && is_id(id) => ReferenceTarget::Local { resource_type: t, id, version: None },
            [t, id, "_history", v] if is_type_name(t) && is_id(id) && is_id(v) => {
                ReferenceTarget::Local { resource_type: t, id, version: Some(v) }
            }
            _ => ReferenceTarget::Invalid,
        }
    }
}

fn is_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// Whether `s` is a valid FHIR id: 1–64 of `[A-Za-z0-9-.]`.
/// Ids made only of dots (`.`, `..`) match the R4 pattern but are refused: they cannot stand in
/// a URL, where they are dot-segments that clients and proxies resolve away (`Patient/..`).
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !s.bytes().all(|b| b == b'.')
}

#[cfg(test)]
mod tests {
    use super::ReferenceTarget::*;
    use super::*;

    #[test]
    fn parses_reference_forms() {
        assert_eq!(
            ReferenceTarget::parse("Patient/123", None),
            Local { resource_type: "Patient", id: "123", version: None }
        );
        assert_eq!(
            ReferenceTarget::parse("http://x/fhir/Patient/1/_history/2", Some("http://x/fhir")),
            Local { resource_type: "Patient", id: "1", version: Some("2") }
        );
        assert_eq!(ReferenceTarget::parse("#p1", None), Contained("p1"));
        assert_eq!(ReferenceTarget::parse("urn:uuid:abc", None), Urn("urn:uuid:abc"));
        assert_eq!(
            ReferenceTarget::parse("Practitioner?identifier=a|b", None),
            Conditional { resource_type: "Practitioner", query: "identifier=a|b" }
        );
        assert_eq!(
            ReferenceTarget::parse("http://other/fhir/Patient/1", None),
            External("http://other/fhir/Patient/1")
        );
        assert_eq!(ReferenceTarget::parse("Patient/../../etc", None), Invalid);
        assert_eq!(ReferenceTarget::parse("patient/1", None), Invalid);
    }
}
