//! The aggregated view: which tools, prompts and resources clients see, and which backend owns each.
//!
//! Built from scratch from every backend's lists whenever one of them changes, so it is always a pure
//! function of those lists, the servers' filters and `tool_config.json` (and easy to test). Rules:
//! - a server's `tools`/`prompts`/`resources` filters drop what they deny before anything else;
//! - tools are exposed as `<prefix><sep><name>`, the prefix being the server's `namespace` or else its key,
//!   unless `tool_config.json` (keyed `<serverKey><sep><name>`) disables the tool, renames it or gives it
//!   another description; a name over 64 characters is shortened (see `tool_config::shorten`);
//!   two backends exposing the same final name: the first in key order keeps it, the other is not exposed,
//!   and an error names both;
//! - tools of a backend that is down are not listed, but their names are remembered as withdrawn, so a
//!   call to one can be told "server unavailable" (and retried) instead of "unknown tool";
//! - prompts keep their own names, as in the original proxy; on a clash the first server in key order keeps
//!   the plain name and the others are exposed as `<prefix><sep><name>`;
//! - resources keep their URIs; a URI offered twice is served by the first server in key order. A URI that
//!   is not listed is routed by the resource templates (longest literal prefix before the first `{`), then,
//!   when only one backend offers resources at all, to that one. URIs are routed and filtered in their
//!   normalised spelling (`crate::uri`: scheme and host case, dot segments, escapes, whitespace), so
//!   spelling a denied URI differently does not get past its server's filter.

use crate::config::Filters;
use crate::event::BackendId;
use crate::jsonrpc::raw;
use crate::mcp_param::{self, Mirrored};
use crate::tool_config::{is_portable_name, shorten, Overrides, ToolOverride};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// The four lists a backend may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools = 0,
    Prompts = 1,
    Resources = 2,
    Templates = 3,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::Templates];

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    /// The member of the list result that holds the items.
    pub fn member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The capability a backend declares when it offers this list.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }

    pub fn changed_notification(self) -> &'static str {
        match self {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
            ListKind::Resources | ListKind::Templates => "notifications/resources/list_changed",
        }
    }
}

/// One backend's lists (its last known ones when it is down), as the catalog reads them.
pub struct Source<'a> {
    pub id: BackendId,
    pub key: &'a str,
    pub prefix: &'a str,
    /// Only ready backends are exposed; the others' tool names are remembered as withdrawn.
    pub ready: bool,
    pub filters: &'a Filters,
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
    /// Each backend's `resources` filter, applied to every URI routed to it (templated ones too).
    resource_filters: HashMap<BackendId, crate::config::Filter>,
    withdrawn: HashMap<String, BackendId>,
    /// A backend's tool (by its own name) to the name it is exposed under.
    exposed: HashMap<(BackendId, String), String>,
    /// The arguments each exposed tool mirrors into `Mcp-Param-*` headers, for the tools that do.
    mirrored: HashMap<String, Vec<Mirrored>>,
    results: Results,
}

/// Each list's `result` as clients get it (`{"tools": [...]}`), serialised once per build, by
/// [`ListKind`], and the tools result without the tools that can only run as tasks (for clients that
/// cannot use them); empty lists before the first build.
#[derive(Debug)]
struct Results {
    lists: [Box<RawValue>; 4],
    tools_without_tasks: Box<RawValue>,
}

impl Results {
    fn of(lists: impl Fn(ListKind) -> Value, tools_without_tasks: Value) -> Results {
        Results {
            lists: ListKind::ALL.map(|kind| raw(&json!({ kind.member(): lists(kind) }))),
            tools_without_tasks: raw(&json!({ "tools": tools_without_tasks })),
        }
    }
}

impl Default for Results {
    fn default() -> Results {
        Results::of(|_| json!([]), json!([]))
    }
}

/// What a build found, for the log, `--check` and the admin page.
#[derive(Debug, Default, PartialEq)]
pub struct Findings {
    /// Something configured is not served as asked: `--check` fails on these.
    pub problems: Vec<String>,
    /// A clash or a long name resolved by a documented rule.
    pub notes: Vec<String>,
    /// The problems that are two tools wanting one name (also in `problems`): what the admin API
    /// checks a tool config for before saving it.
    pub clashes: Vec<String>,
}

impl Findings {
    fn clash(&mut self, why: String) {
        self.clashes.push(why.clone());
        self.problems.push(why);
    }
}

impl Catalog {
    /// Builds the catalog, with what it found: problems (a tool dropped by a clash, an unusable
    /// override, a malformed entry) and notes (a clash or a long name resolved by a documented rule).
    pub fn build(sources: &[Source], sep: &str, overrides: &Overrides) -> (Catalog, Findings) {
        let mut catalog = Catalog::default();
        let mut found = Findings::default();
        let mut used = HashSet::new();
        for src in sources {
            catalog.add_tools(src, sources, sep, overrides, &mut used, &mut found);
            if src.ready {
                catalog.add_resources(src, &mut found);
            }
        }
        catalog.add_prompts(sources, sep, &mut found);
        let plain: Vec<&Value> = catalog.tools.iter().filter(|t| !needs_tasks(t)).collect();
        catalog.results = Results::of(|kind| Value::from(catalog.list(kind)), json!(plain));
        if sources.iter().all(|s| s.ready) {
            let unused = overrides.keys().filter(|k| !used.contains(k.as_str()));
            found.problems.extend(unused.map(|k| format!("tool config: '{k}' names no tool of any server")));
        }
        (catalog, found)
    }

    /// The exposed definitions of one kind, in the order clients see them.
    pub fn list(&self, kind: ListKind) -> &[Value] {
        match kind {
            ListKind::Tools => &self.tools,
            ListKind::Prompts => &self.prompts,
            ListKind::Resources => &self.resources,
            ListKind::Templates => &self.templates,
        }
    }

    /// The kinds of list that differ in `new` (resource templates count as resources).
    pub fn changes_to(&self, new: &Catalog) -> Vec<ListKind> {
        changed_kinds(|kind| self.list(kind) != new.list(kind))
    }

    /// The answer to a list request (`{"tools": [...]}` and so on), already serialised.
    pub fn list_result(&self, kind: ListKind) -> Box<RawValue> {
        self.results.lists[kind as usize].clone()
    }

    /// The tools result for a client that cannot use tasks (see [`Catalog::list_result`]).
    pub fn tools_without_tasks(&self) -> Box<RawValue> {
        self.results.tools_without_tasks.clone()
    }

    /// The arguments an exposed tool mirrors into `Mcp-Param-*` headers (none for most).
    pub fn mirrored(&self, exposed: &str) -> &[Mirrored] {
        self.mirrored.get(exposed).map_or(&[], Vec::as_slice)
    }

    pub fn tool(&self, exposed: &str) -> Option<&Route> {
        self.tool_routes.get(exposed)
    }

    /// The name a backend's tool is exposed under, if it is exposed.
    pub fn exposed_name(&self, backend: BackendId, original: &str) -> Option<&str> {
        self.exposed.get(&(backend, original.to_owned())).map(String::as_str)
    }

    /// The backend of a tool that would be exposed under this name if that backend were up.
    pub fn withdrawn_tool(&self, exposed: &str) -> Option<BackendId> {
        self.withdrawn.get(exposed).copied()
    }

    /// Every withdrawn tool: the name it would be exposed under, and its backend.
    pub fn withdrawn_tools(&self) -> impl Iterator<Item = (&str, BackendId)> {
        self.withdrawn.iter().map(|(name, id)| (name.as_str(), *id))
    }

    /// The backend of the resource template at this position of the templates list.
    pub fn template_owner(&self, index: usize) -> Option<BackendId> {
        self.template_routes.get(index).map(|(_, id)| *id)
    }

    pub fn prompt(&self, exposed: &str) -> Option<&Route> {
        self.prompt_routes.get(exposed)
    }

    /// The backend that serves a resource URI, if any can be determined. The URI is routed and
    /// filtered in its normalised spelling (`crate::uri`), so no other spelling gets past a filter; one
    /// that cannot be normalised has no owner.
    pub fn resource_owner(&self, uri: &str) -> Option<BackendId> {
        let uri = crate::uri::normalize(uri).ok()?;
        if let Some(id) = self.resource_routes.get(&uri) {
            return Some(*id);
        }
        let by_template = self
            .template_routes
            .iter()
            .filter(|(prefix, _)| uri.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, id)| *id);
        let owner = match (by_template, self.resource_backends.as_slice()) {
            (Some(id), _) => Some(id),
            (None, [only]) => Some(*only),
            _ => None,
        };
        owner.filter(|id| self.resource_filters.get(id).is_none_or(|f| f.admits(&uri)))
    }

    fn add_tools<'o>(
        &mut self,
        src: &Source,
        sources: &[Source],
        sep: &str,
        overrides: &'o Overrides,
        used: &mut HashSet<&'o str>,
        found: &mut Findings,
    ) {
        for tool in src.tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                found.problems.push(format!("server '{}': a tool without a name was skipped", src.key));
                continue;
            };
            if !src.filters.tools.admits(name) {
                continue;
            }
            // A 2026-07-28 HTTP client must refuse a tool whose header annotations are invalid; the proxy
            // does not list it at all.
            let mirrored = match mcp_param::annotations(tool.get("inputSchema").unwrap_or(&Value::Null)) {
                Ok(mirrored) => mirrored,
                Err(why) => {
                    found.problems.push(format!("server '{}': tool '{name}' was skipped: {why}", src.key));
                    continue;
                }
            };
            let override_key = qualify(src.key, sep, name);
            let entry = overrides.get_key_value(&override_key);
            if let Some((key, _)) = entry {
                used.insert(key.as_str());
            }
            let over = entry.map(|(_, o)| o);
            if over.is_some_and(|o| !o.enabled) {
                continue;
            }
            let exposed = exposed_name(src.prefix, sep, name, over, &override_key, found);
            if !src.ready {
                self.withdrawn.entry(exposed).or_insert(src.id);
                continue;
            }
            if let Some(earlier) = self.tool_routes.get(&exposed) {
                found.clash(format!(
                    "tool name '{exposed}' is exposed twice: server '{}' tool '{}' keeps it, server '{}' tool '{name}' \
                     is skipped; give one of them an exposedName in the tool config, or its server another 'namespace'",
                    key_of(sources, earlier.backend),
                    earlier.name,
                    src.key
                ));
                continue;
            }
            if !mirrored.is_empty() {
                self.mirrored.insert(exposed.clone(), mirrored);
            }
            self.tool_routes.insert(exposed.clone(), Route { backend: src.id, name: name.to_owned() });
            self.exposed.insert((src.id, name.to_owned()), exposed.clone());
            let mut def = renamed(tool, "name", &exposed);
            if let (Some(description), Some(obj)) = (over.and_then(|o| o.exposed_description.as_ref()), def.as_object_mut()) {
                obj.insert("description".into(), Value::String(description.clone()));
            }
            self.tools.push(def);
        }
    }

    fn add_resources(&mut self, src: &Source, found: &mut Findings) {
        self.resource_filters.insert(src.id, src.filters.resources.clone());
        if !src.resources.is_empty() || !src.templates.is_empty() {
            self.resource_backends.push(src.id);
        }
        for resource in src.resources {
            let Some(uri) = resource.get("uri").and_then(Value::as_str) else {
                found.problems.push(format!("server '{}': a resource without a uri was skipped", src.key));
                continue;
            };
            let Ok(normal) = crate::uri::normalize(uri) else {
                found.problems.push(format!("server '{}': resource '{uri}' has an unusable URI and was skipped", src.key));
                continue;
            };
            if !src.filters.resources.admits(uri) || !src.filters.resources.admits(&normal) {
                continue;
            }
            if self.resource_routes.contains_key(&normal) {
                found.notes.push(format!("resource '{uri}' of server '{}' is already served by another server", src.key));
                continue;
            }
            self.resource_routes.insert(normal, src.id);
            self.resources.push(resource.clone());
        }
        for template in src.templates {
            let Some(pattern) = template.get("uriTemplate").and_then(Value::as_str) else {
                found.problems.push(format!("server '{}': a resource template without a uriTemplate was skipped", src.key));
                continue;
            };
            if !src.filters.resources.admits(pattern) {
                continue;
            }
            let literal = pattern.split('{').next().unwrap_or_default();
            // Matched against normalised URIs, so normalised too (a prefix that cannot be never matches one).
            let prefix = crate::uri::normalize(literal).unwrap_or_else(|_| literal.to_owned());
            self.template_routes.push((prefix, src.id));
            self.templates.push(template.clone());
        }
    }

    fn add_prompts(&mut self, sources: &[Source], sep: &str, found: &mut Findings) {
        for src in sources.iter().filter(|s| s.ready) {
            for prompt in src.prompts {
                let Some(name) = prompt.get("name").and_then(Value::as_str) else {
                    found.problems.push(format!("server '{}': a prompt without a name was skipped", src.key));
                    continue;
                };
                if !src.filters.prompts.admits(name) {
                    continue;
                }
                let exposed = if self.prompt_routes.contains_key(name) {
                    let qualified = qualify(src.prefix, sep, name);
                    found
                        .notes
                        .push(format!("prompt '{name}' of server '{}' clashes with another server's; exposed as '{qualified}'", src.key));
                    qualified
                } else {
                    name.to_owned()
                };
                if self.prompt_routes.contains_key(&exposed) {
                    found.problems.push(format!("prompt '{exposed}' of server '{}' is exposed twice; skipped", src.key));
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

/// The name a tool is exposed under: the override's, if it is usable, else `<prefix><sep><name>`;
/// shortened when over 64 characters.
fn exposed_name(prefix: &str, sep: &str, name: &str, over: Option<&ToolOverride>, key: &str, found: &mut Findings) -> String {
    if let Some(wanted) = over.and_then(|o| o.exposed_name.as_deref()) {
        if is_portable_name(wanted) {
            return wanted.to_owned();
        }
        found
            .problems
            .push(format!("tool config: '{key}': exposedName '{wanted}' is not 1-64 letters, digits, '_' or '-'; using the default name"));
    }
    let default = default_name(prefix, sep, name);
    if default.len() < qualify(prefix, sep, name).len() {
        found.notes.push(format!(
            "tool name '{}' is over 64 characters, which clients reject; exposed as '{default}'",
            qualify(prefix, sep, name)
        ));
    }
    default
}

/// The name a tool is exposed under when no override renames it: `<prefix><sep><name>`, shortened when
/// over 64 characters.
pub fn default_name(prefix: &str, sep: &str, name: &str) -> String {
    let full = qualify(prefix, sep, name);
    if full.len() > 64 {
        shorten(&full)
    } else {
        full
    }
}

/// The kinds of list a client is told changed (`list_changed` has no kind for resource templates: they
/// count as resources), of those `differs` says changed.
pub fn changed_kinds(differs: impl Fn(ListKind) -> bool) -> Vec<ListKind> {
    let told = [
        (ListKind::Tools, &[ListKind::Tools][..]),
        (ListKind::Prompts, &[ListKind::Prompts]),
        (ListKind::Resources, &[ListKind::Resources, ListKind::Templates]),
    ];
    told.into_iter().filter(|(_, kinds)| kinds.iter().any(|&k| differs(k))).map(|(kind, _)| kind).collect()
}

/// A tool that must be called as a task (`execution.taskSupport: "required"`).
pub fn needs_tasks(tool: &Value) -> bool {
    tool.pointer("/execution/taskSupport").and_then(Value::as_str) == Some("required")
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
        ready: bool,
        filters: Filters,
        tools: Vec<Value>,
        prompts: Vec<Value>,
        resources: Vec<Value>,
        templates: Vec<Value>,
    }

    fn lists(key: &'static str) -> Lists {
        Lists {
            key,
            prefix: key,
            ready: true,
            filters: Filters::default(),
            tools: vec![],
            prompts: vec![],
            resources: vec![],
            templates: vec![],
        }
    }

    /// The catalog and every finding, problems first, then notes.
    fn build(all: &[Lists]) -> (Catalog, Vec<String>) {
        build_with(all, &Overrides::new())
    }

    fn build_with(all: &[Lists], overrides: &Overrides) -> (Catalog, Vec<String>) {
        let (catalog, found) = build_found(all, overrides);
        (catalog, found.problems.into_iter().chain(found.notes).collect())
    }

    fn build_found(all: &[Lists], overrides: &Overrides) -> (Catalog, Findings) {
        let sources: Vec<Source> = all
            .iter()
            .enumerate()
            .map(|(i, l)| Source {
                id: BackendId(i),
                key: l.key,
                prefix: l.prefix,
                ready: l.ready,
                filters: &l.filters,
                tools: &l.tools,
                prompts: &l.prompts,
                resources: &l.resources,
                templates: &l.templates,
            })
            .collect();
        Catalog::build(&sources, "__", overrides)
    }

    fn over(enabled: bool, name: Option<&str>, description: Option<&str>) -> ToolOverride {
        ToolOverride { enabled, exposed_name: name.map(Into::into), exposed_description: description.map(Into::into) }
    }

    fn names(catalog: &Catalog) -> Vec<&str> {
        catalog.tools.iter().map(|t| t["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn clashes_resolved_by_a_rule_are_notes_and_dropped_tools_are_problems() {
        let (mut a, mut b) = (lists("a"), lists("b"));
        (a.prefix, b.prefix) = ("x", "x");
        a.prompts = vec![json!({"name": "greet"})];
        b.prompts = vec![json!({"name": "greet"})];
        a.tools = vec![json!({"name": "echo"})];
        b.tools = vec![json!({"name": "echo"})];
        let (_, found) = build_found(&[a, b], &Overrides::new());
        assert_eq!(found.problems.len(), 1, "{found:?}");
        assert!(found.problems[0].contains("tool name 'x__echo'"));
        assert_eq!(found.notes.len(), 1, "{found:?}");
        assert!(found.notes[0].contains("prompt 'greet'"));
    }

    #[test]
    fn a_tool_that_can_only_run_as_a_task_is_left_out_of_the_list_for_clients_without_tasks() {
        let mut a = lists("a");
        a.tools = vec![json!({"name": "plain"}), json!({"name": "research", "execution": {"taskSupport": "required"}})];
        let (catalog, _) = build(&[a]);
        assert_eq!(names(&catalog), ["a__plain", "a__research"]);
        let without: Value = serde_json::from_str(catalog.tools_without_tasks().get()).unwrap();
        assert_eq!(without["tools"].as_array().unwrap().len(), 1, "{without}");
    }

    #[test]
    fn a_tool_with_invalid_header_annotations_is_not_listed_and_a_problem_says_why() {
        let mut a = lists("a");
        let bad = json!({ "properties": { "n": { "type": "number", "x-mcp-header": "N" } } });
        a.tools = vec![json!({"name": "plain"}), json!({"name": "odd", "inputSchema": bad})];
        let (catalog, found) = build_found(&[a], &Overrides::new());
        assert_eq!(names(&catalog), ["a__plain"]);
        assert!(found.problems.iter().any(|p| p.contains("'odd'")), "{found:?}");
    }

    #[test]
    fn denied_uri_is_not_routed_even_through_a_template() {
        let mut a = lists("a");
        a.filters.resources.deny = vec!["test://secret/*".into()];
        a.templates = vec![json!({"uriTemplate": "test://{x}"})];
        let (catalog, _) = build(&[a]);
        assert_eq!(catalog.resource_owner("test://public/1"), Some(BackendId(0)));
        assert_eq!(catalog.resource_owner("test://secret/1"), None);
    }

    #[test]
    fn denied_uri_spelled_differently_is_not_routed() {
        let mut a = lists("a");
        a.filters.resources.deny = vec!["demo://resource/static/*".into()];
        a.templates = vec![json!({"uriTemplate": "demo://resource/{path}"})];
        let (catalog, _) = build(&[a]);
        assert_eq!(catalog.resource_owner("demo://resource/dynamic/1"), Some(BackendId(0)));
        for spelling in [
            "DEMO://resource/static/document/a",
            "demo://RESOURCE/static/document/a",
            "demo://resource/dynamic/../static/document/a",
            "demo://resource/%73tatic/document/a",
            " demo://resource/static/document/a",
            "demo://resource/dynamic\\..\\static/document/a",
        ] {
            assert_eq!(catalog.resource_owner(spelling), None, "{spelling}");
        }
    }

    #[test]
    fn a_listed_uri_is_routed_whatever_its_spelling() {
        let mut a = lists("a");
        let mut b = lists("b");
        a.resources = vec![json!({"uri": "demo://r/a"})];
        b.resources = vec![json!({"uri": "demo://r/b"})];
        let (catalog, _) = build(&[a, b]);
        assert_eq!(catalog.resource_owner("DEMO://r/x/../a"), Some(BackendId(0)));
    }

    #[test]
    fn disabled_tool_is_neither_listed_nor_routed() {
        let mut a = lists("a");
        a.tools = vec![json!({"name": "x"}), json!({"name": "y"})];
        let overrides = Overrides::from([("a__x".to_owned(), over(false, None, None))]);
        let (catalog, problems) = build_with(&[a], &overrides);
        assert_eq!(names(&catalog), ["a__y"]);
        assert!(catalog.tool("a__x").is_none());
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn renamed_tool_is_called_by_its_new_name_with_its_new_description() {
        let mut a = lists("a");
        a.tools = vec![json!({"name": "x", "description": "old", "inputSchema": {"type": "object"}})];
        let overrides = Overrides::from([("a__x".to_owned(), over(true, Some("better"), Some("new")))]);
        let (catalog, _) = build_with(&[a], &overrides);
        assert_eq!(catalog.tools, [json!({"name": "better", "description": "new", "inputSchema": {"type": "object"}})]);
        assert_eq!(catalog.tool("better"), Some(&Route { backend: BackendId(0), name: "x".into() }));
        assert!(catalog.tool("a__x").is_none());
    }

    #[test]
    fn invalid_exposed_name_falls_back_and_is_reported() {
        let mut a = lists("a");
        a.tools = vec![json!({"name": "x"})];
        let overrides = Overrides::from([("a__x".to_owned(), over(true, Some("bad name"), None))]);
        let (catalog, problems) = build_with(&[a], &overrides);
        assert_eq!(names(&catalog), ["a__x"]);
        assert!(problems[0].contains("'bad name'"), "{problems:?}");
    }

    #[test]
    fn override_for_a_missing_tool_is_reported_once_all_servers_are_up() {
        let mut a = lists("a");
        a.tools = vec![json!({"name": "x"})];
        let overrides = Overrides::from([("a__gone".to_owned(), over(false, None, None))]);
        let (_, problems) = build_with(&[a], &overrides);
        assert_eq!(problems, ["tool config: 'a__gone' names no tool of any server"]);
        let mut down = lists("a");
        down.ready = false;
        let (_, problems) = build_with(&[down], &overrides);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn over_long_names_are_shortened_and_reported() {
        let mut a = lists("a");
        let long = "t".repeat(70);
        a.tools = vec![json!({ "name": long })];
        let (catalog, problems) = build(&[a]);
        let name = names(&catalog)[0].to_owned();
        assert_eq!(name.len(), 64);
        assert_eq!(catalog.tool(&name).map(|r| r.name.clone()), Some(long));
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn filters_drop_tools_prompts_and_resources() {
        let mut a = lists("a");
        a.filters.tools.deny = vec!["del*".into()];
        a.filters.prompts.allow = vec!["keep".into()];
        a.filters.resources.deny = vec!["secret://*".into()];
        a.tools = vec![json!({"name": "delete_all"}), json!({"name": "read"})];
        a.prompts = vec![json!({"name": "keep"}), json!({"name": "drop"})];
        a.resources = vec![json!({"uri": "secret://1"}), json!({"uri": "public://1"})];
        let (catalog, _) = build(&[a]);
        assert_eq!(names(&catalog), ["a__read"]);
        assert!(catalog.tool("a__delete_all").is_none());
        assert_eq!(catalog.prompts.len(), 1);
        assert_eq!(catalog.resources, [json!({"uri": "public://1"})]);
    }

    #[test]
    fn tools_of_a_down_backend_are_withdrawn_not_forgotten() {
        let mut a = lists("a");
        a.ready = false;
        a.tools = vec![json!({"name": "x"})];
        let (catalog, _) = build(&[a]);
        assert!(catalog.tools.is_empty());
        assert_eq!(catalog.withdrawn_tool("a__x"), Some(BackendId(0)));
    }

    #[test]
    fn tools_are_prefixed_and_keep_every_other_field() {
        let mut a = lists("a");
        a.tools = vec![json!({"name": "echo", "title": "Echo", "annotations": {"readOnlyHint": true},
                              "outputSchema": {"type": "object"}, "_meta": {"x": 1}})];
        let (catalog, problems) = build(&[a]);
        assert!(problems.is_empty());
        assert_eq!(
            catalog.tools,
            [json!({"name": "a__echo", "title": "Echo", "annotations": {"readOnlyHint": true},
                                          "outputSchema": {"type": "object"}, "_meta": {"x": 1}})]
        );
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
        assert!(
            problems[0].contains("server 'a' tool 'echo' keeps it") && problems[0].contains("server 'b' tool 'echo' is skipped"),
            "{}",
            problems[0]
        );
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
