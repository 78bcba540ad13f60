//! SIU^S12/S13/S14/S15 → Appointment (v2-to-FHIR IG, SCH → Appointment): keyed by the filler
//! appointment id (SCH-2, else the placer's SCH-1); start and end from TQ1-7/8 (v2.5+) or
//! SCH-11.4/5; reason SCH-7; type SCH-8; service AIS-3; participants the patient, the
//! personnel (AIP-3 → Practitioner) and locations (AIL-3 → Location). S12 books, S13
//! reschedules and S14 modifies (status booked), S15 cancels.

use super::datatypes::{self, comp, cwe, first, sub};
use super::{Context, MapError, Plan, location, practitioner, put, required};
use hl7v2::{ErrorCode, Message};
use serde_json::{Map, Value, json};

/// The SIU trigger events taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// New appointment.
    S12,
    /// Rescheduled.
    S13,
    /// Modified.
    S14,
    /// Cancelled.
    S15,
}

impl Trigger {
    pub(crate) fn parse(code: &str) -> Option<Trigger> {
        Some(match code {
            "S12" => Trigger::S12,
            "S13" => Trigger::S13,
            "S14" => Trigger::S14,
            "S15" => Trigger::S15,
            _ => return None,
        })
    }
}

/// An instant (seconds and zone required), if the dateTime is one.
fn instant(date_time: Option<String>) -> Option<String> {
    date_time.filter(|t| t.contains('T'))
}

pub(crate) fn map(message: &Message, trigger: Trigger, ctx: &Context<'_>, plan: &mut Plan) -> Result<(), MapError> {
    let sch = required(message, "SCH")?;
    let pid = required(message, "PID")?;
    let key = first(sch, 2)
        .or_else(|| first(sch, 1))
        .and_then(|r| datatypes::ei(&r, &ctx.local_system))
        .ok_or_else(|| MapError::missing_field("SCH", 1))?;
    let subject = super::patient::write(pid, ctx, plan, false)?;

    let (start, end) = match message.segment("TQ1") {
        Some(tq1) => {
            (datatypes::field_date_time(tq1, 7, &ctx.offset)?, datatypes::field_date_time(tq1, 8, &ctx.offset)?)
        }
        None => (None, None),
    };
    let timing = first(sch, 11);
    let from_sch = |c: usize| -> Result<Option<String>, MapError> {
        match timing.as_ref().and_then(|r| comp(r, c)) {
            Some(t) => datatypes::date_time(&t, &ctx.offset).map(Some).map_err(|()| MapError::data_type("SCH", 11)),
            None => Ok(None),
        }
    };
    let start = instant(match start {
        Some(s) => Some(s),
        None => from_sch(4)?,
    });
    let end = instant(match end {
        Some(e) => Some(e),
        None => from_sch(5)?,
    });
    let status = if trigger == Trigger::S15 { "cancelled" } else { "booked" };
    if status == "booked" && (start.is_none() || end.is_none()) {
        return Err(MapError::new(
            ErrorCode::RequiredFieldMissing,
            "a booked appointment needs a start and an end time",
        )
        .at(hl7v2::ErrorLocation::segment("TQ1", 1)));
    }

    let mut participants = vec![json!({"actor": {"reference": subject}, "status": "accepted"})];
    for aip in message.segments_with_id("AIP") {
        if let Some(actor) = first(aip, 3).and_then(|r| practitioner(plan, &r, ctx)) {
            let mut participant = json!({"actor": {"reference": actor}, "status": "accepted"});
            if let Some(role) = first(aip, 4).and_then(|r| cwe(&r)) {
                participant["type"] = json!([role]);
            }
            participants.push(participant);
        }
    }
    for ail in message.segments_with_id("AIL") {
        if let Some(actor) = first(ail, 3).and_then(|r| location(plan, &r, ctx)) {
            participants.push(json!({"actor": {"reference": actor}, "status": "accepted"}));
        }
    }

    let mut body = Map::new();
    body.insert("resourceType".into(), "Appointment".into());
    body.insert("identifier".into(), json!([key.to_json()]));
    body.insert("status".into(), status.into());
    put(
        &mut body,
        "serviceType",
        message.segment("AIS").and_then(|ais| first(ais, 3)).and_then(|r| cwe(&r)).map(|c| json!([c])),
    );
    put(&mut body, "appointmentType", first(sch, 8).and_then(|r| cwe(&r)));
    put(&mut body, "reasonCode", first(sch, 7).and_then(|r| cwe(&r)).map(|c| json!([c])));
    put(&mut body, "start", start.map(Value::from));
    put(&mut body, "end", end.map(Value::from));
    let minutes = first(sch, 9).and_then(|r| comp(&r, 1)).and_then(|d| d.parse::<u32>().ok()).filter(|m| *m > 0);
    let in_minutes =
        first(sch, 10).and_then(|r| sub(&r, 1, 1)).is_some_and(|u| matches!(u.as_str(), "m" | "min" | "MIN"));
    if let (Some(m), true) = (minutes, in_minutes) {
        body.insert("minutesDuration".into(), m.into());
    }
    body.insert("participant".into(), participants.into());
    plan.upsert("Appointment", &key, Value::Object(body));
    Ok(())
}
