//! `hub::catalog::Catalog::build` on arbitrary backends' lists, filters and tool_config overrides:
//! never panics, and what it exposes is consistent: unique tool names of at most 64 bytes, each routed
//! to a ready backend whose tool it names, and each backend tool found again under its exposed name.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mcp_proxy_server::config::{Filter, Filters};
use mcp_proxy_server::hub::catalog::{Catalog, Source};
use mcp_proxy_server::tool_config::Overrides;
use mcp_proxy_server::event::BackendId;
use mcp_proxy_server::tool_config::ToolOverride;
use serde_json::{json, Value};
use std::collections::HashSet;

/// Names from a small alphabet, so that clashes (the interesting cases) are common.
#[derive(Arbitrary, Debug, Clone)]
struct Name(Vec<u8>);

impl Name {
    fn text(&self) -> String {
        const ALPHABET: &[&str] = &["a", "b", "_", "__", "-", "*", "?", "{", "x/", "é", " ", "0123456789abcdef"];
        self.0.iter().take(12).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()]).collect()
    }
}

#[derive(Arbitrary, Debug)]
enum Item {
    Named(Name),
    NoName,
    NotAString(u8),
    NotAnObject,
}

impl Item {
    fn value(&self, member: &str) -> Value {
        match self {
            Item::Named(n) => json!({ member: n.text(), "description": "d", "extra": [1, {"k": null}] }),
            Item::NoName => json!({ "description": "no name" }),
            Item::NotAString(n) => json!({ member: n }),
            Item::NotAnObject => json!("just a string"),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Backend {
    key: Name,
    prefix: Option<Name>,
    ready: bool,
    allow: Vec<Name>,
    deny: Vec<Name>,
    tools: Vec<Item>,
    prompts: Vec<Item>,
    resources: Vec<Item>,
    templates: Vec<Item>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sep: Name,
    backends: Vec<Backend>,
    overrides: Vec<(Name, bool, Option<Name>, Option<Name>)>,
}

struct Owned {
    key: String,
    prefix: String,
    ready: bool,
    filters: Filters,
    tools: Vec<Value>,
    prompts: Vec<Value>,
    resources: Vec<Value>,
    templates: Vec<Value>,
}

fuzz_target!(|input: Input| {
    let sep = input.sep.text();
    let owned: Vec<Owned> = input
        .backends
        .iter()
        .take(6)
        .map(|b| {
            let key = b.key.text();
            let filter = Filter {
                allow: b.allow.iter().take(3).map(Name::text).collect(),
                deny: b.deny.iter().take(3).map(Name::text).collect(),
            };
            Owned {
                prefix: b.prefix.as_ref().map_or_else(|| key.clone(), Name::text),
                key,
                ready: b.ready,
                filters: Filters { tools: filter.clone(), prompts: filter.clone(), resources: filter },
                tools: b.tools.iter().take(16).map(|i| i.value("name")).collect(),
                prompts: b.prompts.iter().take(8).map(|i| i.value("name")).collect(),
                resources: b.resources.iter().take(8).map(|i| i.value("uri")).collect(),
                templates: b.templates.iter().take(4).map(|i| i.value("uriTemplate")).collect(),
            }
        })
        .collect();
    let overrides: Overrides = input
        .overrides
        .iter()
        .take(8)
        .map(|(k, enabled, name, description)| {
            let over = ToolOverride {
                enabled: *enabled,
                exposed_name: name.as_ref().map(Name::text),
                exposed_description: description.as_ref().map(Name::text),
            };
            (k.text(), over)
        })
        .collect();
    let sources: Vec<Source> = owned
        .iter()
        .enumerate()
        .map(|(i, o)| Source {
            id: BackendId(i),
            key: &o.key,
            prefix: &o.prefix,
            ready: o.ready,
            filters: &o.filters,
            tools: &o.tools,
            prompts: &o.prompts,
            resources: &o.resources,
            templates: &o.templates,
        })
        .collect();
    let (catalog, _found) = Catalog::build(&sources, &sep, &overrides);

    let mut seen = HashSet::new();
    for tool in &catalog.tools {
        let exposed = tool["name"].as_str().expect("exposed tools have a string name");
        assert!(seen.insert(exposed.to_owned()), "tool '{exposed}' exposed twice");
        assert!(exposed.len() <= 64 || exposed.is_empty(), "'{exposed}' is over 64 bytes");
        let route = catalog.tool(exposed).expect("every listed tool is routed");
        let src = &owned[route.backend.0];
        assert!(src.ready, "'{exposed}' routed to a backend that is down");
        assert!(src.tools.iter().any(|t| t["name"] == route.name.as_str()), "'{exposed}' routed to a tool its backend lacks");
        assert_eq!(catalog.exposed_name(route.backend, &route.name), Some(exposed));
        assert!(catalog.withdrawn_tool(exposed).is_none() || catalog.tool(exposed).is_some());
    }
    let mut prompts = HashSet::new();
    for prompt in &catalog.prompts {
        let exposed = prompt["name"].as_str().expect("exposed prompts have a string name");
        assert!(prompts.insert(exposed.to_owned()), "prompt '{exposed}' exposed twice");
        let route = catalog.prompt(exposed).expect("every listed prompt is routed");
        assert!(owned[route.backend.0].ready);
    }
    for resource in &catalog.resources {
        let uri = resource["uri"].as_str().expect("exposed resources have a string uri");
        let owner = catalog.resource_owner(uri).expect("a listed resource has an owner");
        assert!(owned[owner.0].ready);
    }
    let _ = catalog.resource_owner("x/anything");
});
