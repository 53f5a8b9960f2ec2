//! How Ansible's INI plugin (`plugins/inventory/ini.py`) reads words and values, reproduced:
//! a host line is split by Python's `shlex.split(line, comments=True)` (POSIX rules: quotes,
//! backslash escapes, `#` comments), and every value — inline or in a `[group:vars]` section —
//! goes through `ast.literal_eval`, falling back to the text itself when that fails.
//! `tests/ansible_inventory.rs` compares both with `ansible-inventory --list`.
//!
//! Not reproduced (the value stays text, where Ansible would give another text): complex
//! numbers (`1j`, Ansible prints `str(1j)`), `\N{name}` escapes, floats that overflow to `inf`,
//! and set ordering (a set literal keeps source order; Python's order depends on hashing).

use serde_json::{Map, Number, Value};

const WHITESPACE: &[char] = &[' ', '\t', '\r', '\n'];

/// Python's `shlex.split(line, comments=True)`: POSIX mode, whitespace-split.
pub(crate) fn shlex_split(line: &str) -> Result<Vec<String>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Between,
        Word,
        Quote(char),
        Escape { back_to: Back },
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Back {
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut token = String::new();
    let mut state = State::Between;
    let mut chars = line.chars();
    loop {
        let Some(c) = chars.next() else {
            match state {
                State::Quote(_) => return Err("No closing quotation".to_owned()),
                State::Escape { .. } => return Err("No escaped character".to_owned()),
                State::Word => words.push(std::mem::take(&mut token)),
                State::Between => {}
            }
            return Ok(words);
        };
        match state {
            State::Between | State::Word => {
                if WHITESPACE.contains(&c) {
                    if state == State::Word {
                        words.push(std::mem::take(&mut token));
                    }
                    state = State::Between;
                } else if c == '#' {
                    // The rest of the line is a comment; a word in progress ends here.
                    if state == State::Word {
                        words.push(std::mem::take(&mut token));
                    }
                    return Ok(words);
                } else if c == '\'' || c == '"' {
                    state = State::Quote(c);
                } else if c == '\\' {
                    state = State::Escape {
                        back_to: Back::Word,
                    };
                } else {
                    token.push(c);
                    state = State::Word;
                }
            }
            State::Quote(q) => {
                if c == q {
                    state = State::Word;
                } else if c == '\\' && q == '"' {
                    state = State::Escape {
                        back_to: Back::Quote(q),
                    };
                } else {
                    token.push(c);
                }
            }
            State::Escape { back_to } => {
                // Inside double quotes a backslash escapes only `"` and `\`; elsewhere it is kept.
                if let Back::Quote(q) = back_to
                    && c != '\\'
                    && c != q
                {
                    token.push('\\');
                }
                token.push(c);
                state = match back_to {
                    Back::Word => State::Word,
                    Back::Quote(q) => State::Quote(q),
                };
            }
        }
    }
}

/// Ansible's `_parse_value`: `ast.literal_eval(text)`, else the text.
pub(crate) fn parse_value(text: &str) -> Value {
    let mut p = Parser {
        s: text.trim_start_matches([' ', '\t']).as_bytes(),
        src: text.trim_start_matches([' ', '\t']),
        i: 0,
    };
    match p.top() {
        Some(v) => v,
        None => Value::String(text.to_owned()),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

/// Literal values; tuples and sets become lists (as Ansible coerces them), `...` the text.
impl Parser<'_> {
    fn top(&mut self) -> Option<Value> {
        let first = self.expr()?;
        self.skip_ws();
        let v = if self.eat(b',') {
            // `1, 2` is a tuple even without parentheses.
            let mut items = vec![first];
            self.skip_ws();
            while !self.at_end() {
                items.push(self.expr()?);
                self.skip_ws();
                if !self.eat(b',') {
                    break;
                }
                self.skip_ws();
            }
            Value::Array(items)
        } else {
            first
        };
        self.skip_ws();
        self.at_end().then_some(v)
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Spaces, tabs and newlines between tokens; `#` comments to the end of the line.
    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.i += 1,
                b'\\' if self.s.get(self.i + 1) == Some(&b'\n') => self.i += 2,
                b'#' => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn expr(&mut self) -> Option<Value> {
        self.skip_ws();
        match self.peek()? {
            b'+' | b'-' => {
                let negative = self.peek() == Some(b'-');
                self.i += 1;
                self.skip_ws();
                // One sign, on a number only (`--1` and `-"a"` are not literals).
                let n = self.number()?;
                Some(if negative { negate(n)? } else { n })
            }
            b'[' => {
                self.i += 1;
                Some(Value::Array(self.items(b']')?))
            }
            b'(' => {
                self.i += 1;
                self.skip_ws();
                if self.eat(b')') {
                    return Some(Value::Array(Vec::new()));
                }
                let first = self.expr()?;
                self.skip_ws();
                if self.eat(b')') {
                    return Some(first); // `(1)` is 1, not a tuple
                }
                if !self.eat(b',') {
                    return None;
                }
                let mut rest = self.items(b')')?;
                rest.insert(0, first);
                Some(Value::Array(rest))
            }
            b'{' => {
                self.i += 1;
                self.braces()
            }
            b'0'..=b'9' | b'.' => self.number(),
            b'"' | b'\'' => self.strings(),
            c if c.is_ascii_alphabetic() || c == b'_' => self.name_or_prefixed_string(),
            _ => None,
        }
    }

    /// Comma-separated values up to `close` (a trailing comma allowed).
    fn items(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(close) {
                return Some(out);
            }
            out.push(self.expr()?);
            self.skip_ws();
            if self.eat(close) {
                return Some(out);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// `{}` / `{k: v, …}` (a dict) or `{a, b}` (a set, kept as a list).
    fn braces(&mut self) -> Option<Value> {
        self.skip_ws();
        if self.eat(b'}') {
            return Some(Value::Object(Map::new()));
        }
        let first = self.expr()?;
        self.skip_ws();
        if !self.eat(b':') {
            if self.eat(b'}') {
                return Some(Value::Array(vec![first]));
            }
            if !self.eat(b',') {
                return None;
            }
            let mut rest = self.items(b'}')?;
            rest.insert(0, first);
            return Some(Value::Array(rest));
        }
        let mut map = Map::new();
        let mut key = first;
        loop {
            let value = self.expr()?;
            map.insert(key_text(&key)?, value);
            self.skip_ws();
            if self.eat(b'}') {
                return Some(Value::Object(map));
            }
            if !self.eat(b',') {
                return None;
            }
            self.skip_ws();
            if self.eat(b'}') {
                return Some(Value::Object(map));
            }
            key = self.expr()?;
            self.skip_ws();
            if !self.eat(b':') {
                return None;
            }
        }
    }

    fn name_or_prefixed_string(&mut self) -> Option<Value> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
        {
            self.i += 1;
        }
        let word = &self.src[start..self.i];
        if matches!(self.peek(), Some(b'"' | b'\'')) {
            let lower = word.to_ascii_lowercase();
            if matches!(lower.as_str(), "r" | "u" | "b" | "br" | "rb") {
                self.i = start;
                return self.strings();
            }
            return None; // f-strings and unknown prefixes are not literals
        }
        match word {
            "None" => Some(Value::Null),
            "True" => Some(Value::Bool(true)),
            "False" => Some(Value::Bool(false)),
            "set" => {
                // `set()` is the one call literal_eval accepts.
                self.skip_ws();
                (self.eat(b'(') && {
                    self.skip_ws();
                    self.eat(b')')
                })
                .then(|| Value::Array(Vec::new()))
            }
            _ => None,
        }
    }

    /// One or more adjacent string literals, concatenated (`"a" 'b'` is `"ab"`).
    fn strings(&mut self) -> Option<Value> {
        let mut out = String::new();
        let mut bytes_kind = None;
        loop {
            self.skip_ws();
            let mut raw = false;
            let mut is_bytes = false;
            while let Some(b) = self.peek() {
                match b.to_ascii_lowercase() {
                    b'r' => raw = true,
                    b'b' => is_bytes = true,
                    b'u' => {}
                    _ => break,
                }
                self.i += 1;
            }
            let Some(q @ (b'"' | b'\'')) = self.peek() else {
                return None;
            };
            if *bytes_kind.get_or_insert(is_bytes) != is_bytes {
                return None; // bytes and str cannot be concatenated
            }
            let triple = self.s[self.i..].starts_with(&[q, q, q]);
            self.i += if triple { 3 } else { 1 };
            loop {
                let c = self.src[self.i..].chars().next()?;
                if c as u32 == u32::from(q) && (!triple || self.s[self.i..].starts_with(&[q, q, q]))
                {
                    self.i += if triple { 3 } else { 1 };
                    break;
                }
                if c == '\n' && !triple {
                    return None;
                }
                if c == '\\' {
                    let next = self.src[self.i + 1..].chars().next()?;
                    if raw {
                        out.push('\\');
                        out.push(next);
                        self.i += 1 + next.len_utf8();
                        continue;
                    }
                    self.i += 1;
                    self.escape(&mut out, is_bytes)?;
                    continue;
                }
                out.push(c);
                self.i += c.len_utf8();
            }
            let save = self.i;
            self.skip_ws();
            let more = matches!(self.peek(), Some(b'"' | b'\''))
                || (self.peek().is_some_and(|b| b"rRuUbB".contains(&b)) && {
                    let rest = &self.s[self.i..];
                    let n = rest.iter().take_while(|b| b"rRuUbB".contains(b)).count();
                    matches!(rest.get(n), Some(b'"' | b'\''))
                });
            if !more {
                self.i = save;
                return Some(Value::String(out));
            }
        }
    }

    /// After a backslash in a non-raw literal: Python's escapes (unknown ones keep the
    /// backslash, as Python does).
    fn escape(&mut self, out: &mut String, is_bytes: bool) -> Option<()> {
        let c = self.src[self.i..].chars().next()?;
        self.i += c.len_utf8();
        let simple = match c {
            '\n' => return Some(()),
            '\\' => Some('\\'),
            '\'' => Some('\''),
            '"' => Some('"'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            return Some(());
        }
        let hex = |p: &mut Self, n: usize| -> Option<u32> {
            let digits = p.src.get(p.i..p.i + n)?;
            if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            p.i += n;
            u32::from_str_radix(digits, 16).ok()
        };
        match c {
            '0'..='7' => {
                let mut v = c.to_digit(8)?;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            self.i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(char::from_u32(v)?);
            }
            'x' => out.push(char::from_u32(hex(self, 2)?)?),
            'u' if !is_bytes => out.push(char::from_u32(hex(self, 4)?)?),
            'U' if !is_bytes => out.push(char::from_u32(hex(self, 8)?)?),
            'N' if !is_bytes => return None,
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        Some(())
    }

    /// Python's int and float literals (underscores between digits; 0x, 0o, 0b).
    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            || (self.i > start
                && matches!(self.peek(), Some(b'+' | b'-'))
                && matches!(self.s[self.i - 1], b'e' | b'E')
                && !self.src[start..].starts_with("0x")
                && !self.src[start..].starts_with("0X"))
        {
            self.i += 1;
        }
        let text = &self.src[start..self.i];
        if text.is_empty() || text == "." {
            return None;
        }
        let lower = text.to_ascii_lowercase();
        if lower.ends_with('j') {
            return None; // complex: see the module comment
        }
        let digits_ok = |body: &str, radix: u32| {
            !body.is_empty()
                && !body.starts_with('_')
                && !body.ends_with('_')
                && !body.contains("__")
                && body.chars().all(|c| c == '_' || c.is_digit(radix))
        };
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if let Some(body) = lower.strip_prefix(prefix) {
                let body = body.strip_prefix('_').unwrap_or(body);
                if !digits_ok(body, radix) {
                    return None;
                }
                return int_value(&body.replace('_', ""), radix);
            }
        }
        if lower.contains(['.', 'e']) {
            let (mantissa, exponent) = match lower.split_once('e') {
                Some((m, e)) => (m, Some(e)),
                None => (lower.as_str(), None),
            };
            let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
            let part_ok = |p: &str| p.is_empty() || digits_ok(p, 10);
            if !part_ok(whole) || !part_ok(frac) || (whole.is_empty() && frac.is_empty()) {
                return None;
            }
            if let Some(e) = exponent {
                let e = e.strip_prefix(['+', '-']).unwrap_or(e);
                if !digits_ok(e, 10) {
                    return None;
                }
            }
            let f: f64 = lower.replace('_', "").parse().ok()?;
            return f
                .is_finite()
                .then(|| Number::from_f64(f).map(Value::Number))?;
        }
        if !digits_ok(&lower, 10) {
            return None;
        }
        let plain = lower.replace('_', "");
        // Leading zeros are allowed only for zero itself (`00`), as in Python 3.
        if plain.len() > 1 && plain.starts_with('0') && plain.bytes().any(|b| b != b'0') {
            return None;
        }
        int_value(&plain, 10)
    }
}

fn int_value(digits: &str, radix: u32) -> Option<Value> {
    if let Ok(i) = i64::from_str_radix(digits, radix) {
        return Some(Value::from(i));
    }
    if let Ok(u) = u64::from_str_radix(digits, radix) {
        return Some(Value::from(u));
    }
    None // beyond 64 bits: kept as text
}

fn negate(v: Value) -> Option<Value> {
    let Value::Number(n) = v else { return None };
    if let Some(i) = n.as_i64() {
        return Some(Value::from(i.checked_neg()?));
    }
    if n.is_u64() {
        return None;
    }
    Number::from_f64(-n.as_f64()?).map(Value::Number)
}

/// A dict key as JSON text, the way `json.dumps` writes non-string keys.
fn key_text(k: &Value) -> Option<String> {
    Some(match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
        Value::Null => "null".to_owned(),
        _ => return None, // lists and dicts are unhashable in Python
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shlex_splits_as_python_posix_shlex() {
        let cases: &[(&str, &[&str])] = &[
            (r#"h a="x\"y" b='p q'"#, &["h", "a=x\"y", "b=p q"]),
            (r"h e=x\ y", &["h", "e=x y"]),
            (r#"h a="x\ny""#, &["h", "a=x\\ny"]),
            (r"h a='x\y'", &["h", "a=x\\y"]),
            ("h a=b#c d=e", &["h", "a=b"]),
            ("h a=b # c", &["h", "a=b"]),
            ("h a=''", &["h", "a="]),
        ];
        for (line, want) in cases {
            assert_eq!(shlex_split(line).unwrap(), *want, "{line}");
        }
        assert!(shlex_split("h a='x").is_err());
        assert!(shlex_split("h a=x\\").is_err());
    }

    #[test]
    fn values_as_literal_eval_reads_them() {
        let cases: &[(&str, Value)] = &[
            ("1.5", json!(1.5)),
            ("0x10", json!(16)),
            ("0o17", json!(15)),
            ("1_000", json!(1000)),
            ("-3", json!(-3)),
            ("None", Value::Null),
            ("True", json!(true)),
            ("true", json!("true")),
            ("[1, 'a', (2,)]", json!([1, "a", [2]])),
            ("{'a': 1, 2: [3]}", json!({"a": 1, "2": [3]})),
            ("1, 2", json!([1, 2])),
            ("'a' \"b\"", json!("ab")),
            (r"'\x41\n'", json!("A\n")),
            (r"r'\n'", json!("\\n")),
            ("0777", json!("0777")),
            ("1 # note", json!(1)),
            ("a b", json!("a b")),
            ("--1", json!("--1")),
            ("", json!("")),
            ("1+2", json!("1+2")),
            ("set()", json!([])),
        ];
        for (text, want) in cases {
            assert_eq!(parse_value(text), *want, "{text}");
        }
    }
}
