//! `tool_config.json`: per-tool overrides, in the original proxy's format.
//!
//! `{"tools": {"<serverKey><sep><tool>": {"enabled": false, "exposedName": "...", "exposedDescription": "..."}}}`.
//! The README of the original documents `displayName` and `description` while its code reads
//! `exposedName` and `exposedDescription`; both spellings are accepted here. The key always uses the
//! server's key (not its `namespace`), so overrides survive a change of namespace.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

use crate::config::ConfigError;

/// One tool's override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOverride {
    pub enabled: bool,
    pub exposed_name: Option<String>,
    pub exposed_description: Option<String>,
}

impl Default for ToolOverride {
    fn default() -> Self {
        ToolOverride { enabled: true, exposed_name: None, exposed_description: None }
    }
}

/// Per-tool overrides by `<serverKey><sep><tool>`.
pub type Overrides = BTreeMap<String, ToolOverride>;

/// All overrides, by `<serverKey><sep><tool>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolConfig {
    pub tools: Overrides,
    /// Entries that could not be used, each naming the file and the key.
    pub problems: Vec<String>,
}

/// Reads the file; a missing file means no overrides.
pub fn load(path: &Path) -> Result<ToolConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ToolConfig::default()),
        Err(source) => Err(ConfigError::Read { path: path.into(), source }),
    }
}

pub fn parse(text: &str, path: &Path) -> Result<ToolConfig, ConfigError> {
    let root: Value = serde_json::from_str(text).map_err(|source| ConfigError::Syntax { path: path.into(), source })?;
    let shape = |problem: &str| ConfigError::Shape { path: path.into(), problem: problem.into() };
    let entries = match root.as_object().map(|o| o.get("tools")) {
        None => return Err(shape("the file must hold a JSON object")),
        Some(None) => return Ok(ToolConfig::default()),
        Some(Some(Value::Object(entries))) => entries,
        Some(Some(_)) => return Err(shape("'tools' must be an object of tool overrides")),
    };
    let mut config = ToolConfig::default();
    for (key, entry) in entries {
        match parse_entry(entry) {
            Ok(o) => {
                config.tools.insert(key.clone(), o);
            }
            Err(problem) => config.problems.push(format!("{}: tool '{key}': {problem}", path.display())),
        }
    }
    Ok(config)
}

fn parse_entry(entry: &Value) -> Result<ToolOverride, String> {
    let obj = entry.as_object().ok_or("the entry must be a JSON object")?;
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("'enabled' must be true or false, not {other}")),
    };
    Ok(ToolOverride {
        enabled,
        exposed_name: text(obj, &["exposedName", "displayName"])?,
        exposed_description: text(obj, &["exposedDescription", "description"])?,
    })
}

/// The first of `names` present, as a non-empty string.
fn text(obj: &Map<String, Value>, names: &[&str]) -> Result<Option<String>, String> {
    for name in names {
        match obj.get(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if s.trim().is_empty() => continue,
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(other) => return Err(format!("'{name}' must be a string, not {other}")),
        }
    }
    Ok(None)
}

/// True for names every client we know accepts: `^[a-zA-Z0-9_-]{1,64}$`.
pub fn is_portable_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A name of at most 64 bytes for one that is longer: its first 55 bytes, `_`, and 8 hex digits of a
/// hash of the whole name, so distinct long names stay distinct and the result never changes.
pub fn shorten(name: &str) -> String {
    let mut cut = 55;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}", &name[..cut], fnv1a(name.as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> ToolConfig {
        parse(text, Path::new("tool_config.json")).unwrap()
    }

    #[test]
    fn original_keys_are_read() {
        let c = parse_ok(r#"{"tools": {"a__x": {"enabled": false}, "a__y": {"exposedName": "why", "exposedDescription": "d"}}}"#);
        assert!(!c.tools["a__x"].enabled);
        assert_eq!(c.tools["a__y"].exposed_name.as_deref(), Some("why"));
        assert_eq!(c.tools["a__y"].exposed_description.as_deref(), Some("d"));
    }

    #[test]
    fn readme_aliases_are_accepted() {
        let c = parse_ok(r#"{"tools": {"a__y": {"displayName": "why", "description": "d"}}}"#);
        assert_eq!(c.tools["a__y"].exposed_name.as_deref(), Some("why"));
        assert_eq!(c.tools["a__y"].exposed_description.as_deref(), Some("d"));
    }

    #[test]
    fn bad_entry_is_reported_with_file_and_key() {
        let c = parse_ok(r#"{"tools": {"a__x": {"enabled": "no"}}}"#);
        assert!(c.tools.is_empty());
        assert_eq!(c.problems, ["tool_config.json: tool 'a__x': 'enabled' must be true or false, not \"no\""]);
    }

    #[test]
    fn file_without_tools_means_no_overrides() {
        assert!(parse_ok("{}").tools.is_empty());
    }

    #[test]
    fn tools_of_the_wrong_type_stop_the_load() {
        assert!(parse(r#"{"tools": []}"#, Path::new("t.json")).is_err());
    }

    #[test]
    fn portable_names() {
        assert!(is_portable_name("server__get-time_2"));
        assert!(!is_portable_name("has space"));
        assert!(!is_portable_name("dot.name"));
        assert!(!is_portable_name(&"x".repeat(65)));
    }

    #[test]
    fn shortening_is_deterministic_and_distinct() {
        let a = format!("{}a", "x".repeat(70));
        let b = format!("{}b", "x".repeat(70));
        assert_eq!(shorten(&a).len(), 64);
        assert_eq!(shorten(&a), shorten(&a));
        assert_ne!(shorten(&a), shorten(&b));
        assert!(is_portable_name(&shorten(&a)));
    }
}
