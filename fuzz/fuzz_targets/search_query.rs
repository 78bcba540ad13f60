//! Search parameters: any query string parsed for a search on one of several resource types
//! (or system-wide), strict and lenient, as the HTTP edge does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use search::SearchQuery;

const TYPES: [Option<&str>; 6] =
    [None, Some("Patient"), Some("Observation"), Some("Encounter"), Some("MedicationRequest"), Some("Bundle")];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(query) = std::str::from_utf8(rest) else { return };
    let Ok(pairs) = search::query::parse_pairs(query) else { return };
    let resource_type = TYPES[usize::from(selector) % TYPES.len()];
    let strict = selector & 0x80 != 0;
    if let Ok(parsed) = SearchQuery::parse(resource_type, &pairs, strict) {
        // What the server echoes back in the self link must parse again.
        let _ = SearchQuery::parse(resource_type, &parsed.echo, false);
    }
});
