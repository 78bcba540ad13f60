//! String functions.

use super::{Function, bool_item, value_item};
use crate::eval::{Collection, Result};
use crate::value::Value;
use crate::{EvalError, Item};
use regex::Regex;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

static REGEXES: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(|| Mutex::new(HashMap::new()));
const REGEX_CACHE_LIMIT: usize = 512;

/// A compiled regex (FHIRPath regexes are single-line: `.` matches newlines), cached.
fn regex(pattern: &str, full: bool) -> Result<Regex> {
    let key = if full { format!("^(?:{pattern})$") } else { pattern.to_owned() };
    if let Ok(cache) = REGEXES.lock()
        && let Some(r) = cache.get(&key)
    {
        return Ok(r.clone());
    }
    let r = regex::RegexBuilder::new(&key)
        .dot_matches_new_line(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|_| EvalError::Regex)?;
    if let Ok(mut cache) = REGEXES.lock() {
        if cache.len() >= REGEX_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, r.clone());
    }
    Ok(r)
}

fn string<'a>(s: String) -> Collection<'a> {
    value_item(Some(Value::String(s)))
}

fn integer<'a>(i: usize) -> Collection<'a> {
    value_item(Some(Value::Integer(i64::try_from(i).unwrap_or(i64::MAX))))
}

fn arg_str(args: &[Value], i: usize, f: Function) -> Result<&str> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(EvalError::Type(format!("{}() takes string arguments", f.name()))),
    }
}

fn arg_int(args: &[Value], i: usize, f: Function) -> Result<i64> {
    match args.get(i) {
        Some(Value::Integer(n)) => Ok(*n),
        _ => Err(EvalError::Type(format!("{}() takes integer arguments", f.name()))),
    }
}

pub(super) fn string_function<'a>(f: Function, item: &Item<'a>, args: &[Value]) -> Result<Collection<'a>> {
    use Function as F;
    let s = match item.to_value() {
        Some(Value::String(s)) => s,
        _ => return Err(EvalError::Type(format!("{}() applies to strings", f.name()))),
    };
    Ok(match f {
        F::IndexOf | F::LastIndexOf => {
            let sub = arg_str(args, 0, f)?;
            let found = if f == F::IndexOf { s.find(sub) } else { s.rfind(sub) };
            match found {
                Some(b) => integer(s[..b].chars().count()),
                None => value_item(Some(Value::Integer(-1))),
            }
        }
        F::Substring => {
            let start = arg_int(args, 0, f)?;
            let len = s.chars().count() as i64;
            if start < 0 || start >= len {
                return Ok(Vec::new());
            }
            let take = if args.len() > 1 { arg_int(args, 1, f)?.max(0) } else { len };
            string(s.chars().skip(start as usize).take(take as usize).collect())
        }
        F::StartsWith => bool_item(s.starts_with(arg_str(args, 0, f)?)),
        F::EndsWith => bool_item(s.ends_with(arg_str(args, 0, f)?)),
        F::Contains => bool_item(s.contains(arg_str(args, 0, f)?)),
        F::Upper => string(s.to_uppercase()),
        F::Lower => string(s.to_lowercase()),
        F::Replace => string(s.replace(arg_str(args, 0, f)?, arg_str(args, 1, f)?)),
        F::Matches | F::MatchesFull => bool_item(regex(arg_str(args, 0, f)?, f == F::MatchesFull)?.is_match(&s)),
        F::ReplaceMatches => {
            let pattern = arg_str(args, 0, f)?;
            if pattern.is_empty() {
                return Ok(string(s));
            }
            let re = regex(pattern, false)?;
            string(re.replace_all(&s, arg_str(args, 1, f)?).into_owned())
        }
        F::Length => integer(s.chars().count()),
        F::ToChars => s.chars().map(|c| Item::from_value(Value::String(c.to_string()))).collect(),
        F::Trim => string(s.trim().to_owned()),
        F::Split => {
            let sep = arg_str(args, 0, f)?;
            if sep.is_empty() {
                s.chars().map(|c| Item::from_value(Value::String(c.to_string()))).collect()
            } else {
                s.split(sep).map(|p| Item::from_value(Value::String(p.to_owned()))).collect()
            }
        }
        F::Encode | F::Decode => {
            let format = arg_str(args, 0, f)?;
            let out = if f == F::Encode { encode(&s, format) } else { decode(&s, format) };
            out.map(string).unwrap_or_default()
        }
        F::Escape | F::Unescape => {
            let format = arg_str(args, 0, f)?;
            let out = match (f, format) {
                (F::Escape, "html") => Some(escape_html(&s)),
                (F::Escape, "json") => Some(s.replace('\\', "\\\\").replace('"', "\\\"")),
                (F::Unescape, "html") => Some(unescape_html(&s)),
                (F::Unescape, "json") => Some(s.replace("\\\"", "\"").replace("\\\\", "\\")),
                _ => None,
            };
            out.map(string).unwrap_or_default()
        }
        _ => return Err(EvalError::Unsupported(f.name().into())),
    })
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn encode(s: &str, format: &str) -> Option<String> {
    let bytes = s.as_bytes();
    match format {
        "hex" => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        "base64" | "urlbase64" => {
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            Some(if format == "urlbase64" { out.replace('+', "-").replace('/', "_") } else { out })
        }
        _ => None,
    }
}

fn decode(s: &str, format: &str) -> Option<String> {
    let bytes = match format {
        "hex" => {
            if !s.len().is_multiple_of(2) {
                return None;
            }
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?
        }
        "base64" | "urlbase64" => {
            let mut out = Vec::new();
            let mut acc = 0u32;
            let mut bits = 0;
            for c in s.chars() {
                let v = match c {
                    'A'..='Z' => c as u32 - 'A' as u32,
                    'a'..='z' => c as u32 - 'a' as u32 + 26,
                    '0'..='9' => c as u32 - '0' as u32 + 52,
                    '+' | '-' => 62,
                    '/' | '_' => 63,
                    '=' => break,
                    _ => return None,
                };
                acc = acc << 6 | v;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits & 0xff) as u8);
                }
            }
            out
        }
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}
