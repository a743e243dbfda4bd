//! The in-process cost of tool search (`src/search.rs`), without the proxy around it: building the
//! index over a catalog, and ranking the catalog for a query as `search_tools` does (every tool
//! scored and sorted, then the best kept). Prints numbers, asserts nothing.
//!
//!   cargo bench --bench tool_search -- CATALOG QUERIES [ROUNDS]
//!
//! CATALOG: a JSON file holding a `tools/list` result (`{"tools": [...]}`) or the array of tools;
//! QUERIES: a text file, one query a line; ROUNDS (default 1000): searches timed, cycling through the
//! queries. `scripts/bench-tool-search.sh` makes both files from the reference catalog and runs this.

use mcp_proxy_server::search::Index;
use serde_json::Value;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let (Some(catalog), Some(queries)) = (args.first(), args.get(1)) else {
        eprintln!("usage: cargo bench --bench tool_search -- CATALOG.json QUERIES.txt [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args.get(2).map_or(1000, |r| r.parse().expect("ROUNDS is a number"));
    let catalog: Value = serde_json::from_str(&std::fs::read_to_string(catalog).expect("CATALOG is readable")).expect("CATALOG is JSON");
    let tools: Vec<Value> = match catalog {
        Value::Array(tools) => tools,
        mut result => serde_json::from_value(result["tools"].take()).expect("CATALOG has a \"tools\" array"),
    };
    let text = std::fs::read_to_string(queries).expect("QUERIES is readable");
    let queries: Vec<&str> = text.lines().map(str::trim).filter(|q| !q.is_empty()).collect();
    assert!(!queries.is_empty(), "QUERIES has no line");
    let names: Vec<&str> = tools.iter().map(|t| t.get("name").and_then(Value::as_str).unwrap_or_default()).collect();

    let mut build = Vec::new();
    let mut index = Index::build(&tools);
    for _ in 0..rounds.clamp(10, 200) {
        let start = Instant::now();
        index = Index::build(&tools);
        build.push(start.elapsed().as_nanos() as u64);
    }
    let mut found = 0;
    for query in &queries {
        found += index.search(query, tools.len(), &names).len(); // warm-up
    }
    let mut search = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let start = Instant::now();
        let ranked = index.search(queries[i % queries.len()], tools.len(), &names);
        search.push(start.elapsed().as_nanos() as u64);
        found += ranked.len();
    }
    println!("tools={} queries={} rounds={rounds} matches_seen={found}", tools.len(), queries.len());
    println!("index_build {}", summary(build));
    println!("search {}", summary(search));
}

/// p50, p99, mean and max in microseconds.
fn summary(mut ns: Vec<u64>) -> String {
    ns.sort_unstable();
    let n = ns.len();
    let at = |q: usize| ns[(n * q / 100).min(n - 1)] as f64 / 1000.0;
    let mean = ns.iter().sum::<u64>() as f64 / n as f64 / 1000.0;
    format!("p50_us={:.1} p99_us={:.1} mean_us={:.1} max_us={:.1}", at(50), at(99), mean, ns[n - 1] as f64 / 1000.0)
}
