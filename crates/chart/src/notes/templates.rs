//! Note templates and the plain-text layout of a note: one `## Heading` line per section,
//! kept in the stored attachment so that any reader of the record can follow it.

use base64::Engine;
use serde_json::Value;

/// A note template: its sections and its LOINC document type.
#[derive(Debug, PartialEq, Eq)]
pub struct Template {
    /// Its key in a form (`template=soap`).
    pub key: &'static str,
    /// Its name, also written as the note's `type.text` (how a stored note's template is
    /// known again).
    pub label: &'static str,
    /// The LOINC document type.
    pub loinc: &'static str,
    /// The LOINC code's display.
    pub loinc_display: &'static str,
    /// Its sections' headings, in order.
    pub sections: &'static [&'static str],
    /// Labelled behavioral health (`PSY`): written and read by behavioral-health clinicians.
    pub sensitive: bool,
}

/// Every template; the first is the default, the last free text.
pub const TEMPLATES: &[Template] = &[
    Template {
        key: "soap",
        label: "SOAP progress note",
        loinc: "11506-3",
        loinc_display: "Progress note",
        sections: &["Subjective", "Objective", "Assessment", "Plan"],
        sensitive: false,
    },
    Template {
        key: "wellness",
        label: "Annual wellness visit",
        loinc: "34901-9",
        loinc_display: "General medicine Outpatient Progress note",
        sections: &["Health risk assessment", "Screenings", "Immunizations reviewed", "Personalized prevention plan"],
        sensitive: false,
    },
    Template {
        key: "bh",
        label: "Behavioral-health progress note",
        loinc: "34904-3",
        loinc_display: "Mental health Progress note",
        sections: &["Presenting concerns", "Mental status", "Risk assessment", "Interventions", "Plan"],
        sensitive: true,
    },
    Template {
        key: "free",
        label: "Free-text note",
        loinc: "11506-3",
        loinc_display: "Progress note",
        sections: &["Note"],
        sensitive: false,
    },
];

/// The free-text template (what a note of no known template is read as).
pub const FREE_TEXT: &Template = &TEMPLATES[3];

/// The template with `key`.
pub fn template(key: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.key == key)
}

/// The template of a stored note (from its `type.text`), else free text.
pub fn template_of(note: &Value) -> &'static Template {
    let text = note.pointer("/type/text").and_then(Value::as_str).unwrap_or("");
    TEMPLATES.iter().find(|t| t.label == text).unwrap_or(FREE_TEXT)
}

/// The note's text from its sections: one `## heading` per section that has a body.
pub fn compose(template: &Template, sections: &[String]) -> String {
    let mut text = String::new();
    for (heading, body) in template.sections.iter().zip(sections) {
        if body.trim().is_empty() {
            continue;
        }
        text.push_str(&format!("## {heading}\n{}\n\n", body.trim_end()));
    }
    text.trim_end().to_string()
}

/// The template's sections back from a note's text (for editing a draft or amending);
/// text before any known heading goes to the first section.
pub fn decompose(template: &Template, text: &str) -> Vec<String> {
    let mut sections = vec![String::new(); template.sections.len()];
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ")
            && let Some(i) = template.sections.iter().position(|s| *s == heading.trim())
        {
            current = Some(i);
            continue;
        }
        let Some(section) = sections.get_mut(current.unwrap_or(0)) else { continue };
        if !section.is_empty() {
            section.push('\n');
        }
        section.push_str(line);
    }
    sections.iter().map(|s| s.trim().to_string()).collect()
}

/// The plain text of a note's attachment (empty when it has none or it is not base64).
pub fn note_text(note: &Value) -> String {
    note.pointer("/content/0/attachment/data")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A note's text as (heading, body) sections, whatever its template: a line `## Heading`
/// starts one; text before the first heading has none.
pub fn sections_of(text: &str) -> Vec<(Option<&str>, String)> {
    let mut sections: Vec<(Option<&str>, Vec<&str>)> = vec![(None, Vec::new())];
    for line in text.lines() {
        match line.strip_prefix("## ") {
            Some(heading) => sections.push((Some(heading.trim()), Vec::new())),
            None => {
                if let Some((_, lines)) = sections.last_mut() {
                    lines.push(line);
                }
            }
        }
    }
    sections
        .into_iter()
        .map(|(heading, lines)| (heading, lines.join("\n").trim().to_string()))
        .filter(|(heading, body)| heading.is_some() || !body.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sections_round_trip_through_the_text() {
        let soap = &TEMPLATES[0];
        let sections =
            vec!["Cough for 3 days".to_string(), String::new(), "Viral URI\nno red flags".into(), "Fluids".into()];
        let text = compose(soap, &sections);
        assert_eq!(
            text,
            "## Subjective\nCough for 3 days\n\n## Assessment\nViral URI\nno red flags\n\n## Plan\nFluids"
        );
        assert_eq!(decompose(soap, &text), sections);
        let amended = format!("{text}\n\n## Amendment reason\nTypo");
        let shown = sections_of(&amended);
        assert_eq!(shown[0], (Some("Subjective"), "Cough for 3 days".to_string()));
        assert_eq!(shown[1], (Some("Assessment"), "Viral URI\nno red flags".to_string()));
        assert_eq!(shown.last().unwrap(), &(Some("Amendment reason"), "Typo".to_string()));
        assert_eq!(sections_of("free text\nonly"), vec![(None, "free text\nonly".to_string())]);
    }

    #[test]
    fn a_stored_note_names_its_template() {
        assert_eq!(template_of(&json!({"type": {"text": "Annual wellness visit"}})).key, "wellness");
        assert_eq!(template_of(&json!({"type": {"text": "Discharge summary"}})), FREE_TEXT);
        assert_eq!(template("bh").map(|t| t.sensitive), Some(true));
        assert_eq!(template("nonsense"), None);
    }
}
