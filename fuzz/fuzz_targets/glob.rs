//! `config::glob_match` against a reference dynamic-programming matcher, for any pattern and text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::config::glob_match;

fn reference(pattern: &[char], text: &[char]) -> bool {
    // m[i][j]: pattern[i..] matches text[j..].
    let (p, t) = (pattern.len(), text.len());
    let mut m = vec![vec![false; t + 1]; p + 1];
    m[p][t] = true;
    for i in (0..p).rev() {
        for j in (0..=t).rev() {
            m[i][j] = match pattern[i] {
                '*' => m[i + 1][j] || (j < t && m[i][j + 1]),
                '?' => j < t && m[i + 1][j + 1],
                c => j < t && text[j] == c && m[i + 1][j + 1],
            };
        }
    }
    m[0][0]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, subject) = text.split_once('\0').unwrap_or((text, ""));
    let (pc, tc): (Vec<char>, Vec<char>) = (pattern.chars().collect(), subject.chars().collect());
    if pc.len() > 300 || tc.len() > 300 {
        return;
    }
    assert_eq!(glob_match(pattern, subject), reference(&pc, &tc), "pattern {pattern:?} text {subject:?}");
});
