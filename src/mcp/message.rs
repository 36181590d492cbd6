//! One JSON-RPC 2.0 message as `/mcp` reads it (contract §12): what
//! credgate acts on parsed, a tool call's `arguments` kept as the raw JSON
//! they arrived as. Arguments are only ever judged by name (`credential`)
//! and passed on, so they are never built into a tree: each value is a
//! slice of the body, written into the internal request as it came.
//!
//! Read as `serde_json::Map` reads an object: a member given twice counts
//! once, the last one. This room knows JSON-RPC's shape and nothing of
//! what the methods do.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A message: its members, `params` apart.
#[derive(Debug, Default)]
pub(super) struct Message<'a> {
    /// Every member but `params`.
    pub members: Map<String, Value>,
    /// `params`, when it is an object (anything else counts as none).
    pub params: Option<Params<'a>>,
}

/// A message's `params` object: its members, `arguments` apart.
#[derive(Debug, Default)]
pub(super) struct Params<'a> {
    /// Every member but `arguments`.
    pub members: Map<String, Value>,
    /// `arguments` as sent (any JSON value; `tools/call` wants an object).
    pub arguments: Option<&'a RawValue>,
}

/// A tool call's arguments: each member's value as sent, by name.
pub(super) type Arguments<'a> = BTreeMap<Key<'a>, &'a RawValue>;

/// An object member's name: borrowed from the body unless it carried an
/// escape.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key<'a>(pub Cow<'a, str>);

impl<'a> Message<'a> {
    /// Parses one message; `Err` when the body is not JSON. A JSON value
    /// that is not an object is `Ok(None)`.
    pub fn parse(raw: &'a [u8]) -> Result<Option<Message<'a>>, serde_json::Error> {
        let value: &RawValue = serde_json::from_slice(raw)?;
        if !is_object(value) {
            return Ok(None);
        }
        serde_json::from_str(value.get()).map(Some)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.members.get(key)
    }

    /// A member's text, when it is a string.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl<'a> Params<'a> {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.members.get(key)
    }

    /// `arguments` as an object (absent or null: empty); `Err` for any
    /// other value.
    pub fn arguments(&self) -> Result<Arguments<'a>, ()> {
        match self.arguments {
            None => Ok(Arguments::new()),
            Some(raw) if raw.get() == "null" => Ok(Arguments::new()),
            Some(raw) if is_object(raw) => serde_json::from_str(raw.get()).map_err(|_| ()),
            Some(_) => Err(()),
        }
    }
}

/// Whether a raw JSON value is an object (serde_json's raw values carry no
/// surrounding whitespace).
fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Message<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MessageVisitor;
        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = Message<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON-RPC message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
                let mut out = Message::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if key.0 == "params" {
                        let raw: &'de RawValue = map.next_value()?;
                        out.params = if is_object(raw) {
                            Some(serde_json::from_str(raw.get()).map_err(de::Error::custom)?)
                        } else {
                            None
                        };
                    } else {
                        let v: Value = map.next_value()?;
                        out.members.insert(key.0.into_owned(), v);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(MessageVisitor)
    }
}

impl<'de> Deserialize<'de> for Params<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;
        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = Params<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params<'de>, A::Error> {
                let mut out = Params::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if key.0 == "arguments" {
                        out.arguments = Some(map.next_value()?);
                    } else {
                        let v: Value = map.next_value()?;
                        out.members.insert(key.0.into_owned(), v);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(ParamsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message as `serde_json::Map` reads it, for comparison.
    fn as_map(raw: &str) -> Map<String, Value> {
        serde_json::from_str(raw).unwrap()
    }

    #[test]
    fn reads_a_message_as_a_map_does_with_arguments_raw() {
        let raw = r#" {"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"T","arguments":{"credential":"c","q\u0041":[1, 2],"credential":"d"},"_meta":{"v":1}}} "#;
        let m = Message::parse(raw.as_bytes()).unwrap().unwrap();
        let whole = as_map(raw);
        assert_eq!(m.get("id"), whole.get("id"));
        assert_eq!(m.text("method"), Some("tools/call"));
        assert_eq!(m.text("jsonrpc"), Some("2.0"));
        assert!(m.get("params").is_none());
        let p = m.params.as_ref().unwrap();
        assert_eq!(p.get("name"), whole["params"].get("name"));
        assert_eq!(p.get("_meta"), whole["params"].get("_meta"));
        let args = p.arguments().unwrap();
        // The last of a repeated member, as a map reads it; escaped names
        // decoded; values as sent.
        let keys: Vec<_> = args.keys().map(|k| k.0.as_ref()).collect();
        assert_eq!(keys, ["credential", "qA"]);
        assert_eq!(args[&Key("credential".into())].get(), r#""d""#);
        assert_eq!(args[&Key("qA".into())].get(), "[1, 2]");
        let back: Value = serde_json::from_str(args[&Key("qA".into())].get()).unwrap();
        assert_eq!(back, whole["params"]["arguments"]["qA"]);
    }

    #[test]
    fn params_and_arguments_that_are_not_objects() {
        for raw in [
            r#"{"params":[1]}"#,
            r#"{"params":null}"#,
            r#"{"params":"x"}"#,
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
        assert_eq!(args(r#"{"params":{"arguments":{}}}"#), Ok(0));
        assert_eq!(args(r#"{"params":{"arguments":[]}}"#), Err(()));
        assert_eq!(args(r#"{"params":{"arguments":"{}"}}"#), Err(()));
        // A repeated `params`: the last.
        let m = Message::parse(br#"{"params":{"name":"a"},"params": {"name":"b"}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(m.params.unwrap().get("name"), Some(&Value::from("b")));
    }

    #[test]
    fn not_json_or_not_an_object() {
        assert!(Message::parse(b"{").is_err());
        assert!(Message::parse(b"").is_err());
        assert!(Message::parse(b"{} x").is_err());
        assert!(Message::parse(b"[{}]").unwrap().is_none());
        assert!(Message::parse(b"3").unwrap().is_none());
        // Invalid JSON inside params or arguments is the body's error.
        assert!(Message::parse(br#"{"params":{"arguments":{"a":}}}"#).is_err());
    }
}
