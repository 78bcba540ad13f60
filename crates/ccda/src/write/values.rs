//! HL7 v3 data types written from FHIR ones: CD/CE, II, AD, TEL, PN, TS, IVL_TS, PQ.

use super::fhir::{self, arr, codings, s};
use super::xml::Xml;
use super::{Ctx, ENTRY_ID_ROOT};
use serde_json::Value;

/// A fixed code (`code`, `codeSystem`, `codeSystemName`, `displayName`).
pub(crate) struct Fixed {
    pub(crate) code: &'static str,
    pub(crate) system: &'static str,
    pub(crate) system_name: &'static str,
    pub(crate) display: &'static str,
}

/// LOINC code `code`.
pub(crate) const fn loinc(code: &'static str, display: &'static str) -> Fixed {
    Fixed { code, system: "2.16.840.1.113883.6.1", system_name: "LOINC", display }
}

/// SNOMED CT code `code`.
pub(crate) const fn snomed(code: &'static str, display: &'static str) -> Fixed {
    Fixed { code, system: "2.16.840.1.113883.6.96", system_name: "SNOMED CT", display }
}

/// HL7 ActCode `code`.
pub(crate) const fn act_code(code: &'static str, display: &'static str) -> Fixed {
    Fixed { code, system: "2.16.840.1.113883.5.4", system_name: "ActCode", display }
}

impl Xml {
    /// `<name [xsi:type] code=… codeSystem=…/>` of a fixed code.
    pub(crate) fn fixed(&mut self, name: &str, xsi_type: Option<&str>, c: &Fixed) {
        let mut attrs: Vec<(&str, &str)> = Vec::with_capacity(5);
        if let Some(t) = xsi_type {
            attrs.push(("xsi:type", t));
        }
        attrs.extend([
            ("code", c.code),
            ("codeSystem", c.system),
            ("codeSystemName", c.system_name),
            ("displayName", c.display),
        ]);
        self.empty(name, &attrs);
    }

    /// An entry id: [`ENTRY_ID_ROOT`] with `extension`.
    pub(crate) fn entry_id(&mut self, extension: &str) {
        self.empty("id", &[("root", ENTRY_ID_ROOT), ("extension", extension)]);
    }

    /// `<text><reference value="#id"/></text>`.
    pub(crate) fn text_ref(&mut self, id: &str) {
        self.raw("<text><reference value=\"#");
        self.text(id);
        self.raw("\"/></text>");
    }

    /// `<statusCode code=…/>`.
    pub(crate) fn status(&mut self, code: &str) {
        self.empty("statusCode", &[("code", code)]);
    }

    /// A coded element from a CodeableConcept: the first coding of a known system as the
    /// code, the other known ones as translations; none known: `nullFlavor="OTH"` (or
    /// `NI` without any coding) and only the original text. `reference` is the narrative
    /// ID the original text points at.
    pub(crate) fn cd(&mut self, name: &str, xsi_type: Option<&str>, cc: Option<&Value>, reference: Option<&str>) {
        let mut attrs: Vec<(&str, &str)> = Vec::with_capacity(5);
        if let Some(t) = xsi_type {
            attrs.push(("xsi:type", t));
        }
        let known: Vec<(&Value, &str, Option<&str>, &str)> = cc
            .map(codings)
            .unwrap_or(&[])
            .iter()
            .filter_map(|c| {
                let code = s(c, "code")?;
                let (oid, name) = fhir::system_oid(s(c, "system")?)?;
                (!code.chars().any(char::is_whitespace)).then_some((c, oid, name, code))
            })
            .collect();
        let Some(((first, oid, sys_name, code), rest)) = known.split_first() else {
            let text = cc.map(fhir::cc_text).unwrap_or_default();
            let flavor = if cc.is_some_and(|c| !codings(c).is_empty()) || !text.is_empty() { "OTH" } else { "NI" };
            attrs.push(("nullFlavor", flavor));
            if reference.is_none() && text.is_empty() {
                self.empty(name, &attrs);
                return;
            }
            self.open(name, &attrs);
            self.original_text(reference, &text);
            self.close(name);
            return;
        };
        attrs.push(("code", code));
        attrs.push(("codeSystem", oid));
        if let Some(n) = sys_name {
            attrs.push(("codeSystemName", n));
        }
        if let Some(d) = s(first, "display") {
            attrs.push(("displayName", d));
        }
        // The original text is the narrative's (or the concept's own text), never a
        // display repeated.
        let text = cc.and_then(|c| s(c, "text")).unwrap_or_default();
        if reference.is_none() && text.is_empty() && rest.is_empty() {
            self.empty(name, &attrs);
            return;
        }
        self.open(name, &attrs);
        if reference.is_some() || !text.is_empty() {
            self.original_text(reference, text);
        }
        for (c, oid, sys_name, code) in rest {
            let mut t: Vec<(&str, &str)> = vec![("code", code), ("codeSystem", oid)];
            if let Some(n) = sys_name {
                t.push(("codeSystemName", n));
            }
            if let Some(d) = s(c, "display") {
                t.push(("displayName", d));
            }
            self.empty("translation", &t);
        }
        self.close(name);
    }

    fn original_text(&mut self, reference: Option<&str>, text: &str) {
        self.raw("<originalText>");
        match reference {
            Some(r) => {
                self.raw("<reference value=\"#");
                self.text(r);
                self.raw("\"/>");
            }
            None => self.text(text),
        }
        self.raw("</originalText>");
    }

    /// `<name value=TS/>`, or `nullFlavor="UNK"` when `fhir_date` is none or not a date.
    pub(crate) fn ts(&mut self, name: &str, fhir_date: Option<&str>) {
        match fhir_date.and_then(fhir::ts) {
            Some(v) => self.empty(name, &[("value", &v)]),
            None => self.empty(name, &[("nullFlavor", "UNK")]),
        }
    }

    /// `<effectiveTime><low/>[<high/>]</effectiveTime>` (high only when given).
    pub(crate) fn ivl(&mut self, name: &str, xsi_type: bool, low: Option<&str>, high: Option<&str>) {
        if xsi_type {
            self.open(name, &[("xsi:type", "IVL_TS")]);
        } else {
            self.open(name, &[]);
        }
        self.ts("low", low);
        if let Some(h) = high.and_then(fhir::ts) {
            self.empty("high", &[("value", &h)]);
        }
        self.close(name);
    }

    /// A PQ (or a fallback ST) from a FHIR Quantity, as `<name …>`.
    pub(crate) fn pq(&mut self, name: &str, xsi_type: bool, q: &Value) {
        let value = q.get("value").and_then(number_text);
        let unit = s(q, "code")
            .filter(|_| s(q, "system").is_none_or(|x| x == "http://unitsofmeasure.org"))
            .or_else(|| s(q, "unit"))
            .filter(|u| !u.chars().any(char::is_whitespace));
        let mut attrs: Vec<(&str, &str)> = Vec::with_capacity(3);
        if xsi_type {
            attrs.push(("xsi:type", "PQ"));
        }
        match value.as_deref() {
            Some(v) => {
                attrs.push(("value", v));
                if let Some(u) = unit {
                    attrs.push(("unit", u));
                }
            }
            None => attrs.push(("nullFlavor", "NI")),
        }
        self.empty(name, &attrs);
    }

    /// Identifiers as `<id>`s: those whose system has an OID or UUID; `fallback` (an entry
    /// id extension) when none has.
    pub(crate) fn ids(&mut self, identifiers: &[Value], fallback: &str) {
        let mut any = false;
        for i in identifiers {
            let (Some(sys), Some(val)) = (s(i, "system"), s(i, "value")) else {
                continue;
            };
            if let Some(root) = fhir::identifier_root(sys) {
                self.empty("id", &[("root", root), ("extension", val)]);
                any = true;
            }
        }
        if !any {
            self.entry_id(fallback);
        }
    }

    /// `<addr>`s of FHIR Addresses (`nullFlavor="NI"` when none).
    pub(crate) fn addrs(&mut self, addresses: &[Value]) {
        if addresses.is_empty() {
            self.empty("addr", &[("nullFlavor", "NI")]);
            return;
        }
        for a in addresses {
            let use_ = match s(a, "use") {
                Some("home") => Some("HP"),
                Some("work") => Some("WP"),
                Some("temp") => Some("TMP"),
                Some("old") => Some("OLD"),
                _ => None,
            };
            match use_ {
                Some(u) => self.open("addr", &[("use", u)]),
                None => self.open("addr", &[]),
            }
            for line in arr(a, "line").iter().filter_map(Value::as_str) {
                self.leaf("streetAddressLine", &[], line);
            }
            for (field, elem) in
                [("city", "city"), ("state", "state"), ("postalCode", "postalCode"), ("country", "country")]
            {
                if let Some(v) = s(a, field) {
                    self.leaf(elem, &[], v);
                }
            }
            self.close("addr");
        }
    }

    /// `<telecom>`s of FHIR ContactPoints (`nullFlavor="NI"` when none usable).
    pub(crate) fn telecoms(&mut self, points: &[Value]) {
        let mut any = false;
        for p in points {
            let Some(value) = s(p, "value") else { continue };
            let url = match s(p, "system") {
                Some("phone") => format!("tel:{}", value.chars().filter(|c| !c.is_whitespace()).collect::<String>()),
                Some("fax") => format!("fax:{}", value.chars().filter(|c| !c.is_whitespace()).collect::<String>()),
                Some("email") => format!("mailto:{}", value.trim()),
                Some("url") => value.trim().to_owned(),
                _ => continue,
            };
            let use_ = match s(p, "use") {
                Some("home") => Some("HP"),
                Some("work") => Some("WP"),
                Some("mobile") => Some("MC"),
                Some("temp") => Some("TMP"),
                _ => None,
            };
            match use_ {
                Some(u) => self.empty("telecom", &[("use", u), ("value", &url)]),
                None => self.empty("telecom", &[("value", &url)]),
            }
            any = true;
        }
        if !any {
            self.empty("telecom", &[("nullFlavor", "NI")]);
        }
    }

    /// `<name>`s of FHIR HumanNames (`nullFlavor="NI"` when none).
    pub(crate) fn names(&mut self, names: &[Value]) {
        if names.is_empty() {
            self.empty("name", &[("nullFlavor", "NI")]);
            return;
        }
        for n in names {
            let use_ = match s(n, "use") {
                Some("official" | "usual") => Some("L"),
                Some("nickname" | "anonymous") => Some("P"),
                _ => None,
            };
            match use_ {
                Some(u) => self.open("name", &[("use", u)]),
                None => self.open("name", &[]),
            }
            let given = arr(n, "given");
            let structured = !given.is_empty() || s(n, "family").is_some();
            if structured {
                for p in arr(n, "prefix").iter().filter_map(Value::as_str) {
                    self.leaf("prefix", &[], p);
                }
                for g in given.iter().filter_map(Value::as_str) {
                    self.leaf("given", &[], g);
                }
                if let Some(f) = s(n, "family") {
                    self.leaf("family", &[], f);
                }
                for p in arr(n, "suffix").iter().filter_map(Value::as_str) {
                    self.leaf("suffix", &[], p);
                }
            } else if let Some(t) = s(n, "text") {
                self.text(t);
            }
            self.close("name");
        }
    }
}

/// The text of a JSON number as written (arbitrary precision), when `v` is one.
pub(crate) fn number_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The name of a person (for narrative), from FHIR HumanNames.
pub(crate) fn person_name(names: &[Value]) -> String {
    let Some(n) = names.first() else {
        return String::new();
    };
    if let Some(t) = s(n, "text") {
        return t.to_owned();
    }
    let mut parts: Vec<&str> = arr(n, "given").iter().filter_map(Value::as_str).collect();
    if let Some(f) = s(n, "family") {
        parts.push(f);
    }
    parts.join(" ")
}

/// A FHIR date for people to read (`2016-06-09 02:24`).
pub(crate) fn shown_date(d: Option<&str>) -> String {
    match d {
        Some(d) => d.chars().take(16).map(|c| if c == 'T' { ' ' } else { c }).collect(),
        None => String::new(),
    }
}

impl Ctx<'_> {
    /// The organization `org` as `representedOrganization` (or another element `name`).
    pub(crate) fn organization(&mut self, name: &str, org: &Value) {
        self.w.open(name, &[]);
        let fallback = fhir::key(org);
        self.w.ids(arr(org, "identifier"), &fallback);
        if let Some(n) = s(org, "name") {
            self.w.leaf("name", &[], n);
        }
        self.w.telecoms(arr(org, "telecom"));
        self.w.addrs(arr(org, "address"));
        self.w.close(name);
    }
}
