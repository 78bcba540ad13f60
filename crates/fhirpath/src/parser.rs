//! The FHIRPath grammar: tokens, then a precedence-climbing parser to an [`Expr`] tree.

use crate::CompileError;
use crate::functions::Function;
use crate::value::{DateTime, Decimal, Quantity, Time, Value, calendar_keyword};

/// Deepest nesting of sub-expressions accepted (keeps recursion far from the stack's end).
const MAX_DEPTH: usize = 200;

/// Binary operators, by the spec's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// A type named in `is`, `as`, `ofType()`: namespace (if written) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    /// `{}`
    Empty,
    Literal(Value),
    /// A member name applied to the focus (at the start, it may also name the context's type).
    Member(Box<str>),
    /// `%name`
    Variable(Box<str>),
    This,
    Index,
    Total,
    /// `left.right`: `right` is evaluated with the results of `left` as its focus.
    Path(Box<Expr>, Box<Expr>),
    /// A function applied to the focus.
    Call(Function, Vec<Expr>),
    /// `coll[index]`
    Indexer(Box<Expr>, Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Is(Box<Expr>, TypeSpec),
    As(Box<Expr>, TypeSpec),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A `delimited identifier` (never a keyword).
    Quoted(String),
    Str(String),
    Number(String),
    Date(String),
    Var(String),
    Sym(&'static str),
    Eof,
}

const SYMBOLS: [&str; 24] = [
    "<=", ">=", "!=", "!~", "(", ")", "[", "]", "{", "}", ".", ",", "+", "-", "*", "/", "&", "|", "<", ">", "=", "~",
    "$", "%",
];

fn syntax(msg: impl Into<String>) -> CompileError {
    CompileError::Syntax(msg.into())
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, CompileError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if src[i..].starts_with("//") {
            i = src[i..].find('\n').map_or(b.len(), |n| i + n);
            continue;
        }
        if src[i..].starts_with("/*") {
            let end = src[i + 2..].find("*/").ok_or_else(|| syntax("unterminated comment"))?;
            i += end + 4;
            continue;
        }
        let start = i;
        let tok = if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            Tok::Ident(src[start..i].to_owned())
        } else if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            Tok::Number(src[start..i].to_owned())
        } else if c == b'\'' || c == b'`' {
            let (text, end) = quoted(src, i, c as char)?;
            i = end;
            if c == b'\'' { Tok::Str(text) } else { Tok::Quoted(text) }
        } else if c == b'@' {
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'-' | b':' | b'.' | b'+')) {
                // a '.' only inside fractional seconds; '+'/'-' only in dates and offsets
                if b[i] == b'.' && !(i + 1 < b.len() && b[i + 1].is_ascii_digit()) {
                    break;
                }
                i += 1;
            }
            Tok::Date(src[start + 1..i].to_owned())
        } else if c == b'%' {
            i += 1;
            if i < b.len() && (b[i] == b'`' || b[i] == b'\'') {
                let (text, end) = quoted(src, i, b[i] as char)?;
                i = end;
                Tok::Var(text)
            } else {
                let s = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if s == i {
                    return Err(syntax("'%' must name a variable"));
                }
                Tok::Var(src[s..i].to_owned())
            }
        } else if let Some(sym) = SYMBOLS.iter().find(|s| src[i..].starts_with(**s)) {
            i += sym.len();
            Tok::Sym(sym)
        } else {
            return Err(syntax(format!("unexpected character at {i}")));
        };
        out.push((tok, start));
    }
    out.push((Tok::Eof, b.len()));
    Ok(out)
}

/// Reads a quoted string or identifier starting at `start`, handling escapes.
fn quoted(src: &str, start: usize, quote: char) -> Result<(String, usize), CompileError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((n, ch)) = chars.next() {
        match ch {
            c if c == quote => return Ok((out, start + 1 + n + 1)),
            '\\' => {
                let (_, e) = chars.next().ok_or_else(|| syntax("unterminated string"))?;
                match e {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = (0..4).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                        let code = u32::from_str_radix(&hex, 16).map_err(|_| syntax("bad \\u escape"))?;
                        out.push(char::from_u32(code).ok_or_else(|| syntax("bad \\u escape"))?);
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    Err(syntax("unterminated string"))
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
}

/// Binding power of each binary operator (higher binds tighter), per the spec's table.
fn binary_op(tok: &Tok) -> Option<(BinOp, u8)> {
    Some(match tok {
        Tok::Sym("*") => (BinOp::Mul, 10),
        Tok::Sym("/") => (BinOp::Div, 10),
        Tok::Ident(s) if s == "div" => (BinOp::IntDiv, 10),
        Tok::Ident(s) if s == "mod" => (BinOp::Mod, 10),
        Tok::Sym("+") => (BinOp::Add, 9),
        Tok::Sym("-") => (BinOp::Sub, 9),
        Tok::Sym("&") => (BinOp::Concat, 9),
        // 8: is / as (handled apart: their right side is a type)
        Tok::Sym("|") => (BinOp::Union, 7),
        Tok::Sym("<") => (BinOp::Lt, 6),
        Tok::Sym("<=") => (BinOp::Le, 6),
        Tok::Sym(">") => (BinOp::Gt, 6),
        Tok::Sym(">=") => (BinOp::Ge, 6),
        Tok::Sym("=") => (BinOp::Eq, 5),
        Tok::Sym("!=") => (BinOp::Ne, 5),
        Tok::Sym("~") => (BinOp::Equiv, 5),
        Tok::Sym("!~") => (BinOp::NotEquiv, 5),
        Tok::Ident(s) if s == "in" => (BinOp::In, 4),
        Tok::Ident(s) if s == "contains" => (BinOp::Contains, 4),
        Tok::Ident(s) if s == "and" => (BinOp::And, 3),
        Tok::Ident(s) if s == "or" => (BinOp::Or, 2),
        Tok::Ident(s) if s == "xor" => (BinOp::Xor, 2),
        Tok::Ident(s) if s == "implies" => (BinOp::Implies, 1),
        _ => return None,
    })
}

const TYPE_OP_POWER: u8 = 8;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, sym: &'static str) -> Result<(), CompileError> {
        match self.next() {
            Tok::Sym(s) if s == sym => Ok(()),
            _ => Err(syntax(format!("expected '{sym}' at {}", self.toks[self.pos.saturating_sub(1)].1))),
        }
    }

    fn enter(&mut self) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(CompileError::TooDeep) } else { Ok(()) }
    }

    fn expression(&mut self, min_power: u8) -> Result<Expr, CompileError> {
        self.enter()?;
        let outer = self.depth;
        let mut left = self.unary()?;
        loop {
            let tok = self.peek().clone();
            if let Tok::Ident(word) = &tok
                && (word == "is" || word == "as")
                && TYPE_OP_POWER >= min_power
            {
                self.next();
                self.enter()?;
                let spec = self.type_spec()?;
                left = if word == "is" { Expr::Is(Box::new(left), spec) } else { Expr::As(Box::new(left), spec) };
                continue;
            }
            let Some((op, power)) = binary_op(&tok) else { break };
            if power < min_power {
                break;
            }
            self.next();
            self.enter()?;
            let right = self.expression(power + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        self.depth = outer - 1;
        Ok(left)
    }

    fn type_spec(&mut self) -> Result<TypeSpec, CompileError> {
        let first = self.identifier()?;
        if self.peek() == &Tok::Sym(".") {
            self.next();
            let name = self.identifier()?;
            return Ok(TypeSpec { namespace: Some(first), name });
        }
        Ok(TypeSpec { namespace: None, name: first })
    }

    fn identifier(&mut self) -> Result<String, CompileError> {
        match self.next() {
            Tok::Ident(s) | Tok::Quoted(s) => Ok(s),
            _ => Err(syntax("expected an identifier")),
        }
    }

    fn unary(&mut self) -> Result<Expr, CompileError> {
        match self.peek() {
            Tok::Sym("-") => {
                self.next();
                self.enter()?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(match inner {
                    Expr::Literal(Value::Integer(i)) => Expr::Literal(Value::Integer(i.saturating_neg())),
                    Expr::Literal(Value::Decimal(d)) => Expr::Literal(Value::Decimal(d.negated())),
                    other => Expr::Negate(Box::new(other)),
                })
            }
            Tok::Sym("+") => {
                self.next();
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, CompileError> {
        let outer = self.depth;
        let mut expr = self.term()?;
        loop {
            if matches!(self.peek(), Tok::Sym(".") | Tok::Sym("[")) {
                self.enter()?;
            }
            match self.peek() {
                Tok::Sym(".") => {
                    self.next();
                    let step = self.invocation()?;
                    expr = Expr::Path(Box::new(expr), Box::new(step));
                }
                Tok::Sym("[") => {
                    self.next();
                    let index = self.expression(0)?;
                    self.expect("]")?;
                    expr = Expr::Indexer(Box::new(expr), Box::new(index));
                }
                _ => {
                    self.depth = outer;
                    return Ok(expr);
                }
            }
        }
    }

    /// A member or function name after `.` or at the start of a path.
    fn invocation(&mut self) -> Result<Expr, CompileError> {
        match self.next() {
            Tok::Ident(name) | Tok::Quoted(name) => {
                if self.peek() == &Tok::Sym("(") {
                    self.next();
                    self.call(&name)
                } else {
                    Ok(Expr::Member(name.into()))
                }
            }
            Tok::Sym("$") => self.special(),
            _ => Err(syntax("expected a name after '.'")),
        }
    }

    fn special(&mut self) -> Result<Expr, CompileError> {
        match self.next() {
            Tok::Ident(s) if s == "this" => Ok(Expr::This),
            Tok::Ident(s) if s == "index" => Ok(Expr::Index),
            Tok::Ident(s) if s == "total" => Ok(Expr::Total),
            _ => Err(syntax("unknown '$' name")),
        }
    }

    fn call(&mut self, name: &str) -> Result<Expr, CompileError> {
        let mut args = Vec::new();
        if self.peek() != &Tok::Sym(")") {
            loop {
                args.push(self.expression(0)?);
                if self.peek() == &Tok::Sym(",") {
                    self.next();
                } else {
                    break;
                }
            }
        }
        self.expect(")")?;
        let function = Function::by_name(name, &args)?;
        Ok(Expr::Call(function, args))
    }

    fn term(&mut self) -> Result<Expr, CompileError> {
        match self.peek().clone() {
            Tok::Number(n) => {
                self.next();
                self.number(&n)
            }
            Tok::Str(s) => {
                self.next();
                Ok(Expr::Literal(Value::String(s)))
            }
            Tok::Date(d) => {
                self.next();
                date_literal(&d).map(Expr::Literal)
            }
            Tok::Var(v) => {
                self.next();
                Ok(Expr::Variable(v.into()))
            }
            Tok::Sym("(") => {
                self.next();
                let e = self.expression(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.next();
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            Tok::Ident(s) if s == "true" || s == "false" => {
                self.next();
                Ok(Expr::Literal(Value::Boolean(s == "true")))
            }
            Tok::Ident(_) | Tok::Quoted(_) | Tok::Sym("$") => self.invocation(),
            Tok::Eof => Err(syntax("unexpected end of expression")),
            _ => Err(syntax(format!("unexpected token at {}", self.toks[self.pos].1))),
        }
    }

    fn number(&mut self, n: &str) -> Result<Expr, CompileError> {
        let dec = Decimal::parse(n).ok_or_else(|| syntax("number out of range"))?;
        let unit = match self.peek().clone() {
            Tok::Str(u) => Some(u),
            Tok::Ident(w) if calendar_keyword(&w).is_some() => Some(w),
            _ => None,
        };
        if let Some(unit) = unit {
            self.next();
            return Ok(Expr::Literal(Value::Quantity(Quantity { value: dec, unit })));
        }
        if n.contains('.') {
            return Ok(Expr::Literal(Value::Decimal(dec)));
        }
        match n.parse::<i64>() {
            Ok(i) if i32::try_from(i).is_ok() || i == 2_147_483_648 => Ok(Expr::Literal(Value::Integer(i))),
            _ => Err(syntax("integer out of range")),
        }
    }
}

fn date_literal(text: &str) -> Result<Value, CompileError> {
    if let Some(t) = text.strip_prefix('T') {
        return Time::parse(t).map(Value::Time).ok_or_else(|| syntax("invalid time literal"));
    }
    match DateTime::parse(text) {
        Some((d, false)) => Ok(Value::Date(d)),
        Some((d, true)) => Ok(Value::DateTime(d)),
        None => Err(syntax("invalid date literal")),
    }
}

/// Static checks: a member of a value cast to a complex type (`(x as Period).unit`,
/// `x.ofType(Quantity).foo`) must be an element of that type.
pub(crate) fn check(e: &Expr) -> Result<(), CompileError> {
    match e {
        Expr::Path(left, right) => {
            if let Expr::Member(name) = &**right {
                let cast = match &**left {
                    Expr::As(_, spec) => Some(spec.clone()),
                    Expr::Path(_, call) => match &**call {
                        Expr::Call(Function::As | Function::OfType, args) => match args.first() {
                            Some(Expr::Member(t)) => Some(TypeSpec { namespace: None, name: t.to_string() }),
                            _ => None,
                        },
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(spec) = cast
                    && spec.namespace.as_deref() != Some("System")
                    && let Some(class) = crate::model::model().class_named(&spec.name)
                {
                    let class = crate::model::model().class(class);
                    let complex = matches!(class.kind, crate::model::Kind::Complex);
                    if complex && !class.by_name.contains_key(&**name) {
                        return Err(CompileError::Semantic(format!("{name} is not an element of {}", spec.name)));
                    }
                }
            }
            check(left)?;
            check(right)
        }
        Expr::Call(_, args) => args.iter().try_for_each(check),
        Expr::Indexer(a, b) | Expr::Binary(_, a, b) => {
            check(a)?;
            check(b)
        }
        Expr::Negate(a) | Expr::Is(a, _) | Expr::As(a, _) => check(a),
        _ => Ok(()),
    }
}

/// Parses a whole expression.
pub(crate) fn parse(src: &str) -> Result<Expr, CompileError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let e = p.expression(0)?;
    if p.peek() != &Tok::Eof {
        return Err(syntax(format!("unexpected token at {}", p.toks[p.pos].1)));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(e: &Expr) -> String {
        match e {
            Expr::Binary(op, l, r) => format!("({} {op:?} {})", shape(l), shape(r)),
            Expr::Literal(v) => v.render(),
            Expr::Member(m) => m.to_string(),
            Expr::Path(l, r) => format!("{}.{}", shape(l), shape(r)),
            Expr::Is(l, t) => format!("({} is {})", shape(l), t.name),
            Expr::Negate(i) => format!("-{}", shape(i)),
            Expr::Call(f, a) => format!("{f:?}({})", a.iter().map(shape).collect::<Vec<_>>().join(",")),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn respects_precedence() {
        assert_eq!(shape(&parse("1+2*3+4 = 11").unwrap()), "(((1 Add (2 Mul 3)) Add 4) Eq 11)");
        assert_eq!(shape(&parse("1 > 2 is Boolean").unwrap()), "(1 Gt (2 is Boolean))");
        assert_eq!(shape(&parse("a or b and c implies d").unwrap()), "((a Or (b And c)) Implies d)");
        assert_eq!(shape(&parse("a | b = c").unwrap()), "((a Union b) Eq c)");
        assert_eq!(shape(&parse("-1.convertsToInteger()").unwrap()), "-1.ConvertsToInteger()");
        assert_eq!(shape(&parse("(-1)").unwrap()), "-1");
        assert_eq!(shape(&parse("a.b in c").unwrap()), "(a.b In c)");
    }

    #[test]
    fn reads_literals_and_comments() {
        assert_eq!(shape(&parse("2 + 2 // c\n").unwrap()), "(2 Add 2)");
        assert_eq!(shape(&parse("4 'mg' /* x */").unwrap()), "4 'mg'");
        assert_eq!(shape(&parse("7 days").unwrap()), "7 days");
        assert_eq!(shape(&parse("@2015-02-04T14:34:28.123+10:00").unwrap()), "2015-02-04T14:34:28.123+10:00");
        assert_eq!(shape(&parse("'a\\'b'").unwrap()), "a'b");
        assert!(matches!(parse("@T14:34").unwrap(), Expr::Literal(Value::Time(_))));
    }

    #[test]
    fn rejects_bad_input_without_overflowing() {
        assert!(parse("2 + 2 /").is_err());
        assert!(parse("2 + 2 /* open").is_err());
        assert!(parse("'open").is_err());
        assert!(parse("a.").is_err());
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(matches!(parse(&deep), Err(CompileError::TooDeep)));
        let deep = "-".repeat(100_000) + "1";
        assert!(parse(&deep).is_err());
        let long = vec!["a"; 100_000].join(" | ");
        assert!(matches!(parse(&long), Err(CompileError::TooDeep)));
        let long = vec!["a"; 100_000].join(".");
        assert!(matches!(parse(&long), Err(CompileError::TooDeep)));
        assert!(parse(&vec!["a"; 50].join(" | ")).is_ok());
    }
}
