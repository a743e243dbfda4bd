//! Ranking tools by a free-text query: BM25F (Okapi BM25 over fields) over each tool's name, title,
//! description and parameter names, with no model and no dictionary, so a small static binary can
//! offer tool search.
//!
//! Words are split at anything but letters and digits and at lower-to-upper case changes
//! (`getCurrentTime` is `get current time`), lower-cased, stripped of a few English endings (`files` and
//! `file`, `searching` and `search` meet) and of stop words. A word in the name counts twice and in the
//! title one and a half times, since a tool's name is the densest summary of what it does; each field's
//! length is weighed against that field's average, so one long description does not bury its tool.
//! Ties are broken by name, so the same query over the same tools always gives the same order.

use serde_json::Value;
use std::collections::HashMap;

/// BM25's term-frequency saturation (the usual value).
const K1: f64 = 1.2;

/// Words that say nothing about what a tool does.
const STOP_WORDS: [&str; 32] = [
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "for", "from", "get", "how", "i", "in", "is", "it", "me", "my", "of",
    "on", "or", "so", "that", "the", "this", "to", "use", "what", "which", "with",
];

/// The fields of a tool that are searched: how much a word in each counts, and how much the field's
/// length (against its average) discounts it (BM25's `b`, per field: descriptions vary in length most).
const FIELDS: [(Field, f64, f64); 4] =
    [(Field::Name, 2.0, 0.5), (Field::Title, 1.5, 0.5), (Field::Description, 1.0, 0.75), (Field::Parameters, 1.0, 0.5)];

#[derive(Debug, Clone, Copy)]
enum Field {
    Name,
    Title,
    Description,
    Parameters,
}

impl Field {
    fn text(self, tool: &Value) -> String {
        let text = |key: &str| tool.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        match self {
            Field::Name => text("name"),
            Field::Title => text("title"),
            Field::Description => text("description"),
            Field::Parameters => {
                let parameters = tool.pointer("/inputSchema/properties").and_then(Value::as_object);
                parameters.map(|p| p.keys().cloned().collect::<Vec<_>>().join(" ")).unwrap_or_default()
            }
        }
    }
}

/// One tool's terms: per field, how often each occurs, and the field's length in terms.
type Document = [(HashMap<String, f64>, f64); 4];

/// A search index over a list of tool definitions: BM25F, each field's length normalised against that
/// field's average, so a long description does not drown a short name.
#[derive(Debug, Default)]
pub struct Index {
    docs: Vec<Document>,
    /// In how many tools each term occurs.
    df: HashMap<String, usize>,
    /// Each field's average length.
    average: [f64; 4],
}

impl Index {
    /// Indexes tools (MCP tool definitions), by their position in `tools`.
    pub fn build(tools: &[Value]) -> Index {
        let docs: Vec<Document> = tools.iter().map(|tool| FIELDS.map(|(field, _, _)| terms(&field.text(tool)))).collect();
        let mut df = HashMap::new();
        for doc in &docs {
            let mut seen: Vec<&String> = doc.iter().flat_map(|(tf, _)| tf.keys()).collect();
            seen.sort();
            seen.dedup();
            for term in seen {
                *df.entry(term.clone()).or_insert(0) += 1;
            }
        }
        let n = docs.len().max(1) as f64;
        let average = std::array::from_fn(|f| docs.iter().map(|doc| doc[f].1).sum::<f64>() / n);
        Index { docs, df, average }
    }

    /// The positions of the best `limit` tools for `query`, best first, with their scores; tools that
    /// share no word with the query are not returned. Equal scores keep the order of `names`.
    pub fn search(&self, query: &str, limit: usize, names: &[&str]) -> Vec<(usize, f64)> {
        let mut terms = words(query);
        terms.sort();
        terms.dedup();
        let n = self.docs.len() as f64;
        let mut scored: Vec<(usize, f64)> = self
            .docs
            .iter()
            .enumerate()
            .filter_map(|(i, doc)| {
                let score: f64 = terms
                    .iter()
                    .filter_map(|term| {
                        let df = *self.df.get(term)? as f64;
                        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                        // The term's frequency in each field, weighted and normalised by the field's length.
                        let tf: f64 = FIELDS
                            .iter()
                            .zip(doc)
                            .zip(self.average)
                            .map(|(((_, weight, b), (tf, len)), average)| {
                                let f = tf.get(term).copied().unwrap_or(0.0);
                                weight * f / (1.0 - b + b * len / average.max(f64::EPSILON))
                            })
                            .sum();
                        (tf > 0.0).then(|| idf * tf * (K1 + 1.0) / (tf + K1))
                    })
                    .sum();
                (score > 0.0).then_some((i, score))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| names.get(a.0).cmp(&names.get(b.0))));
        scored.truncate(limit);
        scored
    }
}

/// A field's terms, counted, and its length.
fn terms(text: &str) -> (HashMap<String, f64>, f64) {
    let mut counts = HashMap::new();
    let mut length = 0.0;
    for word in words(text) {
        *counts.entry(word).or_insert(0.0) += 1.0;
        length += 1.0;
    }
    (counts, length)
}

/// The search terms of a text.
pub fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous: Option<char> = None;
    for c in text.chars() {
        let boundary = !c.is_alphanumeric() || (c.is_uppercase() && previous.is_some_and(char::is_lowercase));
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        }
        previous = Some(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words.into_iter().filter(|w| !STOP_WORDS.contains(&w.as_str())).map(|w| stem(&w)).collect()
}

/// Strips a few English endings, so that a word and its plural or gerund meet.
fn stem(word: &str) -> String {
    let n = word.chars().count();
    let cut = |suffix: &str, keep: usize, add: &str| {
        (word.ends_with(suffix) && n >= keep + suffix.len()).then(|| format!("{}{add}", &word[..word.len() - suffix.len()]))
    };
    cut("ies", 3, "y")
        .or_else(|| cut("sses", 2, "ss"))
        .or_else(|| {
            (word.ends_with("es") && ["ches", "shes", "xes", "zes"].iter().any(|s| word.ends_with(s))).then(|| cut("es", 3, "")).flatten()
        })
        .or_else(|| (!word.ends_with("ss") && !word.ends_with("us") && !word.ends_with("is")).then(|| cut("s", 3, "")).flatten())
        .or_else(|| cut("ing", 4, ""))
        .or_else(|| cut("ed", 4, ""))
        .unwrap_or_else(|| word.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, description: &str, params: &[&str]) -> Value {
        let properties: serde_json::Map<String, Value> = params.iter().map(|p| (p.to_string(), json!({ "type": "string" }))).collect();
        json!({ "name": name, "description": description, "inputSchema": { "type": "object", "properties": properties } })
    }

    fn top(tools: &[Value], query: &str) -> Vec<String> {
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        Index::build(tools).search(query, 3, &names).into_iter().map(|(i, _)| names[i].to_owned()).collect()
    }

    #[test]
    fn words_split_at_case_changes_and_punctuation_and_meet_their_plurals() {
        assert_eq!(words("time__getCurrentTime"), ["time", "current", "time"]);
        assert_eq!(words("Reads FILES, searching directories"), ["read", "file", "search", "directory"]);
        assert_eq!(words("the status of the process"), ["status", "process"]);
    }

    #[test]
    fn the_tool_whose_name_and_description_match_ranks_first() {
        let tools = [
            tool("fs__read_file", "Read the complete contents of a file", &["path"]),
            tool("fs__write_file", "Create a new file or overwrite one", &["path", "content"]),
            tool("time__get_current_time", "Get the current time in a timezone", &["timezone"]),
            tool("memory__search_nodes", "Search the knowledge graph", &["query"]),
        ];
        assert_eq!(top(&tools, "what time is it in Tokyo")[0], "time__get_current_time");
        assert_eq!(top(&tools, "read a file")[0], "fs__read_file");
        assert_eq!(top(&tools, "search knowledge graph")[0], "memory__search_nodes");
    }

    #[test]
    fn tools_sharing_no_word_with_the_query_are_not_returned() {
        let tools = [tool("a__echo", "Echoes its input", &["message"])];
        assert!(top(&tools, "weather forecast").is_empty());
    }

    #[test]
    fn equal_scores_are_ordered_by_name_every_time() {
        let tools = [tool("b__ping", "ping", &[]), tool("a__ping", "ping", &[])];
        assert_eq!(top(&tools, "ping"), ["a__ping", "b__ping"]);
    }
}
