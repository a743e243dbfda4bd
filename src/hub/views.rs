//! Profiles as the dispatcher serves them: for each profile of `mcp_server.json`, the part of the
//! catalog it shows, under the names it shows it, rebuilt with the catalog; and which credentials are
//! bound to which profile.
//!
//! A client is given its profile when it connects (the path it came to, or the profile its key is bound
//! to; `--profile` for stdio) and sees nothing else: lists are the view's, and every request that names
//! a tool, prompt or resource is checked against the view before it is routed, so a hidden tool is as
//! unknown as one that does not exist. A profile with `toolSearch` lists three meta-tools instead of its
//! tools (search, call by name, list servers); its tools can still be called by name. Clients without a
//! profile see the whole catalog, as before profiles existed.

use super::catalog::{needs_tasks, Catalog, ListKind};
use super::Hub;
use crate::event::{BackendId, Caller, ClientId, Era, ProfileId, ProfileSummary};
use crate::jsonrpc::{code, raw, Params};
use crate::profile_config::Profile;
use crate::search::Index;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;

/// The meta-tools of a tool-search profile.
pub(super) const SEARCH_TOOLS: &str = "search_tools";
pub(super) const CALL_TOOL: &str = "call_tool";
pub(super) const LIST_SERVERS: &str = "list_servers";

/// Matches a search returns unless asked for fewer, and at most.
const DEFAULT_MATCHES: usize = 5;
const MAX_MATCHES: usize = 20;

/// One profile's part of the catalog.
pub(super) struct View {
    pub profile: Profile,
    /// Shown tool name to the catalog's (exposed) name.
    tools: HashMap<String, String>,
    /// The same for the tools of its servers that are down (withdrawn): a call to one is retried, as
    /// without a profile, not refused as unknown.
    withdrawn: HashMap<String, String>,
    prompts: HashSet<String>,
    /// The servers it shows, by id: resources are checked against these.
    servers: HashSet<BackendId>,
    /// What it lists, tools under their shown names, each list sorted.
    lists: [Vec<Value>; 4],
    /// The server key of each listed tool.
    tool_servers: Vec<String>,
    results: [Box<RawValue>; 4],
    tools_without_tasks: Box<RawValue>,
    search: Option<Index>,
}

/// What a request under a profile becomes.
pub(super) enum Checked {
    /// Route it as usual (its names now the catalog's).
    Route,
    /// Answered here: the result.
    Answer(Box<RawValue>),
    /// Refused: the error code and message.
    Refuse(i64, String),
}

impl Hub {
    /// Holds a request of a client that has a profile to what the profile shows: lists are the
    /// view's, a tool call's name becomes the catalog's (after the search meta-tools have had their
    /// turn), and a prompt, resource or completion the view does not show is unknown.
    pub(super) fn through_profile(&self, caller: &Caller, profile: ProfileId, method: &str, params: &mut Params) -> Checked {
        let Some(view) = self.views.get(profile) else {
            return Checked::Refuse(code::BACKEND_UNAVAILABLE, "this client's profile is no longer served".into());
        };
        let uri_shown = |uri: &str| self.profile_shows_uri(Some(profile), uri);
        match method {
            "tools/list" if caller.era == Era::Modern => Checked::Answer(view.tools_without_tasks()),
            "tools/list" => Checked::Answer(view.list_result(ListKind::Tools)),
            "prompts/list" => Checked::Answer(view.list_result(ListKind::Prompts)),
            "resources/list" => Checked::Answer(view.list_result(ListKind::Resources)),
            "resources/templates/list" => Checked::Answer(view.list_result(ListKind::Templates)),
            "tools/call" => view.call(params, caller.era),
            "prompts/get" => {
                let name = params.str("name").unwrap_or_default();
                match view.shows_prompt(&name) {
                    true => Checked::Route,
                    false => Checked::Refuse(code::INVALID_PARAMS, format!("Unknown prompt: '{name}'")),
                }
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = params.str("uri").unwrap_or_default();
                match uri_shown(&uri) {
                    true => Checked::Route,
                    false => Checked::Refuse(code::RESOURCE_NOT_FOUND, format!("Unknown resource: '{uri}'")),
                }
            }
            "completion/complete" => {
                let reference = params.value("ref").unwrap_or_default();
                let text = |key: &str| reference.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
                let shown = match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => view.shows_prompt(&text("name")),
                    Some("ref/resource") => uri_shown(&text("uri")),
                    _ => true,
                };
                match shown {
                    true => Checked::Route,
                    false => Checked::Refuse(code::INVALID_PARAMS, format!("Unknown completion ref: {reference}")),
                }
            }
            _ => Checked::Route,
        }
    }

    /// Whether a profile shows a resource URI (without a profile, every URI is shown).
    pub(super) fn profile_shows_uri(&self, profile: Option<ProfileId>, uri: &str) -> bool {
        let Some(profile) = profile else { return true };
        let view = self.views.get(profile);
        view.is_some_and(|v| self.catalog.resource_owner(uri).is_none_or(|owner| v.shows_uri(uri, owner)))
    }

    /// Whether a client sees anything of a server: without a profile, everything.
    pub(super) fn client_sees(&self, client: ClientId, server: BackendId) -> bool {
        self.views.shows(self.clients.profile(client), server)
    }

    /// The catalog's name of a tool as a client of `profile` calls it (for its `Mcp-Param-*` check).
    pub(super) fn tool_in_profile(&self, profile: Option<ProfileId>, shown: &str) -> Option<String> {
        match profile {
            None => Some(shown.to_owned()),
            Some(profile) => self.views.get(profile)?.tool(shown).map(str::to_owned),
        }
    }
}

impl View {
    /// The view of `profile` over `catalog`; `key_of` names a backend's server. With `complete` (every
    /// backend has answered), renames of no tool and a profile showing nothing are problems.
    fn build(profile: &Profile, catalog: &Catalog, key_of: &dyn Fn(BackendId) -> String, complete: bool) -> (View, Vec<String>) {
        let mut problems = Vec::new();
        let shows = |backend: Option<BackendId>| backend.map(key_of).is_some_and(|key| profile.shows_server(&key));
        let mut tools = HashMap::new();
        let mut listed_tools: Vec<(String, Value, String)> = Vec::new();
        for tool in catalog.list(ListKind::Tools) {
            let Some(exposed) = tool.get("name").and_then(Value::as_str) else { continue };
            let backend = catalog.tool(exposed).map(|r| r.backend);
            if !shows(backend) || !profile.tools.admits(exposed) {
                continue;
            }
            let shown = profile.tool_name(exposed).to_owned();
            if tools.insert(shown.clone(), exposed.to_owned()).is_some() {
                problems.push(format!("profile '{}': two tools are shown as '{shown}'; one is hidden", profile.name));
                continue;
            }
            let mut tool = tool.clone();
            tool["name"] = Value::from(shown.as_str());
            listed_tools.push((shown, tool, backend.map(key_of).unwrap_or_default()));
        }
        listed_tools.sort_by(|a, b| a.0.cmp(&b.0));
        let withdrawn: HashMap<String, String> = catalog
            .withdrawn_tools()
            .filter(|(exposed, backend)| shows(Some(*backend)) && profile.tools.admits(exposed))
            .map(|(exposed, _)| (profile.tool_name(exposed).to_owned(), exposed.to_owned()))
            .collect();
        if complete {
            let known = |name: &str| catalog.tool(name).is_some() || catalog.withdrawn_tool(name).is_some();
            for old in profile.rename.keys().filter(|old| !known(old)) {
                problems.push(format!("profile '{}': 'rename' names '{old}', which is no tool", profile.name));
            }
        }
        let prompts: Vec<Value> = sorted_by(
            catalog.list(ListKind::Prompts).iter().filter(|p| {
                let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                shows(catalog.prompt(name).map(|r| r.backend)) && profile.prompts.admits(name)
            }),
            "name",
        );
        let resources: Vec<Value> = sorted_by(
            catalog.list(ListKind::Resources).iter().filter(|r| {
                let uri = r.get("uri").and_then(Value::as_str).unwrap_or_default();
                shows(catalog.resource_owner(uri)) && admits_uri(profile, uri)
            }),
            "uri",
        );
        let templates: Vec<Value> = sorted_by(
            catalog
                .list(ListKind::Templates)
                .iter()
                .enumerate()
                .filter(|(i, t)| {
                    let pattern = t.get("uriTemplate").and_then(Value::as_str).unwrap_or_default();
                    shows(catalog.template_owner(*i)) && profile.resources.admits(pattern)
                })
                .map(|(_, t)| t),
            "uriTemplate",
        );
        let servers = backends_shown(catalog, &shows);
        let tool_servers = listed_tools.iter().map(|(_, _, server)| server.clone()).collect();
        let listed: Vec<Value> = listed_tools.into_iter().map(|(_, tool, _)| tool).collect();
        if complete && listed.is_empty() && withdrawn.is_empty() && prompts.is_empty() && resources.is_empty() && templates.is_empty() {
            problems.push(format!("profile '{}' shows no tools, prompts or resources", profile.name));
        }
        let search = profile.tool_search.then(|| Index::build(&listed));
        if search.is_some() && [SEARCH_TOOLS, CALL_TOOL, LIST_SERVERS].iter().any(|meta| tools.contains_key(*meta)) {
            problems.push(format!("profile '{}': a tool named like a search meta-tool can only be called through call_tool", profile.name));
        }
        let plain: Vec<&Value> =
            listed.iter().filter(|t| t.pointer("/execution/taskSupport").and_then(Value::as_str) != Some("required")).collect();
        let shown_tools = match profile.tool_search {
            true => meta_tools(),
            false => json!(listed),
        };
        let results = [
            raw(&json!({ "tools": shown_tools })),
            raw(&json!({ "prompts": prompts })),
            raw(&json!({ "resources": resources })),
            raw(&json!({ "resourceTemplates": templates })),
        ];
        let tools_without_tasks = match profile.tool_search {
            true => results[0].clone(),
            false => raw(&json!({ "tools": plain })),
        };
        let prompt_names = prompts.iter().filter_map(|p| p.get("name")?.as_str().map(str::to_owned)).collect();
        let view = View {
            profile: profile.clone(),
            tools,
            withdrawn,
            prompts: prompt_names,
            servers,
            lists: [listed, prompts, resources, templates],
            tool_servers,
            results,
            tools_without_tasks,
            search,
        };
        (view, problems)
    }

    /// The catalog's name of a tool shown here under `shown`.
    pub fn tool(&self, shown: &str) -> Option<&str> {
        self.tools.get(shown).map(String::as_str)
    }

    pub fn shows_prompt(&self, name: &str) -> bool {
        self.prompts.contains(name)
    }

    /// Whether it shows anything of this server (its instructions, its log messages).
    pub fn shows_backend(&self, server: BackendId) -> bool {
        self.servers.contains(&server)
    }

    /// Whether a resource URI (served by `owner`) is shown here.
    pub fn shows_uri(&self, uri: &str, owner: BackendId) -> bool {
        self.shows_backend(owner) && admits_uri(&self.profile, uri)
    }

    pub fn list_result(&self, kind: ListKind) -> Box<RawValue> {
        self.results[kind as usize].clone()
    }

    pub fn tools_without_tasks(&self) -> Box<RawValue> {
        self.tools_without_tasks.clone()
    }

    /// A `tools/call` under this profile: a search meta-tool is answered here; `call_tool` becomes a
    /// call of the tool it names; a tool's shown name becomes the catalog's.
    fn call(&self, params: &mut Params, era: Era) -> Checked {
        let mut name = params.str("name").unwrap_or_default();
        let mut through_call_tool = false;
        if self.profile.tool_search {
            let arguments = params.value("arguments").unwrap_or_default();
            match name.as_str() {
                SEARCH_TOOLS => return Checked::Answer(tool_result(self.search(&arguments, era))),
                LIST_SERVERS => return Checked::Answer(tool_result(Ok(self.servers()))),
                CALL_TOOL => {
                    let Some(named) = arguments.get("name").and_then(Value::as_str) else {
                        return Checked::Answer(tool_result(Err("'name' (the tool to call) is required".into())));
                    };
                    name = named.to_owned();
                    params.set("arguments", raw(arguments.get("arguments").unwrap_or(&json!({}))));
                    through_call_tool = true;
                }
                _ => {}
            }
        }
        match self.tool(&name).or_else(|| self.withdrawn.get(&name).map(String::as_str)) {
            Some(exposed) => {
                params.set_str("name", exposed);
                Checked::Route
            }
            // A model that called call_tool reads the answer as the tool's: it gets a result it can act on.
            None if through_call_tool => {
                Checked::Answer(tool_result(Err(format!("Unknown tool: '{name}'; search_tools gives the names of the tools here"))))
            }
            None => Checked::Refuse(code::INVALID_PARAMS, format!("Unknown tool: '{name}'")),
        }
    }

    /// The answer to `search_tools`: the best matches, with what it takes to call them (a 2026-07-28
    /// client is not offered tools it could only run as tasks, as its `tools/list` does not show them).
    pub fn search(&self, arguments: &Value, era: Era) -> Result<Value, String> {
        let Some(index) = &self.search else { return Err("this profile has no tool search".into()) };
        let query = arguments.get("query").and_then(Value::as_str).filter(|q| !q.trim().is_empty()).ok_or("'query' (text) is required")?;
        let limit = match arguments.get("limit") {
            None | Some(Value::Null) => DEFAULT_MATCHES,
            Some(n) => {
                n.as_u64().filter(|n| (1..=MAX_MATCHES as u64).contains(n)).ok_or(format!("'limit' must be 1 to {MAX_MATCHES}"))? as usize
            }
        };
        let server = arguments.get("server").and_then(Value::as_str);
        let tools = &self.lists[ListKind::Tools as usize];
        let names: Vec<&str> = tools.iter().map(|t| t.get("name").and_then(Value::as_str).unwrap_or_default()).collect();
        let matches: Vec<Value> = index
            .search(query, tools.len(), &names)
            .into_iter()
            .filter(|(i, _)| server.is_none_or(|s| self.tool_servers[*i] == s))
            .filter(|(i, _)| era == Era::Handshake || !needs_tasks(&tools[*i]))
            .take(limit)
            .map(|(i, _)| {
                let tool = &tools[i];
                let mut found = json!({ "name": names[i], "server": self.tool_servers[i] });
                for key in ["title", "description", "inputSchema"] {
                    if let Some(value) = tool.get(key) {
                        found[key] = value.clone();
                    }
                }
                found
            })
            .collect();
        Ok(json!({ "tools": matches }))
    }

    /// The answer to `list_servers`: each server shown, with its number of tools.
    pub fn servers(&self) -> Value {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for server in &self.tool_servers {
            *counts.entry(server.as_str()).or_default() += 1;
        }
        json!({ "servers": counts.into_iter().map(|(name, tools)| json!({ "name": name, "tools": tools })).collect::<Vec<_>>() })
    }

    /// The kinds of list whose answer differs from `other`'s (resource templates count as resources;
    /// turning tool search on or off changes the tools answer).
    fn changed_since(&self, other: &View) -> Vec<ListKind> {
        super::catalog::changed_kinds(|k| self.results[k as usize].get() != other.results[k as usize].get())
    }
}

/// A meta-tool's result: the answer as JSON text (compact: it is read by a model, and costs tokens)
/// and as structured content, or a tool error the model can read and correct.
fn tool_result(outcome: Result<Value, String>) -> Box<RawValue> {
    match outcome {
        Ok(value) => {
            let text = value.to_string();
            raw(&json!({ "content": [{ "type": "text", "text": text }], "structuredContent": value }))
        }
        Err(why) => raw(&json!({ "content": [{ "type": "text", "text": why }], "isError": true })),
    }
}

/// A resource URI's profile filter, matched in the normalised spelling as the servers' filters are.
fn admits_uri(profile: &Profile, uri: &str) -> bool {
    let normal = crate::uri::normalize(uri).unwrap_or_else(|_| uri.to_owned());
    profile.resources.admits(uri) && profile.resources.admits(&normal)
}

fn sorted_by<'a>(items: impl Iterator<Item = &'a Value>, key: &str) -> Vec<Value> {
    let mut items: Vec<Value> = items.cloned().collect();
    items.sort_by(|a, b| a.get(key).and_then(Value::as_str).cmp(&b.get(key).and_then(Value::as_str)));
    items
}

/// The backends behind anything the catalog lists that `shows` lets through.
fn backends_shown(catalog: &Catalog, shows: &dyn Fn(Option<BackendId>) -> bool) -> HashSet<BackendId> {
    let tools = catalog.list(ListKind::Tools).iter().filter_map(|t| catalog.tool(t.get("name")?.as_str()?).map(|r| r.backend));
    let prompts = catalog.list(ListKind::Prompts).iter().filter_map(|p| catalog.prompt(p.get("name")?.as_str()?).map(|r| r.backend));
    let resources = catalog.list(ListKind::Resources).iter().filter_map(|r| catalog.resource_owner(r.get("uri")?.as_str()?));
    let templates = (0..catalog.list(ListKind::Templates).len()).filter_map(|i| catalog.template_owner(i));
    tools.chain(prompts).chain(resources).chain(templates).filter(|id| shows(Some(*id))).collect()
}

/// The tools a tool-search profile lists.
fn meta_tools() -> Value {
    json!([
        {
            "name": SEARCH_TOOLS,
            "title": "Search tools",
            "description": "Finds the tools that can do what you describe. Returns the best matches with their names, \
                descriptions and input schemas; call one with call_tool.",
            "inputSchema": { "type": "object", "properties": {
                "query": { "type": "string", "description": "What you want to do, in a few words" },
                "limit": { "type": "integer", "minimum": 1, "maximum": MAX_MATCHES, "description": "How many matches at most (default 5)" },
                "server": { "type": "string", "description": "Only tools of this server (see list_servers)" }
            }, "required": ["query"] },
            "annotations": { "readOnlyHint": true }
        },
        {
            "name": CALL_TOOL,
            "title": "Call a tool",
            "description": "Calls a tool found with search_tools, by its name, with arguments that follow its input schema.",
            "inputSchema": { "type": "object", "properties": {
                "name": { "type": "string", "description": "The tool's name, as search_tools gave it" },
                "arguments": { "type": "object", "description": "The tool's arguments" }
            }, "required": ["name"] }
        },
        {
            "name": LIST_SERVERS,
            "title": "List servers",
            "description": "Lists the servers whose tools can be searched, with how many tools each has.",
            "inputSchema": { "type": "object", "properties": {} },
            "annotations": { "readOnlyHint": true }
        }
    ])
}

/// Every profile's view, and which credential is bound to which profile.
#[derive(Default)]
pub(super) struct Views {
    profiles: Vec<Profile>,
    /// Each name ever configured and its number, kept across reloads so a client's number keeps
    /// meaning its profile.
    ids: HashMap<String, ProfileId>,
    views: HashMap<ProfileId, View>,
    /// Credential label (`key #N`) to the profile it is bound to.
    bound: HashMap<String, ProfileId>,
}

impl Views {
    pub fn new(profiles: Vec<Profile>) -> Views {
        let mut views = Views::default();
        let _ = views.set_profiles(profiles);
        views
    }

    /// Takes a new set of profiles (a reload; true when they differ); the views are built by the next
    /// [`Views::rebuild`].
    pub fn set_profiles(&mut self, profiles: Vec<Profile>) -> bool {
        for profile in &profiles {
            self.number(&profile.name);
        }
        let bound: HashMap<String, ProfileId> =
            profiles.iter().flat_map(|p| p.owners.iter().map(|o| (o.clone(), self.ids[&p.name]))).collect();
        for owner in self.bound.keys().filter(|owner| !bound.contains_key(*owner)) {
            log::warn!("{owner} is bound to no profile any more: it may use every profile and the whole aggregate");
        }
        self.bound = bound;
        let changed = self.profiles != profiles;
        self.profiles = profiles;
        changed
    }

    /// Builds every view again; returns, per profile, the kinds of list that changed, and the
    /// problems found.
    pub fn rebuild(
        &mut self,
        catalog: &Catalog,
        key_of: &dyn Fn(BackendId) -> String,
        complete: bool,
    ) -> (HashMap<ProfileId, Vec<ListKind>>, Vec<String>) {
        let (mut changed, mut problems, mut views) = (HashMap::new(), Vec::new(), HashMap::new());
        for profile in &self.profiles {
            let (view, found) = View::build(profile, catalog, key_of, complete);
            problems.extend(found);
            let id = self.ids[&profile.name];
            changed.insert(id, self.views.get(&id).map(|old| view.changed_since(old)).unwrap_or_default());
            views.insert(id, view);
        }
        self.views = views;
        (changed, problems)
    }

    pub fn get(&self, id: ProfileId) -> Option<&View> {
        self.views.get(&id)
    }

    /// Whether a client of `profile` sees anything of a server (its instructions, logs, questions):
    /// without a profile, every server; with one that is gone, none.
    pub fn shows(&self, profile: Option<ProfileId>, server: BackendId) -> bool {
        profile.is_none_or(|p| self.views.get(&p).is_some_and(|v| v.shows_backend(server)))
    }

    /// The number of a profile name, given now if it has none: a client named a profile that is not
    /// configured (any more) gets a number with no view, so it is refused everything rather than shown
    /// the whole catalog.
    pub fn number(&mut self, name: &str) -> ProfileId {
        let next = ProfileId(NonZeroU32::MIN.saturating_add(u32::try_from(self.ids.len()).unwrap_or(u32::MAX)));
        *self.ids.entry(name.to_owned()).or_insert(next)
    }

    /// The number of a profile configured now.
    pub fn id_of(&self, name: &str) -> Option<ProfileId> {
        self.ids.get(name).copied().filter(|_| self.profiles.iter().any(|p| p.name == name))
    }

    /// The profile a client gets: the one its path names, else the one its credential is bound to,
    /// else none (the whole catalog). A path naming no profile is a 404; a credential bound to another
    /// profile than its path names, a 403.
    pub fn resolve(&self, path: Option<&str>, owner: Option<&str>) -> Result<Option<ProfileId>, (u16, String)> {
        let bound = owner.and_then(|o| self.bound.get(o)).copied();
        let Some(path) = path else { return Ok(bound) };
        let Some(named) = self.id_of(path) else { return Err((404, format!("no profile '{path}' here"))) };
        match bound {
            Some(bound) if bound != named => {
                let name = self.views.get(&bound).map_or("another", |v| v.profile.name.as_str());
                Err((403, format!("this credential is bound to profile '{name}', not '{path}'")))
            }
            _ => Ok(Some(named)),
        }
    }

    /// Each profile, with what it shows and who is bound to it (`--check`, the admin UI).
    pub fn summaries(&self) -> Vec<ProfileSummary> {
        self.profiles
            .iter()
            .map(|p| {
                let view = self.ids.get(&p.name).and_then(|id| self.views.get(id));
                let mut tools: Vec<String> = view.map(|v| v.tools.keys().cloned().collect()).unwrap_or_default();
                tools.sort();
                ProfileSummary { name: p.name.clone(), tools, tool_search: p.tool_search, credentials: p.owners.clone() }
            })
            .collect()
    }
}
