//! Secrets in `mcp_server.json` are never sent to the browser: `GET /admin/config` masks them, and a
//! masked value saved back (the UI posts the whole file) keeps the value stored in the file.
//!
//! Secret are a server's `apiKey`, `bearerToken`, `oauth.clientSecret`, `headers` values and `env`
//! values, and a profile's `keys` and `tokens`. (OAuth tokens are not in the config at all: they are in
//! `oauth_tokens.json`, which the admin API never serves.) A value that is only a `${VAR}` reference holds no secret (the file names the
//! variable, not its value) and is shown.

use serde_json::{Map, Value};

/// What a secret is shown as.
pub const MASK: &str = "********";

/// The secret places of one server entry: fields holding one secret, and maps whose values are.
const SECRET_FIELDS: [&str; 2] = ["apiKey", "bearerToken"];
const SECRET_MAPS: [&str; 2] = ["headers", "env"];

/// Replaces every secret of the config's servers with [`MASK`], and each of a profile's keys and tokens
/// with [`MASK`] and its number in its list (`********2`), so that it still names its stored value
/// when the list around it changes; true when anything was masked.
pub fn mask(config: &mut Value) -> bool {
    let mut masked = false;
    for_each_secret(config, &mut |value, place| {
        if !is_reference(value) {
            let number = list_index(place).map(|i| (i + 1).to_string()).unwrap_or_default();
            *value = Value::String(format!("{MASK}{number}"));
            masked = true;
        }
    });
    masked
}

/// The index of a secret in a profile's list (`profiles`, name, `keys`, index), if it is one.
fn list_index(place: &[&str]) -> Option<usize> {
    match place {
        ["profiles", _, _, index] => index.parse().ok(),
        _ => None,
    }
}

/// Puts the stored value back wherever a posted config holds [`MASK`] in a secret place (for a
/// profile's key or token, the one its number names); a mask with no stored value behind it (a new
/// server, a renamed header or profile, a bare mask in a list) is an error naming its place.
pub fn unmask(posted: &mut Value, stored: &Value) -> Result<(), Vec<String>> {
    let mut missing = Vec::new();
    for_each_secret(posted, &mut |value, place| {
        let Some(number) = value.as_str().and_then(|v| v.strip_prefix(MASK)) else { return };
        let original = match (list_index(place), number) {
            (None, "") => lookup(stored, place),
            // The entry of the stored list its number names.
            (Some(_), number) => number.parse::<usize>().ok().and_then(|n| n.checked_sub(1)).and_then(|index| {
                let list = lookup(stored, &place[..place.len() - 1])?;
                list.get(index)
            }),
            (None, _) => return,
        };
        match original {
            Some(original) => *value = original.clone(),
            None => {
                missing.push(format!("{} is '{}' (a masked secret) but it names no stored value: enter it again", place.join("."), value))
            }
        }
    });
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Calls `f` on every secret string of `mcpServers` and `profiles`, with its place (`mcpServers`, key,
/// field[, name]; `profiles`, name, `keys` or `tokens`, index).
fn for_each_secret(config: &mut Value, f: &mut dyn FnMut(&mut Value, &[&str])) {
    if let Some(profiles) = config.get_mut("profiles").and_then(Value::as_object_mut) {
        for (name, profile) in profiles.iter_mut() {
            for list in ["keys", "tokens"] {
                let Some(secrets) = profile.get_mut(list).and_then(Value::as_array_mut) else { continue };
                for (index, value) in secrets.iter_mut().enumerate().filter(|(_, v)| v.is_string()) {
                    f(value, &["profiles", name, list, &index.to_string()]);
                }
            }
        }
    }
    let Some(servers) = config.get_mut("mcpServers").and_then(Value::as_object_mut) else { return };
    for (key, entry) in servers.iter_mut() {
        let Some(entry) = entry.as_object_mut() else { continue };
        for field in SECRET_FIELDS {
            if let Some(value) = entry.get_mut(field).filter(|v| v.is_string()) {
                f(value, &["mcpServers", key, field]);
            }
        }
        if let Some(secret) = entry.get_mut("oauth").and_then(|o| o.get_mut("clientSecret")).filter(|v| v.is_string()) {
            f(secret, &["mcpServers", key, "oauth", "clientSecret"]);
        }
        for map in SECRET_MAPS {
            let Some(values) = entry.get_mut(map).and_then(Value::as_object_mut) else { continue };
            for (name, value) in values.iter_mut().filter(|(_, v)| v.is_string()) {
                f(value, &["mcpServers", key, map, name]);
            }
        }
    }
}

fn lookup<'a>(config: &'a Value, place: &[&str]) -> Option<&'a Value> {
    place.iter().try_fold(config, |value, step| match value {
        Value::Array(items) => items.get(step.parse::<usize>().ok()?),
        _ => value.as_object().and_then(|o: &Map<String, Value>| o.get(*step)),
    })
}

/// A value that is exactly `${NAME}`.
fn is_reference(value: &Value) -> bool {
    let Some(name) = value.as_str().and_then(|s| s.strip_prefix("${")).and_then(|s| s.strip_suffix('}')) else { return false };
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({ "mcpServers": {
            "remote": { "url": "https://x/mcp", "apiKey": "k-123", "bearerToken": "${TOKEN}", "headers": { "X-Secret": "h-456" } },
            "hosted": { "type": "http", "url": "https://y/mcp", "oauth": { "clientId": "c", "clientSecret": "cs-789" } },
            "local": { "command": "node", "env": { "OPENAI_API_KEY": "sk-789" } },
        } })
    }

    #[test]
    fn secrets_are_masked_and_references_and_other_fields_are_not() {
        let mut shown = config();
        assert!(mask(&mut shown));
        let text = shown.to_string();
        for secret in ["k-123", "h-456", "sk-789", "cs-789"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(shown["mcpServers"]["remote"]["bearerToken"], "${TOKEN}");
        assert_eq!(shown["mcpServers"]["remote"]["url"], "https://x/mcp");
        assert_eq!(shown["mcpServers"]["local"]["env"]["OPENAI_API_KEY"], MASK);
        assert_eq!(shown["mcpServers"]["hosted"]["oauth"], json!({ "clientId": "c", "clientSecret": MASK }));
    }

    #[test]
    fn a_profiles_keys_and_tokens_are_masked_by_number_and_kept_when_saved_back() {
        let stored = json!({ "mcpServers": {}, "profiles": { "p": { "keys": ["k-1", "${KEY}"], "tokens": ["t-1"] } } });
        let mut shown = stored.clone();
        assert!(mask(&mut shown));
        assert_eq!(shown["profiles"]["p"], json!({ "keys": ["********1", "${KEY}"], "tokens": ["********1"] }));
        unmask(&mut shown, &stored).expect("every mask has a stored value");
        assert_eq!(shown, stored);
    }

    #[test]
    fn a_masked_key_names_its_own_stored_key_when_one_before_it_is_removed() {
        let stored = json!({ "mcpServers": {}, "profiles": { "p": { "keys": ["k1", "k2"] } } });
        let mut posted = json!({ "mcpServers": {}, "profiles": { "p": { "keys": ["********2", "k3"] } } });
        unmask(&mut posted, &stored).expect("the mask names a stored key");
        assert_eq!(posted["profiles"]["p"]["keys"], json!(["k2", "k3"]));
    }

    #[test]
    fn a_bare_mask_in_a_profiles_list_is_refused_since_it_names_no_key() {
        let stored = json!({ "mcpServers": {}, "profiles": { "p": { "keys": ["k1", "k2"] } } });
        let mut posted = json!({ "mcpServers": {}, "profiles": { "p": { "keys": [MASK] } } });
        let problems = unmask(&mut posted, &stored).unwrap_err();
        assert!(problems[0].contains("profiles.p.keys"), "{problems:?}");
    }

    #[test]
    fn a_config_without_secrets_is_not_masked() {
        assert!(!mask(&mut json!({ "mcpServers": { "a": { "command": "x" } } })));
    }

    #[test]
    fn masked_values_saved_back_keep_the_stored_values_and_new_values_replace_them() {
        let stored = config();
        let mut posted = stored.clone();
        mask(&mut posted);
        posted["mcpServers"]["remote"]["apiKey"] = json!("k-new");
        unmask(&mut posted, &stored).expect("every mask has a stored value");
        let mut expected = config();
        expected["mcpServers"]["remote"]["apiKey"] = json!("k-new");
        assert_eq!(posted, expected);
    }

    #[test]
    fn a_mask_with_nothing_stored_at_its_place_is_an_error_naming_it() {
        let mut posted = json!({ "mcpServers": { "new": { "url": "https://y", "headers": { "Authorization": MASK } } } });
        let problems = unmask(&mut posted, &config()).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("mcpServers.new.headers.Authorization"), "{problems:?}");
    }
}
