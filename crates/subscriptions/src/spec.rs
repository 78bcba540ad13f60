//! A Subscription resource read and validated: what it matches (an R4 search URL, or a
//! backport topic with its filters), where and how it is delivered.

use crate::endpoint::{self, AllowList, Endpoint};
use crate::topics::{self, Topic};
use fhir::{Issue, IssueCode};
use search::query::SearchQuery;
use serde_json::Value;

/// The backport IG's R4 Subscription profile.
pub const BACKPORT_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";
/// The backport's filter criteria extension (on `Subscription.criteria`).
pub const FILTER_CRITERIA: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
/// The backport's payload content extension (on `Subscription.channel.payload`).
pub const PAYLOAD_CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
/// The backport's heartbeat period extension (on `Subscription.channel`), in seconds.
pub const HEARTBEAT_PERIOD: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period";
/// The one payload type delivered.
pub const FHIR_JSON: &str = "application/fhir+json";

/// How much of the resource a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Nothing (R4: a POST without a body; backport: no focus).
    Empty,
    /// The focus reference only (backport).
    IdOnly,
    /// The resource itself.
    FullResource,
}

impl Content {
    /// The backport's code.
    pub fn code(self) -> &'static str {
        match self {
            Content::Empty => "empty",
            Content::IdOnly => "id-only",
            Content::FullResource => "full-resource",
        }
    }
}

/// What a subscription matches.
#[derive(Debug, Clone)]
pub enum Criteria {
    /// R4: a search on one type (`Observation?code=…`).
    Search {
        /// The type searched.
        resource_type: String,
        /// The search, parsed.
        query: Box<SearchQuery>,
    },
    /// Backport: a topic, narrowed by filters (each a search on one of its types).
    Topic {
        /// The topic.
        topic: &'static Topic,
        /// Its filters, by type.
        filters: Vec<(String, SearchQuery)>,
    },
}

impl Criteria {
    /// Whether writes of `resource_type` may match.
    pub fn wants(&self, resource_type: &str) -> bool {
        match self {
            Criteria::Search { resource_type: t, .. } => t == resource_type,
            Criteria::Topic { topic, .. } => topic.types.contains(&resource_type),
        }
    }

    /// The types whose writes may match.
    pub fn types(&self) -> Vec<&str> {
        match self {
            Criteria::Search { resource_type, .. } => vec![resource_type.as_str()],
            Criteria::Topic { topic, .. } => topic.types.to_vec(),
        }
    }
}

/// Where notifications go.
#[derive(Debug, Clone)]
pub enum Channel {
    /// POST to an endpoint, with the subscription's headers.
    RestHook {
        /// The endpoint.
        endpoint: Endpoint,
        /// `Name: value` headers to send.
        headers: Vec<(String, String)>,
    },
    /// R4 websocket: `ping ID` to the sockets bound to the subscription.
    Websocket,
}

/// A Subscription as understood.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its id.
    pub id: String,
    /// Its version.
    pub version: u64,
    /// `status` as stored (`requested`, `active`, `error`, `off`).
    pub status: String,
    /// Whether it follows the backport profile (topic-based).
    pub backport: bool,
    /// What it matches.
    pub criteria: Criteria,
    /// Where notifications go.
    pub channel: Channel,
    /// What they carry.
    pub content: Content,
    /// Backport heartbeat period, in seconds.
    pub heartbeat: Option<u64>,
    /// `end`: after it no notification is sent.
    pub end: Option<time::OffsetDateTime>,
}

impl Spec {
    /// Whether it is wanted for matching and delivery (`off` is not).
    pub fn live(&self) -> bool {
        self.status != "off" && self.end.is_none_or(|end| end > time::OffsetDateTime::now_utc())
    }

    /// The topic canonical or the criteria, for `$status`.
    pub fn topic_canonical(&self) -> Option<String> {
        match &self.criteria {
            Criteria::Topic { topic, .. } => Some(topic.canonical()),
            Criteria::Search { .. } => None,
        }
    }
}

fn refuse(at: &str, diagnostics: impl Into<String>) -> Vec<Issue> {
    let mut issue = Issue::error(IssueCode::Invalid, diagnostics);
    issue.expression = Some(at.to_string());
    vec![issue]
}

fn located(error: search::QueryError, at: &str) -> Vec<Issue> {
    let mut issues = error.0;
    for issue in &mut issues {
        issue.expression.get_or_insert_with(|| at.to_string());
    }
    if issues.is_empty() {
        return refuse(at, "invalid criteria");
    }
    issues
}

/// A search URL (`Type?params`) parsed strictly: unknown parameters are refused.
pub fn parse_search(text: &str, at: &str) -> Result<(String, SearchQuery), Vec<Issue>> {
    let (resource_type, params) = text.split_once('?').unwrap_or((text, ""));
    let resource_type = resource_type.trim_start_matches('/');
    if resource_type.is_empty() || resource_type.contains('/') {
        return Err(refuse(at, "the criteria must be a search on one resource type (`Type?params`)"));
    }
    if search::registry().params(resource_type).is_none() {
        return Err(refuse(at, "the criteria's resource type is not an R4 resource type"));
    }
    let pairs = search::query::parse_pairs(params).map_err(|e| located(e, at))?;
    if let Some((name, _)) = pairs.iter().find(|(n, _)| {
        let base = n.split(':').next().unwrap_or(n);
        base.starts_with('_') && !matches!(base, "_id" | "_lastUpdated" | "_tag" | "_profile" | "_security" | "_has")
    }) {
        return Err(refuse(at, format!("`{name}` is not accepted in subscription criteria")));
    }
    let query = SearchQuery::parse(Some(resource_type), &pairs, true).map_err(|e| located(e, at))?;
    Ok((resource_type.to_string(), query))
}

fn extensions<'a>(element: Option<&'a Value>, url: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    element
        .and_then(|e| e.get("extension"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// Reads and validates a Subscription (the write-time checks: criteria, topic, channel,
/// payload, the endpoint's form and literal address).
pub fn read(resource: &Value, version: u64, allow: &AllowList) -> Result<Spec, Vec<Issue>> {
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    let status = resource.get("status").and_then(Value::as_str).unwrap_or("requested").to_string();
    let backport =
        resource.get("meta").and_then(|m| m.get("profile")).and_then(Value::as_array).is_some_and(|p| {
            p.iter().any(|p| p.as_str().is_some_and(|p| p.split('|').next() == Some(BACKPORT_PROFILE)))
        });
    let criteria_text = resource
        .get("criteria")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("Subscription.criteria", "a Subscription needs its criteria"))?;
    let criteria = if backport {
        let topic = topics::by_canonical(criteria_text).ok_or_else(|| {
            refuse("Subscription.criteria", "the criteria names no SubscriptionTopic this server offers")
        })?;
        let mut filters = Vec::new();
        for extension in extensions(resource.get("_criteria"), FILTER_CRITERIA) {
            let text = extension.get("valueString").and_then(Value::as_str).ok_or_else(|| {
                refuse("Subscription.criteria.extension", "a filter criteria extension needs its valueString")
            })?;
            let (resource_type, query) = parse_search(text, "Subscription.criteria.extension")?;
            if !topic.types.contains(&resource_type.as_str()) {
                return Err(refuse(
                    "Subscription.criteria.extension",
                    "a filter names a resource type the topic does not announce",
                ));
            }
            filters.push((resource_type, query));
        }
        Criteria::Topic { topic, filters }
    } else {
        let (resource_type, query) = parse_search(criteria_text, "Subscription.criteria")?;
        Criteria::Search { resource_type, query: Box::new(query) }
    };
    let channel_json = resource.get("channel");
    let channel_type = channel_json.and_then(|c| c.get("type")).and_then(Value::as_str).unwrap_or_default();
    let channel = match channel_type {
        "rest-hook" => {
            let text = channel_json
                .and_then(|c| c.get("endpoint"))
                .and_then(Value::as_str)
                .ok_or_else(|| refuse("Subscription.channel.endpoint", "a rest-hook needs its endpoint"))?;
            let endpoint = endpoint::check_written(text, allow)
                .map_err(|e| refuse("Subscription.channel.endpoint", e.to_string()))?;
            let mut headers = Vec::new();
            for header in channel_json.and_then(|c| c.get("header")).and_then(Value::as_array).into_iter().flatten() {
                let (name, value) = header
                    .as_str()
                    .and_then(|h| h.split_once(':'))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| refuse("Subscription.channel.header", "a header must read `Name: value`"))?;
                let valid_name =
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                let reserved = ["host", "content-length", "content-type", "transfer-encoding", "connection"]
                    .contains(&name.to_ascii_lowercase().as_str());
                if !valid_name || reserved || value.bytes().any(|b| b < 0x20 && b != b'\t') {
                    return Err(refuse(
                        "Subscription.channel.header",
                        "a header must read `Name: value` with a name of its own",
                    ));
                }
                headers.push((name, value));
            }
            Channel::RestHook { endpoint, headers }
        }
        "websocket" if !backport => Channel::Websocket,
        "websocket" => {
            return Err(refuse(
                "Subscription.channel.type",
                "topic-based subscriptions are delivered by rest-hook on this server",
            ));
        }
        _ => {
            return Err(refuse(
                "Subscription.channel.type",
                "this server delivers subscriptions by rest-hook or websocket only",
            ));
        }
    };
    let payload_element = channel_json.and_then(|c| c.get("_payload"));
    let payload = channel_json.and_then(|c| c.get("payload")).and_then(Value::as_str);
    if payload.is_some_and(|p| p != FHIR_JSON && p != "application/json") {
        return Err(refuse(
            "Subscription.channel.payload",
            "the payload type this server sends is application/fhir+json",
        ));
    }
    let content = if backport {
        match extensions(payload_element, PAYLOAD_CONTENT)
            .next()
            .and_then(|e| e.get("valueCode"))
            .and_then(Value::as_str)
        {
            None | Some("empty") => Content::Empty,
            Some("id-only") => Content::IdOnly,
            Some("full-resource") => Content::FullResource,
            Some(_) => {
                return Err(refuse(
                    "Subscription.channel.payload.extension",
                    "the payload content must be empty, id-only or full-resource",
                ));
            }
        }
    } else if payload.is_some() {
        Content::FullResource
    } else {
        Content::Empty
    };
    let heartbeat = extensions(channel_json, HEARTBEAT_PERIOD)
        .next()
        .and_then(|e| e.get("valueUnsignedInt"))
        .and_then(Value::as_u64)
        .filter(|s| *s > 0);
    let end = resource
        .get("end")
        .and_then(Value::as_str)
        .and_then(|e| time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339).ok());
    Ok(Spec { id, version, status, backport, criteria, channel, content, heartbeat, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allow() -> AllowList {
        AllowList::parse(&["127.0.0.1"]).unwrap()
    }

    fn r4(criteria: &str, endpoint: &str) -> Value {
        json!({"resourceType": "Subscription", "id": "s1", "status": "requested", "reason": "test",
            "criteria": criteria,
            "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
                "header": ["Authorization: Bearer abc"]}})
    }

    #[test]
    fn r4_criteria_are_parsed_strictly() {
        let spec = read(
            &r4("Observation?code=http://loinc.org|1234-5&patient=Patient/1", "http://127.0.0.1:9/h"),
            1,
            &allow(),
        )
        .unwrap();
        assert!(matches!(&spec.criteria, Criteria::Search { resource_type, .. } if resource_type == "Observation"));
        assert_eq!(spec.content, Content::FullResource);
        match &spec.channel {
            Channel::RestHook { headers, .. } => assert_eq!(headers, &[("Authorization".into(), "Bearer abc".into())]),
            Channel::Websocket => panic!("rest-hook expected"),
        }
        for bad in
            ["Observation?nonsense=1", "Nothing?code=1", "Observation?_sort=date", "", "Observation?date=notadate"]
        {
            assert!(read(&r4(bad, "http://127.0.0.1:9/h"), 1, &allow()).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(read(&r4("Observation?code=1", "ftp://127.0.0.1/h"), 1, &allow()).is_err());
        assert!(read(&r4("Observation?code=1", "http://10.0.0.1/h"), 1, &allow()).is_err());
        assert!(
            read(&r4("Observation?code=1", "http://10.0.0.1/h"), 1, &AllowList::parse(&["10.0.0.0/8"]).unwrap())
                .is_ok()
        );
    }

    #[test]
    fn backport_topics_and_filters() {
        let subscription = json!({"resourceType": "Subscription", "id": "b", "status": "requested", "reason": "r",
            "meta": {"profile": [BACKPORT_PROFILE]},
            "criteria": "urn:continuum:subscription-topic:encounter-start",
            "_criteria": {"extension": [{"url": FILTER_CRITERIA, "valueString": "Encounter?patient=Patient/1"}]},
            "channel": {"type": "rest-hook", "endpoint": "https://8.8.8.8/h", "payload": "application/fhir+json",
                "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "id-only"}]},
                "extension": [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 60}]}});
        let spec = read(&subscription, 1, &AllowList::default()).unwrap();
        assert_eq!(spec.content, Content::IdOnly);
        assert_eq!(spec.heartbeat, Some(60));
        assert!(matches!(&spec.criteria, Criteria::Topic { filters, .. } if filters.len() == 1));
        let mut unknown = subscription.clone();
        unknown["criteria"] = json!("urn:continuum:subscription-topic:nothing");
        assert!(read(&unknown, 1, &AllowList::default()).is_err());
        let mut wrong_filter = subscription;
        wrong_filter["_criteria"]["extension"][0]["valueString"] = json!("Observation?code=1");
        assert!(read(&wrong_filter, 1, &AllowList::default()).is_err());
    }
}
