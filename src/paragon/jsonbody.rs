//! Reading and rewriting the top level of a JSON request body without
//! re-serializing it (contract §7).
//!
//! The sync body's `credentialId` must be checked and replaced while every
//! other field reaches Paragon as the caller wrote it. A parse-and-print
//! round trip through `serde_json::Value` would keep only the last of two
//! duplicate keys (while Node.js' `JSON.parse`, Paragon's side, also keeps
//! the last, another parser might keep the first: a classic parser
//! differential) and would reformat numbers. So this module validates the
//! whole document (RFC 8259 grammar, UTF-8, at most 64 levels deep), lists
//! the top-level members with their keys unescaped and their values as byte
//! ranges, and splices the new value in.

use std::borrow::Cow;

/// Maximum nesting of objects and arrays (contract §7).
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    Bool,
    Null,
    Object,
    Array,
}

/// One top-level member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key after unescaping (`"credential\u0049d"` is `credentialId`).
    pub key: Cow<'a, str>,
    /// Byte range of the value in the document.
    pub value: std::ops::Range<usize>,
    pub kind: Kind,
}

/// A validated JSON object and its top-level members.
#[derive(Debug, Clone)]
pub struct TopObject<'a> {
    doc: &'a [u8],
    /// Byte offset of the opening `{`.
    open: usize,
    pub members: Vec<Member<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the body is not valid UTF-8")]
    Utf8,
    #[error("the body is not valid JSON")]
    Syntax,
    #[error("the body nests deeper than 64 levels")]
    TooDeep,
    #[error("the body is not a JSON object")]
    NotObject,
}

impl<'a> TopObject<'a> {
    /// Validates `doc` and lists its top-level members.
    pub fn parse(doc: &'a [u8]) -> Result<TopObject<'a>, JsonError> {
        std::str::from_utf8(doc).map_err(|_| JsonError::Utf8)?;
        let mut p = Parser { doc, pos: 0 };
        p.ws();
        if p.peek() != Some(b'{') {
            // Still validate, to tell "not JSON" from "not an object".
            p.value(0)?;
            p.ws();
            return Err(if p.pos == doc.len() {
                JsonError::NotObject
            } else {
                JsonError::Syntax
            });
        }
        let open = p.pos;
        let members = p.top_object()?;
        p.ws();
        if p.pos != doc.len() {
            return Err(JsonError::Syntax);
        }
        Ok(TopObject { doc, open, members })
    }

    /// Every member named `key`.
    pub fn all<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s Member<'a>> + 's {
        self.members.iter().filter(move |m| m.key == key)
    }

    /// The decoded string value of a member.
    pub fn string_value(&self, m: &Member<'_>) -> Option<String> {
        if m.kind != Kind::String {
            return None;
        }
        unescape(&self.doc[m.value.start + 1..m.value.end - 1]).map(Cow::into_owned)
    }

    /// The document with `key`'s value replaced by the JSON string `value`
    /// (or, when absent, the member added first). Exactly one member named
    /// `key` may exist (callers refuse duplicates before).
    pub fn with_string(&self, key: &str, value: &str) -> Vec<u8> {
        let quoted = serde_json::to_string(value).expect("strings serialize");
        self.with_raw(key, quoted.as_bytes())
    }

    /// The document with `key`'s value replaced by `raw`, a JSON value the
    /// caller made (or, when absent, the member added first). Exactly one
    /// member named `key` may exist (callers refuse duplicates before).
    pub fn with_raw(&self, key: &str, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.doc.len() + raw.len() + key.len() + 4);
        match self.members.iter().find(|m| m.key == key) {
            Some(m) => {
                out.extend_from_slice(&self.doc[..m.value.start]);
                out.extend_from_slice(raw);
                out.extend_from_slice(&self.doc[m.value.end..]);
            }
            None => {
                out.extend_from_slice(&self.doc[..=self.open]);
                out.extend_from_slice(
                    serde_json::to_string(key)
                        .expect("strings serialize")
                        .as_bytes(),
                );
                out.push(b':');
                out.extend_from_slice(raw);
                if !self.members.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(&self.doc[self.open + 1..]);
            }
        }
        out
    }

    /// The raw bytes of a member's value.
    pub fn raw_value(&self, m: &Member<'_>) -> &'a [u8] {
        &self.doc[m.value.clone()]
    }
}

struct Parser<'a> {
    doc: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.doc.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), JsonError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn top_object(&mut self) -> Result<Vec<Member<'a>>, JsonError> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(members);
        }
        loop {
            self.ws();
            let key_range = self.string()?;
            let key = unescape(&self.doc[key_range.start + 1..key_range.end - 1])
                .ok_or(JsonError::Syntax)?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let start = self.pos;
            let kind = self.value(1)?;
            members.push(Member {
                key,
                value: start..self.pos,
                kind,
            });
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(members);
                }
                _ => return Err(JsonError::Syntax),
            }
        }
    }

    /// Parses one value at nesting `depth` (the top object is depth 1).
    fn value(&mut self, depth: usize) -> Result<Kind, JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| Kind::String),
            Some(b'{') => {
                if depth + 1 > MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Kind::Object);
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Kind::Object);
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
            }
            Some(b'[') => {
                if depth + 1 > MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Kind::Array);
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Kind::Array);
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
            }
            Some(b't') => self.literal(b"true", Kind::Bool),
            Some(b'f') => self.literal(b"false", Kind::Bool),
            Some(b'n') => self.literal(b"null", Kind::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(JsonError::Syntax),
        }
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<Kind, JsonError> {
        if self.doc[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(kind)
        } else {
            Err(JsonError::Syntax)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Kind, JsonError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(JsonError::Syntax),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(JsonError::Syntax);
            }
        }
        Ok(Kind::Number)
    }

    /// A string token; returns its byte range including the quotes.
    fn string(&mut self) -> Result<std::ops::Range<usize>, JsonError> {
        let start = self.pos;
        self.expect(b'"')?;
        loop {
            match self.peek() {
                None => return Err(JsonError::Syntax),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(start..self.pos);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let hex = self
                                .doc
                                .get(self.pos + 1..self.pos + 5)
                                .ok_or(JsonError::Syntax)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(JsonError::Syntax);
                            }
                            self.pos += 5;
                        }
                        _ => return Err(JsonError::Syntax),
                    }
                }
                Some(c) if c < 0x20 => return Err(JsonError::Syntax),
                Some(_) => self.pos += 1,
            }
        }
    }
}

/// Unescapes the inside of a JSON string (already validated). `None` for a
/// lone surrogate, which no JSON parser agrees on.
pub fn unescape(s: &[u8]) -> Option<Cow<'_, str>> {
    if !s.contains(&b'\\') {
        return std::str::from_utf8(s).ok().map(Cow::Borrowed);
    }
    let text = std::str::from_utf8(s).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hi = hex4(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex4(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                out.push(char::from_u32(code)?);
            }
            _ => return None,
        }
    }
    Some(Cow::Owned(out))
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_top_level_members_with_unescaped_keys() {
        let doc = br#" {"integration":"slack","credential\u0049d":"abc","n":1.50e3,"o":{"credentialId":"x"},"a":[1,{"b":null}],"t":true} "#;
        let t = TopObject::parse(doc).unwrap();
        let keys: Vec<&str> = t.members.iter().map(|m| m.key.as_ref()).collect();
        assert_eq!(
            keys,
            vec!["integration", "credentialId", "n", "o", "a", "t"]
        );
        assert_eq!(t.all("credentialId").count(), 1, "nested keys do not count");
        let m = t.all("credentialId").next().unwrap();
        assert_eq!(t.string_value(m).as_deref(), Some("abc"));
        assert_eq!(&doc[t.members[2].value.clone()], b"1.50e3");
    }

    #[test]
    fn replacing_keeps_every_other_byte() {
        let doc = br#"{"credentialId" : "old", "big": 12345678901234567890123, "f": 1.0}"#;
        let t = TopObject::parse(doc).unwrap();
        let out = t.with_string("credentialId", "new-id");
        assert_eq!(
            out,
            br#"{"credentialId" : "new-id", "big": 12345678901234567890123, "f": 1.0}"#
        );
    }

    #[test]
    fn adding_inserts_first() {
        let t = TopObject::parse(br#"{"integration":"slack"}"#).unwrap();
        assert_eq!(
            t.with_string("credentialId", "c"),
            br#"{"credentialId":"c","integration":"slack"}"#
        );
        let empty = TopObject::parse(b" { } ").unwrap();
        assert_eq!(
            empty.with_string("credentialId", "c"),
            br#" {"credentialId":"c" } "#
        );
    }

    #[test]
    fn duplicates_are_visible() {
        let t = TopObject::parse(br#"{"credentialId":"a","credentialId":"a"}"#).unwrap();
        assert_eq!(t.all("credentialId").count(), 2);
    }

    #[test]
    fn invalid_documents_are_refused() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{'a':1}",
            b"{\"a\":01}",
            b"{\"a\":1.}",
            b"{\"a\":-}",
            b"{\"a\":tru}",
            b"{\"a\":\"\x01\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\u12\"}",
            b"{} {}",
            b"{\"a\":1} x",
            b"{\"a\":[1,]}",
            b"{\"a\":NaN}",
        ] {
            assert_eq!(
                TopObject::parse(bad).map(|_| ()),
                Err(JsonError::Syntax),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            TopObject::parse(b"[1]").map(|_| ()),
            Err(JsonError::NotObject)
        );
        assert_eq!(
            TopObject::parse(b"\"s\"").map(|_| ()),
            Err(JsonError::NotObject)
        );
        assert_eq!(
            TopObject::parse(b"{\"a\":\"\xff\"}").map(|_| ()),
            Err(JsonError::Utf8)
        );
    }

    #[test]
    fn lone_surrogates_in_keys_are_refused() {
        assert!(TopObject::parse(br#"{"\ud800":1}"#).is_err());
        let ok = TopObject::parse(br#"{"\ud83d\ude00":1}"#).unwrap();
        assert_eq!(ok.members[0].key, "\u{1F600}");
    }

    #[test]
    fn depth_is_capped_at_64() {
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(63), "]".repeat(63));
        assert!(TopObject::parse(ok.as_bytes()).is_ok());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(64), "]".repeat(64));
        assert_eq!(
            TopObject::parse(deep.as_bytes()).map(|_| ()),
            Err(JsonError::TooDeep)
        );
        let very_deep = format!("{{\"a\":{}", "[".repeat(100_000));
        assert_eq!(
            TopObject::parse(very_deep.as_bytes()).map(|_| ()),
            Err(JsonError::TooDeep)
        );
    }
}
