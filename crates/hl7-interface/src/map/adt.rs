//! ADT → Patient, Encounter, Location, Practitioner (v2-to-FHIR IG: PID → Patient, PV1 →
//! Encounter, PL → Location, XCN → Practitioner), and A40 → Patient.link with references moved.
//!
//! The visit is found by its visit number (PV1-19). Encounter.status follows the trigger:
//! A01/A02/A13 in-progress, A03 finished, A04 arrived, A05 planned, A11 cancelled; A08 keeps
//! the status the Encounter has (a new one is finished when PV1-45 is valued, else
//! in-progress). A28/A31 touch only the Patient.

use super::datatypes::{self, comp, concept, first, reps, text};
use super::{Context, MapError, Plan, location, non_empty, patient, practitioner, put, required};
use hl7v2::{ErrorCode, ErrorLocation, Message, Segment};
use serde_json::{Map, Value, json};

/// The ADT trigger events taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    A01,
    A02,
    A03,
    A04,
    A05,
    A08,
    A11,
    A13,
    A28,
    A31,
    A40,
}

impl Trigger {
    pub(crate) fn parse(code: &str) -> Option<Trigger> {
        Some(match code {
            "A01" => Trigger::A01,
            "A02" => Trigger::A02,
            "A03" => Trigger::A03,
            "A04" => Trigger::A04,
            "A05" => Trigger::A05,
            "A08" => Trigger::A08,
            "A11" => Trigger::A11,
            "A13" => Trigger::A13,
            "A28" => Trigger::A28,
            "A31" => Trigger::A31,
            "A40" => Trigger::A40,
            _ => return None,
        })
    }

    /// The Encounter status this event sets (`None`: keep the current one).
    fn status(self) -> Option<&'static str> {
        match self {
            Trigger::A01 | Trigger::A02 | Trigger::A13 => Some("in-progress"),
            Trigger::A03 => Some("finished"),
            Trigger::A04 => Some("arrived"),
            Trigger::A05 => Some("planned"),
            Trigger::A11 => Some("cancelled"),
            Trigger::A08 | Trigger::A28 | Trigger::A31 | Trigger::A40 => None,
        }
    }

    /// Whether the event may start a visit (and so may come without a visit number).
    fn starts_visit(self) -> bool {
        matches!(self, Trigger::A01 | Trigger::A04 | Trigger::A05)
    }
}

pub(crate) fn map(message: &Message, trigger: Trigger, ctx: &Context<'_>, plan: &mut Plan) -> Result<(), MapError> {
    let pid = required(message, "PID")?;
    if trigger == Trigger::A40 {
        return merge(message, pid, ctx, plan);
    }
    let subject = patient::write(pid, ctx, plan, true)?;
    if matches!(trigger, Trigger::A28 | Trigger::A31) {
        return Ok(());
    }
    let pv1 = required(message, "PV1")?;
    encounter(pv1, trigger, &subject, ctx, plan)
}

/// PV1-2 (table 0004) → Encounter.class (v3 ActCode).
fn class(pv1: &Segment) -> Value {
    let (code, display) = match text(pv1, 2).as_deref() {
        Some("E") => ("EMER", "emergency"),
        Some("I" | "B") => ("IMP", "inpatient encounter"),
        Some("O" | "R" | "C") => ("AMB", "ambulatory"),
        Some("P") => ("PRENC", "pre-admission"),
        _ => {
            return json!({"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK", "display": "unknown"});
        }
    };
    json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display})
}

fn participant(
    plan: &mut Plan,
    pv1: &Segment,
    field: usize,
    code: &str,
    display: &str,
    ctx: &Context<'_>,
) -> Vec<Value> {
    reps(pv1, field)
        .iter()
        .filter_map(|rep| practitioner(plan, rep, ctx))
        .map(|reference| {
            json!({
                "type": [concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", code, Some(display))],
                "individual": {"reference": reference},
            })
        })
        .collect()
}

fn table_concept(pv1: &Segment, field: usize, table: &str) -> Option<Value> {
    let rep = first(pv1, field)?;
    let code = comp(&rep, 1)?;
    let mut value = concept(&format!("http://terminology.hl7.org/CodeSystem/v2-{table}"), &code, None);
    if let Some(t) = comp(&rep, 2) {
        value["text"] = t.into();
    }
    Some(value)
}

fn encounter(
    pv1: &Segment,
    trigger: Trigger,
    subject: &str,
    ctx: &Context<'_>,
    plan: &mut Plan,
) -> Result<(), MapError> {
    let key = first(pv1, 19).and_then(|rep| datatypes::cx(&rep, &ctx.local_system));
    let existing = match &key {
        Some((key, _)) => ctx.find("Encounter", key)?,
        None if trigger.starts_visit() => None,
        None => return Err(MapError::missing_field("PV1", 19)),
    };
    let mut fields = Map::new();
    if let Some((_, identifier)) = &key {
        fields.insert("identifier".into(), json!([identifier]));
    }
    fields.insert("class".into(), class(pv1));
    put(&mut fields, "type", table_concept(pv1, 4, "0007").map(|c| json!([c])));
    put(&mut fields, "serviceType", table_concept(pv1, 10, "0069"));
    fields.insert("subject".into(), json!({"reference": subject}));
    let mut participants = participant(plan, pv1, 7, "ATND", "attender", ctx);
    participants.extend(participant(plan, pv1, 8, "REF", "referrer", ctx));
    participants.extend(participant(plan, pv1, 9, "CON", "consultant", ctx));
    participants.extend(participant(plan, pv1, 17, "ADM", "admitter", ctx));
    put(&mut fields, "participant", non_empty(participants));
    let start = datatypes::field_date_time(pv1, 44, &ctx.offset)?;
    let end = if trigger == Trigger::A13 { None } else { datatypes::field_date_time(pv1, 45, &ctx.offset)? };
    let mut period = Map::new();
    put(&mut period, "start", start.map(Value::from));
    put(&mut period, "end", end.clone().map(Value::from));
    put(&mut fields, "period", (!period.is_empty()).then_some(Value::Object(period)));
    let mut locations = Vec::new();
    if trigger == Trigger::A02
        && let Some(prior) = first(pv1, 6).and_then(|rep| location(plan, &rep, ctx))
    {
        locations.push(json!({"location": {"reference": prior}, "status": "completed"}));
    }
    if let Some(current) = first(pv1, 3).and_then(|rep| location(plan, &rep, ctx)) {
        let status = if trigger == Trigger::A03 { "completed" } else { "active" };
        locations.push(json!({"location": {"reference": current}, "status": status}));
    }
    put(&mut fields, "location", non_empty(locations));
    let mut hospitalization = Map::new();
    put(&mut hospitalization, "admitSource", table_concept(pv1, 14, "0023"));
    if trigger != Trigger::A13 {
        put(&mut hospitalization, "dischargeDisposition", table_concept(pv1, 36, "0112"));
    }
    put(&mut fields, "hospitalization", (!hospitalization.is_empty()).then_some(Value::Object(hospitalization)));

    let derived = if end.is_some() { "finished" } else { "in-progress" };
    match existing {
        Some(existing) => {
            let mut body = patient::body_of(&existing);
            let status = trigger
                .status()
                .map(str::to_string)
                .or_else(|| body.get("status").and_then(Value::as_str).map(str::to_string));
            body.extend(fields);
            body.insert("status".into(), status.unwrap_or(derived.into()).into());
            if trigger == Trigger::A13 {
                if let Some(Value::Object(period)) = body.get_mut("period") {
                    period.remove("end");
                }
                if let Some(Value::Object(h)) = body.get_mut("hospitalization") {
                    h.remove("dischargeDisposition");
                }
                for element in ["period", "hospitalization"] {
                    if body.get(element).and_then(Value::as_object).is_some_and(Map::is_empty) {
                        body.remove(element);
                    }
                }
            }
            plan.replace("Encounter", &existing, Value::Object(body));
        }
        None => {
            let mut body = Map::new();
            body.insert("resourceType".into(), "Encounter".into());
            body.insert("status".into(), trigger.status().unwrap_or(derived).into());
            body.extend(fields);
            match key {
                Some((key, _)) => plan.upsert("Encounter", &key, Value::Object(body)),
                None => plan.create("Encounter", Value::Object(body)),
            };
        }
    }
    Ok(())
}

/// A40: PID is the surviving patient, MRG-1 the prior one. The message's Bundle writes the
/// survivor (found by PID-3, or created) with the PID's demographics; once it has committed,
/// the prior patient is merged into it by the identity service
/// ([`exchange::identity::merge::merge`], the same code as `Patient/$merge`): every reference to
/// the prior patient moved, the prior made inactive with a `replaced-by` link, the survivor
/// given a `replaces` link, in one transaction with its own Provenance.
fn merge(message: &Message, pid: &Segment, ctx: &Context<'_>, plan: &mut Plan) -> Result<(), MapError> {
    let mrg = required(message, "MRG")?;
    let prior = patient::find_prior(mrg, ctx)?;
    let survivor = patient::find(pid, ctx)?.existing;
    if survivor.as_ref().is_some_and(|s| s.id == prior.id) {
        return Err(MapError::new(ErrorCode::DuplicateKeyIdentifier, "PID-3 and MRG-1 name the same patient")
            .at(ErrorLocation::field("MRG", 1, 1)));
    }
    patient::write(pid, ctx, plan, true)?;
    plan.merge_after(&prior.id);
    Ok(())
}
