//! Log lines on stderr: `2026-11-25T07:14:22Z INFO message`, with secrets masked, and the most recent
//! lines kept in memory for the admin page.
//!
//! stderr only, always: in stdio mode stdout is the MCP channel, and one stray log line there breaks
//! strict clients (the original proxy prints hundreds). The timestamp is formatted here because the
//! env_logger feature that does it pulls in a time crate for these few lines.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines kept for `GET /admin/logs`.
const KEEP: usize = 500;

static RECENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Starts logging with an env_logger filter such as `info` or `mcp_proxy_server=debug`. Every
/// occurrence of a secret (API keys, tokens, the admin password) in a line is replaced by `***`.
/// With `json`, each line is an object: `{"ts", "level", "msg"}`, plus `"backend"` when the message
/// is about one (it starts with `[key]`).
pub fn init(filter: &str, json: bool, secrets: Vec<String>) {
    add_secrets(secrets);
    env_logger::Builder::new()
        .parse_filters(filter)
        .target(env_logger::Target::Stderr)
        .format(move |out, record| {
            let (ts, level, msg) = (utc_now(), record.level(), mask(&record.args().to_string()));
            let text = format!("{ts} {level:<5} {msg}");
            remember(&text);
            if json {
                writeln!(out, "{}", json_line(&ts, level.as_str(), &msg))
            } else {
                writeln!(out, "{text}")
            }
        })
        .init();
}

fn json_line(ts: &str, level: &str, msg: &str) -> String {
    let mut line = serde_json::json!({ "ts": ts, "level": level, "msg": msg });
    let backend = msg.strip_prefix('[').and_then(|rest| rest.split_once(']')).map(|(key, _)| key);
    if let Some(backend) = backend {
        line["backend"] = serde_json::Value::from(backend);
    }
    line.to_string()
}

/// The most recent log lines, oldest first.
pub fn recent() -> Vec<String> {
    RECENT.lock().map(|lines| lines.iter().cloned().collect()).unwrap_or_default()
}

fn remember(line: &str) {
    if let Ok(mut lines) = RECENT.lock() {
        if lines.len() == KEEP {
            lines.pop_front();
        }
        lines.push_back(line.to_owned());
    }
}

/// More values to mask from now on (the credentials of remote backends, as configs are loaded).
/// Values shorter than 4 characters are not masked: they would garble ordinary words.
pub fn add_secrets(secrets: impl IntoIterator<Item = String>) {
    let mut known = SECRETS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for secret in secrets.into_iter().filter(|s| s.len() >= 4) {
        if !known.contains(&secret) {
            known.push(secret);
        }
    }
}

/// Replaces every configured secret in `text` with `***`.
pub fn mask(text: &str) -> String {
    let mut masked = text.to_owned();
    let secrets = SECRETS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for secret in secrets.iter() {
        if masked.contains(secret.as_str()) {
            masked = masked.replace(secret.as_str(), "***");
        }
    }
    masked
}

fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn json_lines_name_the_backend() {
        let line: serde_json::Value = serde_json::from_str(&super::json_line("t", "INFO", "[time] ready")).unwrap();
        assert_eq!(
            (line["level"].as_str(), line["backend"].as_str(), line["msg"].as_str()),
            (Some("INFO"), Some("time"), Some("[time] ready"))
        );
    }

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
    }
}
