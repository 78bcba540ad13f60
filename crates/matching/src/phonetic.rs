//! Double Metaphone codes of names (the `rphonetic` port of Apache commons-codec), used to
//! compare names that sound alike and to index them for blocking (the `phonetic` search
//! parameter of Patient).

use crate::text::name_parts;
use rphonetic::{DoubleMetaphone, Encoder};
use std::sync::LazyLock;

static ENCODER: LazyLock<DoubleMetaphone> = LazyLock::new(DoubleMetaphone::default);

/// The primary and, when it differs, the alternate Double Metaphone code of one folded name
/// part; none for an empty part.
pub fn codes(part: &str) -> Vec<String> {
    if part.is_empty() {
        return Vec::new();
    }
    let primary = ENCODER.encode(part);
    let alternate = ENCODER.encode_alternate(part);
    let mut codes = Vec::with_capacity(2);
    if !primary.is_empty() {
        codes.push(primary);
    }
    if !alternate.is_empty() && !codes.contains(&alternate) {
        codes.push(alternate);
    }
    codes
}

/// The codes of every part of a name as written ("Smith-Jones" → the codes of "smith", of
/// "jones" and of "smithjones"), for the search index.
pub fn codes_of_name(name: &str) -> Vec<String> {
    let parts = name_parts(name);
    let mut out = Vec::new();
    let mut push = |code: String| {
        if !out.contains(&code) {
            out.push(code);
        }
    };
    for part in &parts {
        codes(part).into_iter().for_each(&mut push);
    }
    if parts.len() > 1 {
        codes(&parts.concat()).into_iter().for_each(&mut push);
    }
    out
}

/// The one code a search value is looked up by: the primary code of the whole value, its
/// parts joined.
pub fn search_code(value: &str) -> Option<String> {
    let joined = name_parts(value).concat();
    codes(&joined).into_iter().next()
}

/// Whether two folded name parts share a code.
pub fn sound_alike(a: &str, b: &str) -> bool {
    let a = codes(a);
    !a.is_empty() && codes(b).iter().any(|c| a.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_sound_alike_share_a_code() {
        assert!(sound_alike("smith", "smyth"));
        assert!(sound_alike("schmidt", "smith"));
        assert!(sound_alike("catherine", "kathryn"));
        assert!(!sound_alike("smith", "jones"));
        assert!(codes("").is_empty());
    }

    #[test]
    fn compound_names_index_each_part_and_the_whole() {
        let codes = codes_of_name("Smith-Jones");
        assert!(codes.contains(&search_code("smith").unwrap()));
        assert!(codes.contains(&search_code("jones").unwrap()));
        assert!(codes.contains(&search_code("smithjones").unwrap()));
        assert_eq!(search_code("Smith-Jones"), search_code("smithjones"));
    }
}

#[cfg(test)]
mod search_tests {
    use super::*;

    #[test]
    fn a_search_value_finds_names_that_sound_alike() {
        let indexed = codes_of_name("Smith");
        assert!(indexed.contains(&search_code("Smyth").unwrap()), "{indexed:?} {:?}", search_code("Smyth"));
    }
}
