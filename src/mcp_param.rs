//! `x-mcp-header` (MCP 2026-07-28, Streamable HTTP): a tool may ask that some of its arguments be
//! mirrored into `Mcp-Param-{Name}` headers, so that load balancers and gateways can route on them
//! without reading the body. The proxy reads the annotations of each tool (a tool with invalid ones is
//! not listed, as the spec asks of clients), checks the headers a 2026-07-28 client sends against the
//! call's arguments (`-32020` when they differ), and writes them on its own calls to 2026-07-28 HTTP
//! backends. Pure functions.

use crate::modern::{decode_header, encode_header};
use serde_json::Value;

/// An argument to mirror: the header's name part, and the chain of `properties` keys leading to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrored {
    pub name: String,
    path: Vec<String>,
}

/// The arguments a tool's `inputSchema` mirrors into headers, or why its annotations are invalid.
pub fn annotations(schema: &Value) -> Result<Vec<Mirrored>, String> {
    let mut found = Vec::new();
    collect(schema, &mut Vec::new(), &mut found)?;
    if count_annotations(schema) != found.len() {
        return Err("an x-mcp-header is not reachable through properties alone".into());
    }
    let mut names: Vec<String> = found.iter().map(|m| m.name.to_ascii_lowercase()).collect();
    names.sort();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err("two x-mcp-header values differ only in case".into());
    }
    Ok(found)
}

fn collect(schema: &Value, path: &mut Vec<String>, found: &mut Vec<Mirrored>) -> Result<(), String> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return Ok(()) };
    for (key, property) in properties {
        path.push(key.clone());
        if let Some(name) = property.get("x-mcp-header") {
            let name = name.as_str().filter(|n| is_token(n)).ok_or_else(|| format!("x-mcp-header {name} is not a header name"))?;
            let primitive = matches!(property.get("type").and_then(Value::as_str), Some("string" | "integer" | "boolean"));
            if !primitive {
                return Err(format!("x-mcp-header '{name}' is on '{key}', which is not a string, integer or boolean"));
            }
            found.push(Mirrored { name: name.to_owned(), path: path.clone() });
        }
        collect(property, path, found)?;
        path.pop();
    }
    Ok(())
}

/// Every `x-mcp-header` key anywhere in a schema, reachable or not.
fn count_annotations(schema: &Value) -> usize {
    match schema {
        Value::Object(map) => map.iter().map(|(k, v)| usize::from(k == "x-mcp-header") + count_annotations(v)).sum(),
        Value::Array(items) => items.iter().map(count_annotations).sum(),
        _ => 0,
    }
}

/// RFC 9110 `1*tchar`.
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The argument a mirrored parameter reads, when the call has one (null counts as none).
fn value_at<'a>(mirrored: &Mirrored, arguments: &'a Value) -> Option<&'a Value> {
    mirrored.path.iter().try_fold(arguments, |at, key| at.get(key)).filter(|v| !v.is_null())
}

/// A primitive argument as a header value, before encoding.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The headers a call with these arguments carries: `Mcp-Param-{Name}` and the encoded value.
pub fn headers(mirrored: &[Mirrored], arguments: &Value) -> Vec<(String, String)> {
    let text = |m: &Mirrored| value_at(m, arguments).and_then(as_text);
    mirrored.iter().filter_map(|m| text(m).map(|t| (format!("Mcp-Param-{}", m.name), encode_header(&t)))).collect()
}

/// Checks the `Mcp-Param-*` headers a request came with against its arguments: every mirrored argument
/// present must have its header, equal once decoded (integers compared as numbers).
pub fn check<'h>(mirrored: &[Mirrored], arguments: &Value, header: impl Fn(&str) -> Option<&'h str>) -> Result<(), String> {
    for m in mirrored {
        let sent = header(&format!("mcp-param-{}", m.name.to_ascii_lowercase()));
        let Some(value) = value_at(m, arguments) else { continue };
        let Some(sent) = sent else { return Err(format!("the Mcp-Param-{} header is missing", m.name)) };
        let decoded = decode_header(sent).ok_or_else(|| format!("the Mcp-Param-{} header does not decode", m.name))?;
        let equal = match value {
            Value::Number(n) => decoded.parse::<i64>().ok().zip(n.as_i64()).is_some_and(|(a, b)| a == b),
            other => as_text(other).as_deref() == Some(decoded.as_str()),
        };
        if !equal {
            return Err(format!("the Mcp-Param-{} header does not match the argument", m.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({ "type": "object", "properties": {
            "region": { "type": "string", "x-mcp-header": "Region" },
            "limits": { "type": "object", "properties": { "rows": { "type": "integer", "x-mcp-header": "Rows" } } },
            "query": { "type": "string" }
        } })
    }

    #[test]
    fn annotated_arguments_are_mirrored_and_absent_or_null_ones_are_not() {
        let mirrored = annotations(&schema()).unwrap();
        let args = json!({ "region": "us-west1", "limits": { "rows": 5 }, "query": "x" });
        assert_eq!(headers(&mirrored, &args), [("Mcp-Param-Region".into(), "us-west1".into()), ("Mcp-Param-Rows".into(), "5".into())]);
        assert!(headers(&mirrored, &json!({ "region": null })).is_empty());
    }

    #[test]
    fn a_value_that_is_not_plain_ascii_goes_in_base64() {
        let mirrored = annotations(&schema()).unwrap();
        let sent = headers(&mirrored, &json!({ "region": "Hello, 世界" }));
        assert_eq!(sent[0].1, "=?base64?SGVsbG8sIOS4lueVjA==?=");
    }

    #[test]
    fn headers_that_match_the_arguments_pass_and_others_are_refused() {
        let mirrored = annotations(&schema()).unwrap();
        let args = json!({ "region": "eu", "limits": { "rows": 5 } });
        let sent = |region: Option<&'static str>, rows: Option<&'static str>| {
            move |name: &str| match name {
                "mcp-param-region" => region,
                "mcp-param-rows" => rows,
                _ => None,
            }
        };
        assert_eq!(check(&mirrored, &args, sent(Some("eu"), Some("05"))), Ok(()), "integers compare as numbers");
        assert!(check(&mirrored, &args, sent(Some("us"), Some("5"))).is_err());
        assert!(check(&mirrored, &args, sent(None, Some("5"))).unwrap_err().contains("missing"));
        assert_eq!(check(&mirrored, &json!({}), sent(None, None)), Ok(()), "nothing to mirror, nothing expected");
    }

    #[test]
    fn annotations_outside_properties_or_on_non_primitives_or_repeated_make_the_tool_invalid() {
        let in_items = json!({ "properties": { "list": { "type": "array", "items": { "x-mcp-header": "Item", "type": "string" } } } });
        assert!(annotations(&in_items).is_err());
        let on_number = json!({ "properties": { "n": { "type": "number", "x-mcp-header": "N" } } });
        assert!(annotations(&on_number).is_err());
        let twice =
            json!({ "properties": { "a": { "type": "string", "x-mcp-header": "X" }, "b": { "type": "string", "x-mcp-header": "x" } } });
        assert!(annotations(&twice).is_err());
        let bad_name = json!({ "properties": { "a": { "type": "string", "x-mcp-header": "Bad Name" } } });
        assert!(annotations(&bad_name).is_err());
    }
}
