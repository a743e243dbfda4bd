//! The aggregated view: which tools, prompts and resources clients see, and which backend owns each.
//!
//! Built from scratch from every ready backend's lists whenever one of them changes, so it is always a
//! pure function of those lists (and easy to test). Naming rules:
//! - tools are exposed as `<prefix><sep><name>`, the prefix being the server's `namespace` or else its key;
//!   two backends exposing the same final name: the first in key order keeps it, the other is not exposed,
//!   and an error names both;
//! - prompts keep their own names, as in the original proxy; on a clash the first server in key order keeps
//!   the plain name and the others are exposed as `<prefix><sep><name>`;
//! - resources keep their URIs; a URI offered twice is served by the first server in key order. A URI that
//!   is not listed is routed by the resource templates (longest literal prefix before the first `{`), then,
//!   when only one backend offers resources at all, to that one.

use crate::hub::BackendId;
use serde_json::Value;
use std::collections::HashMap;

/// One ready backend's lists, as the catalog reads them.
pub struct Source<'a> {
    pub id: BackendId,
    pub key: &'a str,
    pub prefix: &'a str,
    pub tools: &'a [Value],
    pub prompts: &'a [Value],
    pub resources: &'a [Value],
    pub templates: &'a [Value],
}

/// Where an exposed name leads: a backend and the name that backend knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub backend: BackendId,
    pub name: String,
}

#[derive(Debug, Default)]
pub struct Catalog {
    /// Exposed definitions, in the order clients see them.
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
    tool_routes: HashMap<String, Route>,
    prompt_routes: HashMap<String, Route>,
    resource_routes: HashMap<String, BackendId>,
    template_routes: Vec<(String, BackendId)>,
    resource_backends: Vec<BackendId>,
}

impl Catalog {
    /// Builds the catalog; the second value lists the clashes and malformed entries found, for the log.
    pub fn build(sources: &[Source], sep: &str) -> (Catalog, Vec<String>) {
        let mut catalog = Catalog::default();
        let mut problems = Vec::new();
        for src in sources {
            catalog.add_tools(src, sources, sep, &mut problems);
            catalog.add_resources(src, &mut problems);
        }
        catalog.add_prompts(sources, sep, &mut problems);
        (catalog, problems)
    }

    pub fn tool(&self, exposed: &str) -> Option<&Route> {
        self.tool_routes.get(exposed)
    }

    pub fn prompt(&self, exposed: &str) -> Option<&Route> {
        self.prompt_routes.get(exposed)
    }

    /// The backend that serves a resource URI, if any can be determined.
    pub fn resource_owner(&self, uri: &str) -> Option<BackendId> {
        if let Some(id) = self.resource_routes.get(uri) {
            return Some(*id);
        }
        let by_template = self
            .template_routes
            .iter()
            .filter(|(prefix, _)| uri.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, id)| *id);
        match (by_template, self.resource_backends.as_slice()) {
            (Some(id), _) => Some(id),
            (None, [only]) => Some(*only),
            _ => None,
        }
    }

    fn add_tools(&mut self, src: &Source, sources: &[Source], sep: &str, problems: &mut Vec<String>) {
        for tool in src.tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                problems.push(format!("server '{}': a tool without a name was skipped", src.key));
                continue;
            };
            let exposed = qualify(src.prefix, sep, name);
            if let Some(earlier) = self.tool_routes.get(&exposed) {
                problems.push(format!(
                    "tool name '{exposed}' is exposed by two servers, '{}' (kept) and '{}' (skipped): \
                     give one of them another 'namespace'",
                    key_of(sources, earlier.backend),
                    src.key
                ));
                continue;
            }
            self.tool_routes.insert(exposed.clone(), Route { backend: src.id, name: name.to_owned() });
            self.tools.push(renamed(tool, "name", &exposed));
        }
    }

    fn add_resources(&mut self, src: &Source, problems: &mut Vec<String>) {
        if !src.resources.is_empty() || !src.templates.is_empty() {
            self.resource_backends.push(src.id);
        }
        for resource in src.resources {
            let Some(uri) = resource.get("uri").and_then(Value::as_str) else {
                problems.push(format!("server '{}': a resource without a uri was skipped", src.key));
                continue;
            };
            if self.resource_routes.contains_key(uri) {
                problems.push(format!("resource '{uri}' of server '{}' is already served by another server", src.key));
                continue;
            }
            self.resource_routes.insert(uri.to_owned(), src.id);
            self.resources.push(resource.clone());
        }
        for template in src.templates {
            let Some(pattern) = template.get("uriTemplate").and_then(Value::as_str) else {
                problems.push(format!("server '{}': a resource template without a uriTemplate was skipped", src.key));
                continue;
            };
            let prefix = pattern.split('{').next().unwrap_or_default().to_owned();
            self.template_routes.push((prefix, src.id));
            self.templates.push(template.clone());
        }
    }

    fn add_prompts(&mut self, sources: &[Source], sep: &str, problems: &mut Vec<String>) {
        for src in sources {
            for prompt in src.prompts {
                let Some(name) = prompt.get("name").and_then(Value::as_str) else {
                    problems.push(format!("server '{}': a prompt without a name was skipped", src.key));
                    continue;
                };
                let exposed = if self.prompt_routes.contains_key(name) {
                    let qualified = qualify(src.prefix, sep, name);
                    problems.push(format!(
                        "prompt '{name}' of server '{}' clashes with another server's; exposed as '{qualified}'",
                        src.key
                    ));
                    qualified
                } else {
                    name.to_owned()
                };
                if self.prompt_routes.contains_key(&exposed) {
                    problems.push(format!("prompt '{exposed}' of server '{}' is exposed twice; skipped", src.key));
                    continue;
                }
                self.prompt_routes.insert(exposed.clone(), Route { backend: src.id, name: name.to_owned() });
                self.prompts.push(renamed(prompt, "name", &exposed));
            }
        }
    }
}

fn key_of<'a>(sources: &[Source<'a>], id: BackendId) -> &'a str {
    sources.iter().find(|s| s.id == id).map_or("?", |s| s.key)
}

/// `prefix + sep + name`, or the bare name when the prefix is empty.
pub fn qualify(prefix: &str, sep: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}{sep}{name}")
    }
}

/// A copy of a definition with one string member replaced; every other member is kept as the backend gave it.
fn renamed(def: &Value, member: &str, value: &str) -> Value {
    let mut def = def.clone();
    if let Some(obj) = def.as_object_mut() {
        obj.insert(member.to_owned(), Value::String(value.to_owned()));
    }
    def
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Lists {
        key: &'static str,
        prefix: &'static str,
        tools: Vec<Value>,
        prompts: Vec<Value>,
        resources: Vec<Value>,
        templates: Vec<Value>,
    }

    fn lists(key: &'static str) -> Lists {
        Lists { key, prefix: key, tools: vec![], prompts: vec![], resources: vec![], templates: vec![] }
    }

    fn build(all: &[Lists]) -> (Catalog, Vec<String>) {
        let sources: Vec<Source> = all
            .iter()
            .enumerate()
            .map(|(i, l)| Source {
                id: BackendId(i),
                key: l.key,
                prefix: l.prefix,
                tools: &l.tools,
                prompts: &l.prompts,
                resources: &l.resources,
                templates: &l.templates,
            })
            .collect();
        Catalog::build(&sources, "__")
    }

    #[test]
    fn tools_are_prefixed_and_keep_every_other_field() {
        let mut a = lists("a");
        a.tools = vec![json!({"name": "echo", "title": "Echo", "annotations": {"readOnlyHint": true},
                              "outputSchema": {"type": "object"}, "_meta": {"x": 1}})];
        let (catalog, problems) = build(&[a]);
        assert!(problems.is_empty());
        assert_eq!(catalog.tools, [json!({"name": "a__echo", "title": "Echo", "annotations": {"readOnlyHint": true},
                                          "outputSchema": {"type": "object"}, "_meta": {"x": 1}})]);
        assert_eq!(catalog.tool("a__echo"), Some(&Route { backend: BackendId(0), name: "echo".into() }));
        assert_eq!(catalog.tool("echo"), None);
    }

    #[test]
    fn empty_namespace_passes_names_through() {
        let mut a = lists("a");
        a.prefix = "";
        a.tools = vec![json!({"name": "echo"})];
        let (catalog, _) = build(&[a]);
        assert_eq!(catalog.tool("echo").map(|r| r.backend), Some(BackendId(0)));
    }

    #[test]
    fn clashing_tool_names_keep_the_first_server_and_name_both() {
        let (mut a, mut b) = (lists("a"), lists("b"));
        a.prefix = "";
        b.prefix = "";
        a.tools = vec![json!({"name": "echo"})];
        b.tools = vec![json!({"name": "echo"})];
        let (catalog, problems) = build(&[a, b]);
        assert_eq!(catalog.tools.len(), 1);
        assert_eq!(catalog.tool("echo").map(|r| r.backend), Some(BackendId(0)));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("'a' (kept)") && problems[0].contains("'b' (skipped)"), "{}", problems[0]);
    }

    #[test]
    fn clashing_prompts_are_qualified_after_the_first() {
        let (mut a, mut b) = (lists("a"), lists("b"));
        a.prompts = vec![json!({"name": "greet", "arguments": [{"name": "who"}]})];
        b.prompts = vec![json!({"name": "greet"}), json!({"name": "solo"})];
        let (catalog, problems) = build(&[a, b]);
        let names: Vec<&str> = catalog.prompts.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["greet", "b__greet", "solo"]);
        assert_eq!(catalog.prompt("b__greet"), Some(&Route { backend: BackendId(1), name: "greet".into() }));
        assert_eq!(catalog.prompts[0]["arguments"], json!([{"name": "who"}]));
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn listed_resource_uri_routes_to_its_server() {
        let (mut a, mut b) = (lists("a"), lists("b"));
        a.resources = vec![json!({"uri": "file:///a", "name": "a"})];
        b.resources = vec![json!({"uri": "file:///b", "name": "b"})];
        let (catalog, _) = build(&[a, b]);
        assert_eq!(catalog.resource_owner("file:///b"), Some(BackendId(1)));
        assert_eq!(catalog.resource_owner("file:///c"), None);
    }

    #[test]
    fn templated_uri_routes_by_longest_literal_prefix() {
        let (mut a, mut b) = (lists("a"), lists("b"));
        a.templates = vec![json!({"uriTemplate": "test://{x}"})];
        b.templates = vec![json!({"uriTemplate": "test://items/{id}"})];
        let (catalog, _) = build(&[a, b]);
        assert_eq!(catalog.resource_owner("test://items/7"), Some(BackendId(1)));
        assert_eq!(catalog.resource_owner("test://other"), Some(BackendId(0)));
    }

    #[test]
    fn unknown_uri_goes_to_the_only_resource_server() {
        let (mut a, b) = (lists("a"), lists("b"));
        a.resources = vec![json!({"uri": "x://1"})];
        let (catalog, _) = build(&[a, b]);
        assert_eq!(catalog.resource_owner("y://2"), Some(BackendId(0)));
    }

    #[test]
    fn duplicate_resource_uri_is_served_by_the_first_server() {
        let (mut a, mut b) = (lists("a"), lists("b"));
        a.resources = vec![json!({"uri": "x://1"})];
        b.resources = vec![json!({"uri": "x://1"})];
        let (catalog, problems) = build(&[a, b]);
        assert_eq!(catalog.resources.len(), 1);
        assert_eq!(catalog.resource_owner("x://1"), Some(BackendId(0)));
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn nameless_tool_is_skipped_and_reported() {
        let mut a = lists("a");
        a.tools = vec![json!({"description": "no name"})];
        let (catalog, problems) = build(&[a]);
        assert!(catalog.tools.is_empty());
        assert_eq!(problems.len(), 1);
    }
}
