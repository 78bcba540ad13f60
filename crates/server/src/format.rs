//! Content negotiation, request bodies and FHIR JSON responses.

use crate::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use fhir::IssueCode;
use serde_json::Value;

/// The media type of every FHIR response.
pub(crate) const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Query parameters of a request, decoded, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Query {
    pub pairs: Vec<(String, String)>,
    pub raw: String,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let raw = raw.unwrap_or("").to_string();
        let pairs = form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        Query { pairs, raw }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The raw query without the result parameters (`_format`, `_pretty`), as criteria for
    /// conditional operations.
    pub fn criteria(&self) -> String {
        self.raw
            .split('&')
            .filter(|part| {
                let name = part.split('=').next().unwrap_or("");
                !part.is_empty() && name != "_format" && name != "_pretty"
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Refuses requests that want anything but FHIR JSON (`_format` or `Accept`): 406.
pub(crate) fn negotiate(headers: &HeaderMap, query: &Query) -> Result<(), ApiError> {
    if let Some(format) = query.get("_format") {
        return match format.trim() {
            "json" | "application/json" | "application/fhir+json" | "application/json+fhir" => Ok(()),
            f if f.contains("xml") => Err(not_acceptable("XML is not supported yet; use _format=json")),
            _ => Err(not_acceptable("unsupported _format; use json")),
        };
    }
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let accept = accept.to_str().map_err(|_| ApiError::bad_request("the Accept header is not readable text"))?;
    let acceptable = accept.split(',').any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        matches!(
            media,
            "" | "*/*" | "application/*" | "application/json" | "application/fhir+json" | "application/json+fhir"
        )
    });
    if acceptable {
        Ok(())
    } else if accept.contains("xml") {
        Err(not_acceptable("XML is not supported yet; ask for application/fhir+json"))
    } else {
        Err(not_acceptable("only application/fhir+json is served"))
    }
}

fn not_acceptable(diagnostics: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_ACCEPTABLE, IssueCode::NotSupported, diagnostics)
}

/// Reads a JSON request body of at most `limit` bytes: 415 for non-JSON content types, 413 when
/// too large, 400 when it is not JSON.
pub(crate) async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, ApiError> {
    check_content_type(headers)?;
    let bytes = read_bytes(headers, body, limit).await?;
    parse_json(&bytes)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = content_type.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media.as_str() {
        "application/fhir+json" | "application/json" | "application/json+fhir" | "application/json-patch+json" => {
            Ok(())
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueCode::NotSupported,
            "request body must be application/fhir+json",
        )),
    }
}

async fn read_bytes(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueCode::TooLong,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(e) = source {
            if e.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = e.source();
        }
        ApiError::bad_request("the request body could not be read")
    })
}

/// Parses JSON text; the error says where, not what (no PHI echoed).
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let value = serde_json::from_slice(bytes).map_err(json_error)?;
    serde_json::from_slice::<UniqueNames>(bytes).map_err(json_error)?;
    Ok(value)
}

/// A JSON error that says where, not what.
fn json_error(e: serde_json::Error) -> ApiError {
    let what = match e.classify() {
        serde_json::error::Category::Io | serde_json::error::Category::Eof => "incomplete JSON",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "invalid JSON data",
    };
    let text = e.to_string();
    let reason = if text.contains("recursion limit") {
        " (nested too deeply)"
    } else if text.starts_with(DUPLICATE_NAME) {
        " (an object repeats a property name)"
    } else {
        ""
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        IssueCode::Structure,
        format!("{what}{reason} at line {} column {}", e.line(), e.column()),
    )
}

const DUPLICATE_NAME: &str = "duplicate property name";

/// Walks JSON text and fails on the first object that repeats a property name. `Value` keeps
/// the last of the repeats silently, so `{"gender":"male","gender":"female"}` would mean
/// whatever the last parser to read it chose; RFC 8259 leaves it open, and FHIR JSON has no
/// use for it, so it is refused. A second pass over the text rather than a hand-built `Value`,
/// so that numbers keep serde_json's arbitrary precision.
struct UniqueNames;

impl<'de> serde::Deserialize<'de> for UniqueNames {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueNames)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueNames {
    type Value = UniqueNames;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(UniqueNames)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(UniqueNames)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(UniqueNames)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(UniqueNames)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(UniqueNames)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(UniqueNames)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<UniqueNames>()?.is_some() {}
        Ok(UniqueNames)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            if !seen.insert(name) {
                return Err(serde::de::Error::custom(DUPLICATE_NAME));
            }
            map.next_value::<UniqueNames>()?;
        }
        Ok(UniqueNames)
    }
}

/// A property name, borrowed from the text unless it has escapes.
struct Name<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl<'de> serde::de::Visitor<'de> for NameVisitor {
    type Value = Name<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a property name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Name<'de>, E> {
        Ok(Name(std::borrow::Cow::Borrowed(name)))
    }

    fn visit_str<E>(self, name: &str) -> Result<Name<'de>, E> {
        Ok(Name(std::borrow::Cow::Owned(name.to_string())))
    }
}

/// A response carrying FHIR JSON.
pub(crate) fn fhir_json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    raw_fhir_response(status, Body::from(body))
}

/// A response whose body is already FHIR JSON text.
pub(crate) fn raw_fhir_response(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_drop_result_parameters() {
        let q = Query::parse(Some("identifier=a%7Cb&_format=json&_id=1"));
        assert_eq!(q.criteria(), "identifier=a%7Cb&_id=1");
        assert_eq!(q.get("identifier"), Some("a|b"));
    }

    #[test]
    fn xml_is_not_acceptable() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/fhir+xml"));
        let err = negotiate(&headers, &Query::default()).unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_ACCEPTABLE);
        let q = Query::parse(Some("_format=xml"));
        assert_eq!(negotiate(&HeaderMap::new(), &q).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html, application/fhir+json;q=0.9"));
        assert!(negotiate(&headers, &Query::default()).is_ok());
    }

    #[test]
    fn repeated_property_names_are_refused() {
        let err = parse_json(b"{\"a\": {\"gender\": 1, \"gender\": 2}}").unwrap_err();
        assert!(format!("{:?}", err.issues).contains("repeats a property name"));
        let err = parse_json(b"{\"a\": 1, \"\\u0061\": 2}").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(parse_json(b"{\"a\": [{\"b\": 1.50}, {\"b\": 2}], \"c\": {\"b\": 3}}").is_ok());
    }

    #[test]
    fn json_errors_do_not_echo_content() {
        let err = parse_json(b"{\"name\": \"Secret Person\" oops}").unwrap_err();
        let text = format!("{:?}", err.issues);
        assert!(!text.contains("Secret"));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
