//! A JSON-RPC result written as JSON once (contract §12): a tool call's
//! result is written around Paragon's answer as it came, instead of built
//! as a `serde_json::Value` tree and written again, and the response
//! (`rpc`) copies it in. It knows nothing of sessions, tools or the
//! gateway.

use serde_json::value::RawValue;
use serde_json::Value;

/// A result already written as JSON (a JSON object): a tool call's result
/// is written once, around Paragon's answer as it came, instead of built as
/// a `Value` tree and written again. Only this module and the writers here
/// make one, so it is not parsed again to be checked.
pub(super) struct RawResult(String);

impl RawResult {
    /// A result built as a `Value` (the rarer answers).
    pub(super) fn of(v: &Value) -> RawResult {
        RawResult(serde_json::to_string(v).unwrap_or_else(|_| "{}".into()))
    }

    /// What a writer of this crate put in `out`: one JSON object, written
    /// with serde_json's escaping.
    pub(super) fn written(out: Vec<u8>) -> RawResult {
        RawResult(String::from_utf8(out).unwrap_or_else(|_| "{}".into()))
    }

    pub(super) fn get(&self) -> &str {
        &self.0
    }

    /// The object with `"name":value` (`value` JSON already) as its first
    /// member. The results this is used on do not have `name`.
    pub(super) fn with_first_member(self, name: &str, value: &str) -> RawResult {
        let text = self.get();
        let Some(rest) = text.strip_prefix('{') else {
            return self;
        };
        let mut out = String::with_capacity(text.len() + name.len() + value.len() + 4);
        out.push('{');
        out.push_str(&Value::from(name).to_string());
        out.push(':');
        out.push_str(value);
        if !rest.trim_start().starts_with('}') {
            out.push(',');
        }
        out.push_str(rest);
        RawResult::written(out.into_bytes())
    }
}

pub(super) fn tool_error(text: String) -> RawResult {
    tool_text(&text, true, None)
}

/// `{"content":[{"type":"text","text":TEXT}],"isError":IS_ERROR}`, with
/// `structuredContent` (a JSON object, as written) when given: the result
/// written in one pass, Paragon's answer copied in as it came.
fn tool_text(text: &str, is_error: bool, structured: Option<&RawValue>) -> RawResult {
    let mut out = Vec::with_capacity(64 + 2 * text.len());
    out.extend_from_slice(br#"{"content":[{"type":"text","text":"#);
    let _ = serde_json::to_writer(&mut out, text);
    out.extend_from_slice(br#"}],"isError":"#);
    out.extend_from_slice(if is_error { b"true" } else { b"false" });
    if let Some(v) = structured {
        out.extend_from_slice(br#","structuredContent":"#);
        out.extend_from_slice(v.get().as_bytes());
    }
    out.push(b'}');
    RawResult::written(out)
}

/// A success: the text as it came, and the same bytes as structured
/// content when they are one JSON object (checked whole, not built).
pub(super) fn success_result(raw: &[u8]) -> RawResult {
    let structured = serde_json::from_slice::<&RawValue>(raw)
        .ok()
        .filter(|v| v.get().starts_with('{'));
    tool_text(&String::from_utf8_lossy(raw), false, structured)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_member_goes_first_in_any_object() {
        for (raw, want) in [
            (json!({}), json!({"resultType": "complete"})),
            (json!({"a": 1}), json!({"resultType": "complete", "a": 1})),
        ] {
            let got = RawResult::of(&raw).with_first_member("resultType", r#""complete""#);
            let got: Value = serde_json::from_str(got.get()).unwrap();
            assert_eq!(got, want);
        }
    }

    /// A tool result written in one pass reads back as the `Value` form
    /// it replaces: the text whole (escapes and all), structured content
    /// only for one JSON object, `isError` as given.
    #[test]
    fn written_results_read_back_as_their_json() {
        let cases: [(&[u8], Option<Value>); 6] = [
            (
                br#"{"records":[{"id":"1","name":"A \"q\" \u2028"}],"n":1.5e3}"#,
                None,
            ),
            (b" \n{\"a\": [1, 2, {\"b\": null}]}\t ", None),
            (b"[1,2,3]", Some(Value::Null)),
            (b"\"just a string\"", Some(Value::Null)),
            (b"{not json", Some(Value::Null)),
            (
                "caf\u{e9} \u{1}\u{7f} line\nbreak".as_bytes(),
                Some(Value::Null),
            ),
        ];
        for (raw, structured) in cases {
            let got: Value = serde_json::from_str(success_result(raw).get()).unwrap();
            let text = String::from_utf8_lossy(raw);
            assert_eq!(got["content"], json!([{"type": "text", "text": text}]));
            assert_eq!(got["isError"], json!(false));
            let want = structured.unwrap_or_else(|| serde_json::from_slice(raw).unwrap());
            assert_eq!(
                got.get("structuredContent").cloned().unwrap_or(Value::Null),
                want,
                "{text}"
            );
        }
        let err: Value = serde_json::from_str(tool_error("no \"way\"\n".into()).get()).unwrap();
        assert_eq!(
            err,
            json!({"content": [{"type": "text", "text": "no \"way\"\n"}], "isError": true})
        );
    }
}
