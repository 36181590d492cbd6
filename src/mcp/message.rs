//! One JSON-RPC 2.0 message as `/mcp` reads it (contract §12), in one
//! pass over the body: the members credgate acts on (`jsonrpc`, `id`,
//! `method`, and of `params` the tool's `name`, `protocolVersion`,
//! `_meta`), text borrowed from the body where it carries no escape, and
//! a tool call's `arguments` as the raw JSON of each member. Arguments are
//! only judged by name (`credential`) and passed on, so no tree is built
//! for them: each value is written into the internal request as it came.
//! Every other member is skipped unread.
//!
//! Read as a JSON object reads anywhere in credgate: a member given twice
//! counts once, the last one. A member credgate reads as text that is not
//! a string counts as absent. This room knows JSON-RPC's shape and nothing
//! of what the methods do.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// A message: what credgate reads of it.
#[derive(Debug, Default)]
pub(super) struct Message<'a> {
    pub jsonrpc: Option<Cow<'a, str>>,
    /// `id` when present (`null` too: that is a request's id).
    pub id: Option<Value>,
    pub method: Option<Cow<'a, str>>,
    /// `params`, when it is an object (anything else counts as none).
    pub params: Option<Params<'a>>,
}

/// What credgate reads of a message's `params` object.
#[derive(Debug)]
pub(super) struct Params<'a> {
    /// A tool call's tool.
    pub name: Option<Cow<'a, str>>,
    /// `initialize`'s requested version.
    pub protocol_version: Option<Cow<'a, str>>,
    /// `_meta`, when present.
    pub meta: Option<Value>,
    /// `arguments`: an object (absent or null: empty); `Err` for any other
    /// value.
    arguments: Result<Arguments<'a>, ()>,
}

impl Default for Params<'_> {
    fn default() -> Self {
        Params {
            name: None,
            protocol_version: None,
            meta: None,
            arguments: Ok(Arguments::new()),
        }
    }
}

/// A body that is not one JSON value.
#[derive(Debug)]
pub(super) struct NotJson;

/// A tool call's arguments: each member's value as sent, by name.
pub(super) type Arguments<'a> = BTreeMap<Key<'a>, &'a RawValue>;

/// An object member's name: borrowed from the body unless it carried an
/// escape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key<'a>(pub Cow<'a, str>);

impl<'a> Message<'a> {
    /// Parses one message; `Err` when the body is not JSON (UTF-8
    /// throughout, skipped members too). A JSON value that is not an
    /// object is `Ok(None)`.
    pub fn parse(raw: &'a [u8]) -> Result<Option<Message<'a>>, NotJson> {
        let text = std::str::from_utf8(raw).map_err(|_| NotJson)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let message = ObjectOrNot(MessageVisitor)
            .deserialize(&mut de)
            .map_err(|_| NotJson)?;
        de.end().map_err(|_| NotJson)?;
        Ok(message)
    }
}

impl<'a> Params<'a> {
    /// `arguments` as an object (absent or null: empty); `Err` for any
    /// other value.
    pub fn arguments(&self) -> Result<&Arguments<'a>, ()> {
        self.arguments.as_ref().map_err(|_| ())
    }
}

/// Deserializes an object with the visitor `V`, and anything else (read
/// through, unused) as `None`.
struct ObjectOrNot<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for ObjectOrNot<V> {
    type Value = Option<V::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(OrNot(self.0))
    }
}

struct OrNot<V>(V);

/// The visits of the JSON values a visitor reads through unused: an
/// array answers `$seq`, `null` answers `$null`, each scalar named answers
/// `$other`.
macro_rules! read_through {
    ($de:lifetime; seq: $seq:expr, null: $null:expr, $other:expr; $($name:ident: $t:ty),*) => {
        fn visit_seq<A: SeqAccess<$de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($seq)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($null)
        }
        $(fn $name<E: de::Error>(self, _: $t) -> Result<Self::Value, E> {
            Ok($other)
        })*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for OrNot<V> {
    type Value = Option<V::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map).map(Some)
    }
    read_through!('de; seq: None, null: None, None;
        visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
}

/// A member credgate reads as text: a string's, borrowed where it can be;
/// any other value (read through) counts as absent.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    read_through!('de; seq: None, null: None, None;
        visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64);
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A member's name is a string (borrowed where it has no escape).
        Text.deserialize(d)?
            .map(Key)
            .ok_or_else(|| de::Error::custom("a member name must be a string"))
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
        let mut out = Message::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "jsonrpc" => out.jsonrpc = map.next_value_seed(Text)?,
                "method" => out.method = map.next_value_seed(Text)?,
                "id" => out.id = Some(map.next_value()?),
                "params" => out.params = map.next_value_seed(ObjectOrNot(ParamsVisitor))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

struct ParamsVisitor;

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Params<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of parameters")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params<'de>, A::Error> {
        let mut out = Params::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &*key.0 {
                "name" => out.name = map.next_value_seed(Text)?,
                "protocolVersion" => out.protocol_version = map.next_value_seed(Text)?,
                "_meta" => out.meta = Some(map.next_value()?),
                "arguments" => out.arguments = map.next_value_seed(ArgumentsSeed)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// `arguments`: an object's members, each value raw; null: none; any
/// other value (read through): `Err`.
struct ArgumentsSeed;

impl<'de> DeserializeSeed<'de> for ArgumentsSeed {
    type Value = Result<Arguments<'de>, ()>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ArgumentsSeed {
    type Value = Result<Arguments<'de>, ()>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Arguments::new();
        while let Some((k, v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
            out.insert(k, v);
        }
        Ok(Ok(out))
    }
    read_through!('de; seq: Err(()), null: Ok(Arguments::new()), Err(());
        visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_credgate_acts_on_with_arguments_raw() {
        let raw = r#" {"jsonrpc":"2.0","id":7,"other":{"x":[1]},"method":"tools\/call","params":{"name":"T","arguments":{"credential":"c","q\u0041": [1, 2],"credential":"d"},"_meta":{"v":1}}} "#;
        let m = Message::parse(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(m.id, Some(Value::from(7)));
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.jsonrpc.as_deref(), Some("2.0"));
        let p = m.params.as_ref().unwrap();
        assert_eq!(p.name.as_deref(), Some("T"));
        assert_eq!(p.meta, Some(serde_json::json!({"v": 1})));
        let args = p.arguments().unwrap();
        // The last of a repeated member, as a JSON object reads it;
        // escaped names decoded; values as sent.
        let keys: Vec<_> = args.keys().map(|k| k.0.as_ref()).collect();
        assert_eq!(keys, ["credential", "qA"]);
        assert_eq!(args[&Key("credential".into())].get(), r#""d""#);
        assert_eq!(args[&Key("qA".into())].get(), "[1, 2]");
    }

    #[test]
    fn members_that_are_not_what_credgate_reads() {
        let m = Message::parse(br#"{"id":null,"method":3,"jsonrpc":{"a":"2.0"},"params":[1]}"#)
            .unwrap()
            .unwrap();
        // A null id is an id; text that is not a string is absent.
        assert_eq!(m.id, Some(Value::Null));
        assert_eq!((m.method, m.jsonrpc), (None, None));
        assert!(m.params.is_none());
        let m = Message::parse(br#"{"method":"a"}"#).unwrap().unwrap();
        assert_eq!(m.id, None, "no id: a notification");
        for raw in [
            r#"{"params":null}"#,
            r#"{"params":"x"}"#,
            r#"{"params":true}"#,
        ] {
            let m = Message::parse(raw.as_bytes()).unwrap().unwrap();
            assert!(m.params.is_none(), "{raw}");
        }
        let args = |raw: &str| {
            let m = Message::parse(raw.as_bytes()).unwrap().unwrap();
            m.params.unwrap().arguments().map(|a| a.len())
        };
        assert_eq!(args(r#"{"params":{}}"#), Ok(0));
        assert_eq!(args(r#"{"params":{"arguments":null}}"#), Ok(0));
        assert_eq!(args(r#"{"params": {"arguments": null}}"#), Ok(0));
        assert_eq!(args(r#"{"params": {"arguments": {"a": 1}}}"#), Ok(1));
        assert_eq!(args(r#"{"params":{"arguments":[]}}"#), Err(()));
        assert_eq!(args(r#"{"params":{"arguments":"{}"}}"#), Err(()));
        // A repeated member: the last.
        let m =
            Message::parse(br#"{"params":{"name":"a"},"params": {"name":"b"},"id":1,"id":"x"}"#)
                .unwrap()
                .unwrap();
        assert_eq!(m.params.unwrap().name.as_deref(), Some("b"));
        assert_eq!(m.id, Some(Value::from("x")));
    }

    #[test]
    fn not_json_or_not_an_object() {
        assert!(Message::parse(b"{").is_err());
        assert!(Message::parse(b"").is_err());
        assert!(Message::parse(b"{} x").is_err());
        assert!(Message::parse(b"[{}]").unwrap().is_none());
        assert!(Message::parse(b" 3 ").unwrap().is_none());
        assert!(Message::parse(b"null").unwrap().is_none());
        // Invalid JSON anywhere, read or skipped, is the body's error.
        assert!(Message::parse(br#"{"params":{"arguments":{"a":}}}"#).is_err());
        assert!(Message::parse(br#"{"other":[1,}"#).is_err());
        assert!(Message::parse(b"{\"a\":\"\xff\"}").is_err());
    }
}
