//! The `--where` grammar: a filter a person types.
//!
//! ```text
//! expr  := or
//! or    := and ("OR" and)*
//! and   := unary ("AND" unary)*
//! unary := "NOT" unary | "(" or ")" | test
//! test  := FIELD ":" VALUE                 equals (on path, a glob when it has * ? [)
//!        | FIELD ("=" | "!=") VALUE
//!        | FIELD ("<" | "<=" | ">" | ">=") VALUE
//!        | FIELD "IN" "(" VALUE ("," VALUE)* ")"
//!        | FIELD "EXISTS"
//! VALUE := a word (no spaces, parentheses or commas) | "a quoted string"
//! ```
//!
//! Keywords are case-insensitive. Example:
//! `ext IN (md,rs) AND modified >= 2025-01-01 AND tag:rust AND NOT path:drafts/**`.
//! An error names the byte position and what was expected there; nothing malformed is
//! read as "match everything".

use super::{Filter, Scalar};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Comma,
    Colon,
    Op(&'static str),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("{w:?}"),
            Tok::Quoted(w) => format!("\"{w}\""),
            Tok::Open => "'('".into(),
            Tok::Close => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Colon => "':'".into(),
            Tok::Op(o) => format!("'{o}'"),
        }
    }
}

fn err(pos: usize, what: impl std::fmt::Display) -> Error {
    Error::invalid("where", format!("at position {pos}: {what}"))
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => out.push((i, Tok::Open)),
            b')' => out.push((i, Tok::Close)),
            b',' => out.push((i, Tok::Comma)),
            b':' => out.push((i, Tok::Colon)),
            b'"' | b'\'' => {
                let end = s[i + 1..]
                    .find(c as char)
                    .ok_or_else(|| err(i, "unterminated quoted string"))?;
                out.push((i, Tok::Quoted(s[i + 1..i + 1 + end].to_string())));
                i += end + 2;
                continue;
            }
            b'<' | b'>' | b'=' | b'!' => {
                let two = s.get(i..i + 2).unwrap_or("");
                let op = match two {
                    "<=" => "<=",
                    ">=" => ">=",
                    "!=" => "!=",
                    _ => match c {
                        b'<' => "<",
                        b'>' => ">",
                        b'=' => "=",
                        _ => return Err(err(i, "'!' must be followed by '='")),
                    },
                };
                out.push((i, Tok::Op(op)));
                i += op.len();
                continue;
            }
            _ => {
                while i < b.len()
                    && !matches!(
                        b[i],
                        b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b',' | b'<' | b'>' | b'='
                            | b'!' | b'"' | b'\''
                    )
                    // A colon ends a field name, but a value may hold one (a time).
                    && !(b[i] == b':'
                        && out
                            .last()
                            .is_none_or(|(_, t)| !matches!(t, Tok::Colon | Tok::Op(_))))
                {
                    i += 1;
                }
                out.push((start, Tok::Word(s[start..i].to_string())));
                continue;
            }
        }
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
    end: usize,
    /// Parentheses and NOTs open at this point (bounded: the parser recurses on them).
    depth: usize,
}

/// Deepest nesting of parentheses and NOTs: far beyond any filter a person writes, and far
/// below what would exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Longest `--where` text, in bytes.
pub const MAX_WHERE_BYTES: usize = 16 * 1024;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(_, t)| t)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(p, _)| *p)
    }
    fn found(&self) -> String {
        self.peek().map_or("the end".to_string(), |t| t.describe())
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self) -> Result<Filter> {
        let mut parts = vec![self.and()?];
        while self.keyword("OR") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Filter> {
        let mut parts = vec![self.unary()?];
        while self.keyword("AND") {
            self.at += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Filter> {
        if self.keyword("NOT") || self.peek() == Some(&Tok::Open) {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(err(
                    self.pos(),
                    format!("nested more than {MAX_DEPTH} levels deep"),
                ));
            }
        }
        if self.keyword("NOT") {
            self.at += 1;
            let f = Filter::Not(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(f);
        }
        if self.peek() == Some(&Tok::Open) {
            self.at += 1;
            let f = self.or()?;
            self.depth -= 1;
            if self.peek() != Some(&Tok::Close) {
                return Err(err(
                    self.pos(),
                    format!("expected ')', found {}", self.found()),
                ));
            }
            self.at += 1;
            return Ok(f);
        }
        self.test()
    }

    fn value(&mut self) -> Result<String> {
        match self.peek() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => {
                let w = w.clone();
                self.at += 1;
                Ok(w)
            }
            _ => Err(err(
                self.pos(),
                format!("expected a value, found {}", self.found()),
            )),
        }
    }

    fn test(&mut self) -> Result<Filter> {
        let field = match self.peek() {
            Some(Tok::Word(w))
                if !["AND", "OR", "NOT", "IN", "EXISTS"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                w.clone()
            }
            _ => {
                return Err(err(
                    self.pos(),
                    format!("expected a field name, found {}", self.found()),
                ))
            }
        };
        self.at += 1;
        let here = self.pos();
        let field_s = field.clone();
        let range = |op: &str, v: String| {
            let v = Some(Scalar::Text(v));
            let (mut gt, mut gte, mut lt, mut lte) = (None, None, None, None);
            match op {
                ">" => gt = v,
                ">=" => gte = v,
                "<" => lt = v,
                _ => lte = v,
            }
            Filter::Range {
                field: field_s.clone(),
                gt,
                gte,
                lt,
                lte,
            }
        };
        match self.peek().cloned() {
            Some(Tok::Colon) | Some(Tok::Op("=")) => {
                self.at += 1;
                let value = self.value()?;
                Ok(Filter::Eq {
                    field,
                    value: Scalar::Text(value),
                })
            }
            Some(Tok::Op("!=")) => {
                self.at += 1;
                let value = self.value()?;
                Ok(Filter::Not(Box::new(Filter::Eq {
                    field,
                    value: Scalar::Text(value),
                })))
            }
            Some(Tok::Op(op)) => {
                self.at += 1;
                let v = self.value()?;
                Ok(range(op, v))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("IN") => {
                self.at += 1;
                if self.peek() != Some(&Tok::Open) {
                    return Err(err(self.pos(), format!("expected '(' after IN, found {}", self.found())));
                }
                self.at += 1;
                let mut values = vec![Scalar::Text(self.value()?)];
                while self.peek() == Some(&Tok::Comma) {
                    self.at += 1;
                    values.push(Scalar::Text(self.value()?));
                }
                if self.peek() != Some(&Tok::Close) {
                    return Err(err(self.pos(), format!("expected ',' or ')', found {}", self.found())));
                }
                self.at += 1;
                Ok(Filter::In { field, values })
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("EXISTS") => {
                self.at += 1;
                Ok(Filter::Exists { field })
            }
            _ => Err(err(
                here,
                format!(
                    "expected ':', '=', '!=', '<', '<=', '>', '>=', IN or EXISTS after {field:?}, found {}",
                    self.found()
                ),
            )),
        }
    }
}

/// Parses a `--where` expression into a filter tree, and checks it compiles.
pub fn parse_where(s: &str) -> Result<Filter> {
    if s.len() > MAX_WHERE_BYTES {
        return Err(Error::invalid(
            "where",
            format!("{} bytes (at most {MAX_WHERE_BYTES})", s.len()),
        ));
    }
    let toks = lex(s)?;
    if toks.is_empty() {
        return Err(err(0, "the filter is empty"));
    }
    let mut p = Parser {
        toks,
        at: 0,
        end: s.len(),
        depth: 0,
    };
    let f = p.or()?;
    if p.at < p.toks.len() {
        return Err(err(
            p.pos(),
            format!("expected AND, OR or the end, found {}", p.found()),
        ));
    }
    // Errors of meaning (a bad date, a range on a text field) surface here too.
    f.compile()
        .map_err(|e| Error::invalid("where", e.to_string()))?;
    Ok(f)
}
