//! Text normalisation shared by every field: accents folded away, case and punctuation
//! dropped, names split into their parts.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// `text` in lower-case ASCII letters and digits, accents removed ("Zoë" → "zoe"), letters
/// that do not decompose spelled out ("ß" → "ss"), every other character a space, runs of
/// spaces collapsed.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        let spelled = match c {
            'ß' => "ss",
            'æ' | 'Æ' => "ae",
            'œ' | 'Œ' => "oe",
            'ø' | 'Ø' => "o",
            'ł' | 'Ł' => "l",
            'đ' | 'Đ' | 'ð' | 'Ð' => "d",
            'þ' | 'Þ' => "th",
            'ı' => "i",
            _ => "",
        };
        if !spelled.is_empty() {
            out.push_str(spelled);
            space = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// The parts of a name: folded, digits dropped (Synthea numbers its names), apostrophes and
/// periods joining rather than splitting ("O'Brien" → "obrien", "St. John" → "st", "john"),
/// hyphens and spaces splitting ("Smith-Jones" → "smith", "jones").
pub fn name_parts(name: &str) -> Vec<String> {
    let joined: String = name.chars().filter(|c| !matches!(c, '\'' | '’' | '`' | '.')).collect();
    fold(&joined)
        .split(' ')
        .map(|part| part.chars().filter(char::is_ascii_alphabetic).collect::<String>())
        .filter(|part| !part.is_empty())
        .collect()
}

/// Only the digits of `text` ("(555) 123-4567" → "5551234567").
pub fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_drops_accents_case_and_punctuation() {
        assert_eq!(fold("  José  Zoë-MÜLLER! "), "jose zoe muller");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("Łukasz Øster"), "lukasz oster");
    }

    #[test]
    fn names_split_on_hyphens_and_join_on_apostrophes() {
        assert_eq!(name_parts("O'Brien"), ["obrien"]);
        assert_eq!(name_parts("Smith-Jones"), ["smith", "jones"]);
        assert_eq!(name_parts("Rosie751"), ["rosie"]);
        assert_eq!(name_parts("de la Cruz"), ["de", "la", "cruz"]);
        assert!(name_parts("123").is_empty());
    }

    #[test]
    fn digits_keep_only_digits() {
        assert_eq!(digits("(555) 123-4567"), "5551234567");
    }
}
