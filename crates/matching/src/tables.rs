//! The name and address tables, kept as data (`data/`, sources in `data/SOURCES.md`) and read
//! once.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Given names that stand for one another (William, Bill, Will, Billy…): each name's groups.
struct Nicknames {
    groups: HashMap<String, Vec<u32>>,
}

static NICKNAMES: LazyLock<Nicknames> = LazyLock::new(|| {
    let mut groups: HashMap<String, Vec<u32>> = HashMap::new();
    let mut group = 0u32;
    for line in include_str!("../data/nicknames.csv").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let names: HashSet<&str> = line.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
        if names.len() < 2 {
            continue;
        }
        for name in names {
            groups.entry(name.to_string()).or_default().push(group);
        }
        group += 1;
    }
    Nicknames { groups }
});

/// Whether two different folded given names are known forms of one name ("bill", "william").
pub fn are_nicknames(a: &str, b: &str) -> bool {
    let (Some(ga), Some(gb)) = (NICKNAMES.groups.get(a), NICKNAMES.groups.get(b)) else {
        return false;
    };
    ga.iter().any(|g| gb.contains(g))
}

fn pairs(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (variant, standard) = l.split_once(',')?;
            Some((variant.trim().to_string(), standard.trim().to_string()))
        })
        .collect()
}

static STREET_SUFFIXES: LazyLock<HashMap<String, String>> =
    LazyLock::new(|| pairs(include_str!("../data/street_suffixes.csv")));
static UNIT_DESIGNATORS: LazyLock<HashMap<String, String>> =
    LazyLock::new(|| pairs(include_str!("../data/unit_designators.csv")));

/// The USPS standard abbreviation of a folded street suffix or unit designator ("avenue" →
/// "ave", "apartment" → "apt"), or the word itself.
pub fn standard_street_word(word: &str) -> &str {
    STREET_SUFFIXES.get(word).or_else(|| UNIT_DESIGNATORS.get(word)).map(String::as_str).unwrap_or(word)
}

/// The USPS standard abbreviations of the directional words ("north" → "n").
pub fn standard_direction(word: &str) -> &str {
    match word {
        "north" => "n",
        "south" => "s",
        "east" => "e",
        "west" => "w",
        "northeast" => "ne",
        "northwest" => "nw",
        "southeast" => "se",
        "southwest" => "sw",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_symmetric() {
        assert!(are_nicknames("bill", "william"));
        assert!(are_nicknames("william", "bill"));
        assert!(are_nicknames("peggy", "margaret"));
        assert!(!are_nicknames("bill", "margaret"));
        assert!(!are_nicknames("zzz", "william"));
    }

    #[test]
    fn street_words_take_their_standard_form() {
        assert_eq!(standard_street_word("avenue"), "ave");
        assert_eq!(standard_street_word("street"), "st");
        assert_eq!(standard_street_word("apartment"), "apt");
        assert_eq!(standard_street_word("suite"), "ste");
        assert_eq!(standard_street_word("elm"), "elm");
    }
}
