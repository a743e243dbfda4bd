"""Helper of scripts/bench-tool-search.sh (run with .deps/venv/bin/python).

  config WORK   writes WORK/mcp_server.json: the reference catalog of tests/interop/test_tool_search.py
                (peers.reference_catalog) with the profiles `search` ({"toolSearch": true}) and `pair`
                (the filesystem and git servers only); WORK/queries.txt (that test's 20 queries, one a
                line) and WORK/search-args.jsonl (the same as search_tools arguments, one a line).
  sizes URL WORK
                for /mcp (the whole aggregate), /mcp/pair and /mcp/search on the proxy at URL: one
                session each, and the bytes of the tools/list answer as the proxy sent it (the JSON-RPC
                body); prints one `key=value` line per view, and writes the whole aggregate's tools/list
                result to WORK/catalog.json (for the in-process bench).
"""

import json
import sys
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/interop"))

PROTOCOL = "2025-06-18"
TIMEOUT_S = 90  # the first request waits for every backend to start (the proxy's start-up hold)


def config(work: Path) -> None:
    from peers import reference_catalog
    from test_tool_search import QUERIES

    servers = reference_catalog(work)
    profiles = {"search": {"toolSearch": True}, "pair": {"servers": ["filesystem", "git"]}}
    (work / "mcp_server.json").write_text(json.dumps({"mcpServers": servers, "profiles": profiles}, indent=1))
    (work / "queries.txt").write_text("".join(f"{query}\n" for query, _ in QUERIES))
    (work / "search-args.jsonl").write_text("".join(json.dumps({"query": query}) + "\n" for query, _ in QUERIES))
    print(f"servers={len(servers)} queries={len(QUERIES)}")


def post(url: str, message: dict, session: str | None) -> tuple[bytes, str | None]:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if session:
        headers |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": PROTOCOL}
    request = urllib.request.Request(url, data=json.dumps(message).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        body = response.read()
        if response.headers.get_content_type() == "text/event-stream":
            data = [line[5:].strip() for line in body.decode().splitlines() if line.startswith("data:")]
            body = data[-1].encode() if data else b""
        return body, response.headers.get("Mcp-Session-Id") or session


def session(url: str) -> str | None:
    init = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench-tool-search", "version": "0"}}
    _, sid = post(url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}, None)
    post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    return sid


def request(url: str, sid: str | None, method: str, params: dict) -> tuple[bytes, dict]:
    body, _ = post(url, {"jsonrpc": "2.0", "id": 2, "method": method, "params": params}, sid)
    return body, json.loads(body)["result"]


def sizes(base: str, work: Path) -> None:
    for view, path in [("full", "/mcp"), ("pair", "/mcp/pair"), ("search", "/mcp/search")]:
        url = base + path
        sid = session(url)
        body, result = request(url, sid, "tools/list", {})
        servers = {tool["name"].split("__", 1)[0] for tool in result["tools"]}
        print(f"view={view} tools={len(result['tools'])} servers={len(servers) if view != 'search' else '-'} bytes={len(body)} tokens_est={len(body) // 4}")
        if view == "full":
            (work / "catalog.json").write_text(json.dumps(result))
    # What one search costs in turn: the answer of search_tools (default 5 matches) to each query.
    from test_tool_search import QUERIES

    url = base + "/mcp/search"
    sid = session(url)
    answers = [len(request(url, sid, "tools/call", {"name": "search_tools", "arguments": {"query": q}})[0]) for q, _ in QUERIES]
    mean = sum(answers) // len(answers)
    print(f"view=answer tools=5 servers=- bytes={mean} tokens_est={mean // 4} largest={max(answers)} smallest={min(answers)}")


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["config", work]:
            config(Path(work))
        case ["sizes", url, work]:
            sizes(url.rstrip("/"), Path(work))
        case _:
            sys.exit(__doc__)
