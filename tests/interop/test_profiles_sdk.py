"""Interop: tool profiles seen by the official MCP Python SDK clients.

The proxy aggregates two real, pinned servers (installed by scripts/install-test-deps.sh):

- ``everything``: @modelcontextprotocol/server-everything (tools, prompts, resources, resource
  templates and completions)
- ``time``: mcp-server-time (two tools)

and its config has three profiles (``PROFILES``):

- ``research``: both servers, narrowed by globs (two tools of ``time``, ``everything__echo``; two
  prompts; one static resource and the dynamic text template), ``time__get_current_time`` renamed to
  ``now``; bound to the API key ``k-research`` and the bearer token ``t-research``;
- ``clock``: the ``time`` server only; bound to the API key ``k-clock``;
- ``demo``: the ``everything`` server only; bound to nothing.

``k-free`` is an API key bound to no profile. A client reaches a profile the way a user of it would:
over stdio with ``--profile NAME``, over Streamable HTTP (``/mcp``) and legacy HTTP+SSE (``/sse``,
whose session then posts to ``/message``) with the key bound to it on the default path, or with an
unbound key on the profile's own path (``/mcp/NAME``, ``/sse/NAME``).

Each test proves one behaviour: the two keys see different lists (tools, prompts, resources), a
tool, prompt, resource or completion outside a client's profile is refused with the error an unknown
one gets while those inside are served, a renamed tool is listed and called under its new name only,
a profile's lists are sorted, a key on another profile's path gets HTTP 403, an unknown profile path
404, a bearer token or a key in the query string gets its profile as a key header does, an unbound
key may use any profile path and sees the whole aggregate on the default path, and ``--list-tools
--profile`` prints the profile's tools.

The proxies are started once for the module: one over HTTP, and one over stdio per profile (a stdio
proxy has one client), each with its SDK session. Those sessions live in an event loop running in a
thread for the module (an anyio blocking portal) and every test runs its scenario there, so a test
that uses stdio shares its profile's session with the others. The proxy binary is ``MCP_PROXY_BIN``
(default ``target/debug/mcp-proxy-server``); it is not built here.
"""

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from peers import HttpProxy, everything, proxy_bin, proxy_env, time_server, only_text

SESSION_TIMEOUT_S = 30
REFUSAL_TIMEOUT_S = 10

KEYS = {"research": "k-research", "clock": "k-clock"}
RESEARCH_TOKEN = "t-research"
FREE_KEY = "k-free"  # in ALLOWED_KEYS, bound to no profile

FEATURES = "demo://resource/static/document/features.md"
ARCHITECTURE = "demo://resource/static/document/architecture.md"
TEXT_TEMPLATE = "demo://resource/dynamic/text/{resourceId}"
BLOB_TEMPLATE = "demo://resource/dynamic/blob/{resourceId}"

PROFILES = {
    "research": {
        "servers": ["time", "everything"],
        "tools": {"allow": ["time__*", "everything__echo"]},
        "prompts": {"allow": ["args-prompt", "completable-prompt"]},
        "resources": {"allow": [FEATURES, "demo://resource/dynamic/text/*"]},
        "rename": {"time__get_current_time": "now"},
        "keys": [KEYS["research"]],
        "tokens": [RESEARCH_TOKEN],
    },
    "clock": {"servers": ["time"], "keys": [KEYS["clock"]]},
    "demo": {"servers": ["everything"]},
}

RESEARCH_TOOLS = ["everything__echo", "now", "time__convert_time"]
CLOCK_TOOLS = ["time__convert_time", "time__get_current_time"]

STDIO, SSE, STREAMABLE_HTTP = "stdio", "sse", "streamable_http"
HTTP_TRANSPORTS = [SSE, STREAMABLE_HTTP]
TRANSPORTS = [STDIO, *HTTP_TRANSPORTS]
ENDPOINTS = {SSE: "/sse", STREAMABLE_HTTP: "/mcp"}


# --- the proxy ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """mcp_server.json: both reference servers and the three profiles."""
    path = tmp_path_factory.mktemp("profiles") / "mcp_server.json"
    path.write_text(json.dumps({"mcpServers": {"everything": everything(), "time": time_server()}, "profiles": PROFILES}))
    return path


@pytest.fixture(scope="module")
def http(config) -> Iterator[HttpProxy]:
    """The proxy over HTTP, with the profiles' keys and token and one unbound key configured."""
    env = proxy_env(ALLOWED_KEYS=",".join([*KEYS.values(), FREE_KEY]), ALLOWED_TOKENS=RESEARCH_TOKEN)
    proxy = HttpProxy(config, env)
    yield proxy
    proxy.stop()


def base_url(proxy: HttpProxy) -> str:
    return proxy.url.removesuffix("/mcp")


# --- SDK sessions ------------------------------------------------------------------------------


def recording_factory(statuses: list[int]) -> Callable[..., httpx2.AsyncClient]:
    """An httpx2 client factory (the SDK's signature) that records every response status."""

    async def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    def factory(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
        timeout = timeout or httpx2.Timeout(30, read=300)
        return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, event_hooks={"response": [record]})

    return factory


@asynccontextmanager
async def http_session(
    proxy: HttpProxy,
    transport: str,
    headers: dict[str, str],
    profile: str | None = None,
    statuses: list[int] | None = None,
    query: str = "",
) -> AsyncIterator[ClientSession]:
    """An initialized SDK session on the HTTP proxy over `transport`, at the default path or at
    `profile`'s path (with `query`), sending `headers` with every request. The proxy's log lines written
    meanwhile are printed when it ends (pytest shows them with a failure)."""
    url = base_url(proxy) + ENDPOINTS[transport] + (f"/{profile}" if profile else "") + query
    factory = recording_factory(statuses if statuses is not None else [])
    log_start = proxy.log.stat().st_size
    try:
        if transport == SSE:
            async with sse_client(url, headers=headers, httpx_client_factory=factory) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    yield session
        else:
            async with factory(headers=headers) as client, streamable_http_client(url, http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    yield session
    finally:
        log = proxy.log.read_bytes()[log_start:].decode(errors="replace")
        print(f"--- proxy log during the {transport} session at {url} ---\n{log}", file=sys.stderr)


class StdioProxy:
    """A proxy over stdio started with `--profile`, and an SDK session on it. A stdio proxy has one client,
    so the proxy of each profile runs for the whole module, its stderr kept in a file."""

    def __init__(self, config: Path, profile: str) -> None:
        self.config, self.profile = config, profile
        self.errlog = tempfile.TemporaryFile("w+")
        self.session: ClientSession | None = None

    def stderr(self, start: int = 0) -> str:
        """Its stderr from byte `start` on (read without moving the offset the proxy writes at)."""
        fd = self.errlog.fileno()
        return os.pread(fd, os.fstat(fd).st_size - start, start).decode(errors="replace")

    async def serve(self, ready: anyio.Event, closing: anyio.Event) -> None:
        """Starts the proxy, initializes a session, sets `ready`, and stops the proxy once `closing` is set."""
        args = ["--config", str(self.config), "--profile", self.profile]
        server = StdioServerParameters(command=proxy_bin(), args=args, env=proxy_env())
        try:
            async with stdio_client(server, errlog=self.errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                self.session = session
                ready.set()
                await closing.wait()
        except BaseException:
            print(f"--- stderr of the proxy with --profile {self.profile} ---\n{self.stderr()}", file=sys.stderr)
            raise
        finally:
            self.session = None

    @asynccontextmanager
    async def use(self) -> AsyncIterator[ClientSession]:
        """The session, for one test; the proxy's stderr written meanwhile is printed when it ends."""
        assert self.session is not None, f"the proxy with --profile {self.profile} is not running"
        start = os.fstat(self.errlog.fileno()).st_size
        try:
            yield self.session
        finally:
            print(f"--- stderr of the proxy with --profile {self.profile} ---\n{self.stderr(start)}", file=sys.stderr)


@asynccontextmanager
async def serving(proxies: list[StdioProxy]) -> AsyncIterator[None]:
    """The stdio proxies, started together, for the time of a `with`."""
    closing = anyio.Event()
    async with anyio.create_task_group() as tasks:
        ready = [anyio.Event() for _ in proxies]
        for proxy, started in zip(proxies, ready):
            tasks.start_soon(proxy.serve, started, closing)
        with anyio.fail_after(SESSION_TIMEOUT_S):
            for started in ready:
                await started.wait()
        try:
            yield
        finally:
            closing.set()


class Clients:
    """How a test reaches a profile over a transport. Scenarios run in the module's event loop (in a
    thread of its own), where the stdio sessions live."""

    def __init__(self, portal: BlockingPortal, stdio: dict[str, StdioProxy], http: HttpProxy) -> None:
        self.portal, self.stdio, self.http = portal, stdio, http

    def of(self, transport: str, profile: str) -> Any:
        """A session of `profile` as its user opens it: over stdio with --profile; over HTTP with the key
        bound to it on the default path, or (bound to no key) with the unbound key on its path."""
        if transport == STDIO:
            return self.stdio[profile].use()
        if profile in KEYS:
            return http_session(self.http, transport, {"X-Api-Key": KEYS[profile]})
        return http_session(self.http, transport, {"X-Api-Key": FREE_KEY}, profile=profile)

    def with_key(self, transport: str, key: str, profile: str | None = None, statuses: list[int] | None = None) -> Any:
        """A session over HTTP with API key `key`, at the default path or at `profile`'s."""
        return http_session(self.http, transport, {"X-Api-Key": key}, profile, statuses)

    def run(self, scenario: Callable[[], Awaitable[None]], timeout: float = SESSION_TIMEOUT_S) -> None:
        """Runs an async scenario under a timeout."""

        async def bounded() -> None:
            with anyio.fail_after(timeout):
                await scenario()

        self.portal.call(bounded)


@pytest.fixture(scope="module")
def clients(config, http) -> Iterator[Clients]:
    """The HTTP proxy, and a stdio proxy of each profile running in the module's event loop."""
    stdio = {profile: StdioProxy(config, profile) for profile in PROFILES}
    try:
        with start_blocking_portal() as portal, portal.wrap_async_context_manager(serving(list(stdio.values()))):
            yield Clients(portal, stdio, http)
    finally:
        for proxy in stdio.values():
            proxy.errlog.close()


@asynccontextmanager
async def sessions(clients: Clients, transport: str, *profiles: str) -> AsyncIterator[list[ClientSession]]:
    """A session of each of `profiles`, open at once."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(clients.of(transport, profile)) for profile in profiles]


async def tool_names(session: ClientSession) -> list[str]:
    """The names of every tool listed, in the order listed (following pagination cursors)."""
    names: list[str] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        names += [tool.name for tool in page.tools]
        cursor = page.next_cursor
        if not cursor:
            return names


async def prompt_names(session: ClientSession) -> list[str]:
    result = await session.list_prompts()
    assert not result.next_cursor, "a profile's prompts come in one page"
    return [prompt.name for prompt in result.prompts]


async def resource_uris(session: ClientSession) -> list[str]:
    result = await session.list_resources()
    assert not result.next_cursor, "a profile's resources come in one page"
    return [str(resource.uri) for resource in result.resources]


async def template_uris(session: ClientSession) -> list[str]:
    result = await session.list_resource_templates()
    assert not result.next_cursor, "a profile's resource templates come in one page"
    return [template.uri_template for template in result.resource_templates]


async def refused(request: Awaitable[Any]) -> MCPError:
    """The JSON-RPC error a request is answered with (the test fails if it succeeds)."""
    try:
        result = await request
    except MCPError as error:
        return error
    pytest.fail(f"served instead of refused: {result}", pytrace=False)


def code_and_message(error: MCPError) -> tuple[int, str]:
    return error.code, error.message


def complete_prompt(session: ClientSession, prompt: str, argument: str, value: str) -> Awaitable[types.CompleteResult]:
    """completion/complete of a prompt's argument."""
    return session.complete(types.PromptReference(type="ref/prompt", name=prompt), {"name": argument, "value": value})


def complete_template(session: ClientSession, template: str, argument: str, value: str) -> Awaitable[types.CompleteResult]:
    """completion/complete of a resource template's variable."""
    return session.complete(types.ResourceTemplateReference(type="ref/resource", uri=template), {"name": argument, "value": value})


def read_text(result: types.ReadResourceResult) -> str:
    [contents] = result.contents
    assert isinstance(contents, types.TextResourceContents), contents
    return contents.text


# --- two keys, two profiles: lists -------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_profiles_list_different_tools(clients, transport):
    async def scenario():
        async with sessions(clients, transport, "research", "clock") as (research, clock):
            assert await tool_names(research) == RESEARCH_TOOLS
            assert await tool_names(clock) == CLOCK_TOOLS

    clients.run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_profiles_list_different_prompts_and_resources(clients, transport):
    async def scenario():
        async with sessions(clients, transport, "research", "clock") as (research, clock):
            assert await prompt_names(research) == ["args-prompt", "completable-prompt"]
            assert await resource_uris(research) == [FEATURES]
            assert await template_uris(research) == [TEXT_TEMPLATE]
            assert (await prompt_names(clock), await resource_uris(clock), await template_uris(clock)) == ([], [], []), (
                "the time server has no prompts or resources, and clock shows no other server"
            )

    clients.run(scenario)


# --- tools -------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_tool_outside_the_profile_is_an_unknown_tool(clients, transport):
    async def scenario():
        async with sessions(clients, transport, "research", "clock") as (research, clock):
            other_server = await refused(clock.call_tool("everything__echo", {"message": "hi"}))
            filtered_out = await refused(research.call_tool("everything__get-sum", {"a": 1, "b": 2}))
        assert code_and_message(other_server) == (-32602, "Unknown tool: 'everything__echo'"), "a server clock does not show"
        assert code_and_message(filtered_out) == (-32602, "Unknown tool: 'everything__get-sum'"), "a tool research's globs leave out"

    clients.run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_tool_inside_the_profile_is_called(clients, transport):
    async def scenario():
        async with sessions(clients, transport, "research", "clock") as (research, clock):
            echoed = only_text(await research.call_tool("everything__echo", {"message": f"research over {transport}"}))
            now = json.loads(only_text(await clock.call_tool("time__get_current_time", {"timezone": "UTC"})))
        assert echoed == f"Echo: research over {transport}"
        assert now["timezone"] == "UTC", now

    clients.run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_renamed_tool_is_listed_and_called_under_its_new_name(clients, transport):
    async def scenario():
        async with clients.of(transport, "research") as research:
            assert "now" in await tool_names(research)
            now = json.loads(only_text(await research.call_tool("now", {"timezone": "Europe/Paris"})))
        assert now["timezone"] == "Europe/Paris", now

    clients.run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_renamed_tool_is_unknown_under_its_old_name(clients, transport):
    async def scenario():
        async with clients.of(transport, "research") as research:
            error = await refused(research.call_tool("time__get_current_time", {"timezone": "UTC"}))
        assert code_and_message(error) == (-32602, "Unknown tool: 'time__get_current_time'")

    clients.run(scenario)


# --- prompts, resources, completions -----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_prompt_inside_the_profile_is_got(clients, transport):
    async def scenario():
        async with clients.of(transport, "research") as research:
            result = await research.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"})
        [message] = result.messages
        assert isinstance(message.content, types.TextContent), message
        assert message.content.text == "What's weather in Paris, IDF?"

    clients.run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_prompt_outside_the_profile_is_an_unknown_prompt(clients, transport):
    async def scenario():
        async with sessions(clients, transport, "research", "clock") as (research, clock):
            other_server = await refused(clock.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"}))
            filtered_out = await refused(research.get_prompt("simple-prompt"))
        assert code_and_message(other_server) == (-32602, "Unknown prompt: 'args-prompt'"), "a server clock does not show"
        assert code_and_message(filtered_out) == (-32602, "Unknown prompt: 'simple-prompt'"), "a prompt research's globs leave out"

    clients.run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_resource_inside_the_profile_is_read(clients, transport):
    async def scenario():
        async with clients.of(transport, "research") as research:
            static = read_text(await research.read_resource(FEATURES))
            dynamic = read_text(await research.read_resource("demo://resource/dynamic/text/7"))
        assert static.startswith("# Everything Server - Features"), static[:80]
        assert "7" in dynamic, dynamic

    clients.run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_resource_outside_the_profile_is_an_unknown_resource(clients, transport):
    async def scenario():
        async with sessions(clients, transport, "research", "clock") as (research, clock):
            errors = {
                "of a server clock does not show": await refused(clock.read_resource(FEATURES)),
                "left out by research's globs": await refused(research.read_resource(ARCHITECTURE)),
                "of a template research's globs leave out": await refused(research.read_resource("demo://resource/dynamic/blob/7")),
            }
        for what, error in errors.items():
            assert error.code == -32002 and error.message.startswith("Unknown resource"), f"a resource {what}: {code_and_message(error)}"

    clients.run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_completion_inside_the_profile_is_answered(clients, transport):
    async def scenario():
        async with clients.of(transport, "research") as research:
            prompt = await complete_prompt(research, "completable-prompt", "department", "Eng")
            template = await complete_template(research, TEXT_TEMPLATE, "resourceId", "42")
        assert prompt.completion.values == ["Engineering"]
        assert template.completion.values == ["42"]

    clients.run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_completion_outside_the_profile_is_refused(clients, transport):
    async def scenario():
        async with sessions(clients, transport, "research", "clock") as (research, clock):
            errors = {
                "a prompt of a server clock does not show": await refused(complete_prompt(clock, "completable-prompt", "department", "Eng")),
                "a prompt research's globs leave out": await refused(complete_prompt(research, "resource-prompt", "resourceType", "T")),
                "a template research's globs leave out": await refused(complete_template(research, BLOB_TEMPLATE, "resourceId", "42")),
            }
        for what, error in errors.items():
            assert error.code == -32602 and error.message.startswith("Unknown completion ref"), f"{what}: {code_and_message(error)}"

    clients.run(scenario)


# --- sorting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_profiles_lists_are_sorted(clients, transport):
    """demo shows everything of server-everything, which lists its tools, prompts and templates in an
    order of its own (not sorted, as the whole aggregate shows); the profile lists them sorted by name
    and URI."""

    async def scenario():
        async with clients.with_key(STREAMABLE_HTTP, FREE_KEY) as whole:
            unsorted = {
                "tools": await tool_names(whole),
                "prompts": await prompt_names(whole),
                "resource templates": await template_uris(whole),
            }
        assert all(listed != sorted(listed) for listed in unsorted.values()), f"precondition: the aggregate lists them unsorted: {unsorted}"
        async with clients.of(transport, "demo") as demo:
            lists = {
                "tools": await tool_names(demo),
                "prompts": await prompt_names(demo),
                "resources": await resource_uris(demo),
                "resource templates": await template_uris(demo),
            }
        assert len(lists["tools"]) > 10 and len(lists["prompts"]) == 4 and len(lists["resource templates"]) == 2, lists
        for kind, listed in lists.items():
            assert listed == sorted(listed), f"{kind} not sorted: {listed}"

    clients.run(scenario)


# --- HTTP: paths, keys and tokens --------------------------------------------------------------


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_a_key_on_another_profiles_path_is_refused_with_403(clients, transport):
    async def scenario():
        statuses: list[int] = []
        # sse_client raises the HTTP error (in an exception group); the Streamable HTTP client turns it
        # into a JSON-RPC error for `initialize`. Either way no session may come up.
        with pytest.raises(Exception) as caught:
            async with clients.with_key(transport, KEYS["research"], profile="clock", statuses=statuses):
                pass
        assert not caught.errisinstance(TimeoutError), "the SDK hung instead of being refused"
        assert statuses and set(statuses) == {403}, statuses

    clients.run(scenario, REFUSAL_TIMEOUT_S)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_the_403_names_the_profile_the_key_is_bound_to(http, transport):
    url = base_url(http) + ENDPOINTS[transport] + "/clock"
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }
    headers = {"X-Api-Key": KEYS["research"], "Accept": "application/json, text/event-stream"}
    with httpx2.Client(timeout=REFUSAL_TIMEOUT_S) as client:
        if transport == SSE:
            response = client.get(url, headers=headers)
        else:
            response = client.post(url, headers=headers, json=initialize)
    assert response.status_code == 403, response.text
    why = response.json()["error"]
    assert "'research'" in why and "'clock'" in why, why


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_an_unknown_profile_path_is_refused_with_404(clients, transport):
    async def scenario():
        statuses: list[int] = []
        with pytest.raises(Exception) as caught:
            async with clients.with_key(transport, FREE_KEY, profile="nonesuch", statuses=statuses):
                pass
        assert not caught.errisinstance(TimeoutError), "the SDK hung instead of being refused"
        assert statuses and set(statuses) == {404}, statuses

    clients.run(scenario, REFUSAL_TIMEOUT_S)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_a_key_on_its_own_profiles_path_gets_its_profile(clients, transport):
    async def scenario():
        async with clients.with_key(transport, KEYS["research"], profile="research") as research:
            assert await tool_names(research) == RESEARCH_TOOLS
            assert only_text(await research.call_tool("everything__echo", {"message": "own path"})) == "Echo: own path"

    clients.run(scenario)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_a_bearer_token_bound_to_a_profile_gets_its_profile(clients, transport):
    async def scenario():
        async with http_session(clients.http, transport, {"Authorization": f"Bearer {RESEARCH_TOKEN}"}) as research:
            assert await tool_names(research) == RESEARCH_TOOLS
            error = await refused(research.call_tool("time__get_current_time", {"timezone": "UTC"}))
        assert error.message == "Unknown tool: 'time__get_current_time'"

    clients.run(scenario)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_a_key_in_the_query_string_gets_its_profile(clients, transport):
    """`?key=` (the original proxy's URL form); over legacy SSE the endpoint carries it on to /message."""

    async def scenario():
        async with http_session(clients.http, transport, {}, query=f"?key={KEYS['clock']}") as clock:
            assert await tool_names(clock) == CLOCK_TOOLS
            error = await refused(clock.call_tool("everything__echo", {"message": "hi"}))
        assert error.message == "Unknown tool: 'everything__echo'"

    clients.run(scenario)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_an_unbound_key_may_use_any_profiles_path(clients, transport):
    async def scenario():
        async with AsyncExitStack() as stack:
            research = await stack.enter_async_context(clients.with_key(transport, FREE_KEY, profile="research"))
            clock = await stack.enter_async_context(clients.with_key(transport, FREE_KEY, profile="clock"))
            assert await tool_names(research) == RESEARCH_TOOLS
            assert await tool_names(clock) == CLOCK_TOOLS
            error = await refused(clock.call_tool("everything__echo", {"message": "hi"}))
        assert error.message == "Unknown tool: 'everything__echo'", "the path's profile holds for an unbound key too"

    clients.run(scenario)


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
def test_an_unbound_key_on_the_default_path_sees_the_whole_aggregate(clients, transport):
    async def scenario():
        async with clients.with_key(transport, FREE_KEY) as whole:
            tools = await tool_names(whole)
            prompts = await prompt_names(whole)
            echoed = only_text(await whole.call_tool("everything__get-sum", {"a": 1, "b": 2}))
        assert {"everything__echo", "everything__get-sum", "time__get_current_time", "time__convert_time"} <= set(tools), tools
        assert "now" not in tools, "a profile's rename does not reach clients without the profile"
        assert set(prompts) == {"simple-prompt", "args-prompt", "completable-prompt", "resource-prompt"}, prompts
        assert "3" in echoed, echoed

    clients.run(scenario)


def test_what_profiles_refuse_is_served_without_a_profile(clients):
    """The refusals above come from the profiles: the same prompt, resource and completions are served
    to a client that has none."""

    async def scenario():
        async with clients.with_key(STREAMABLE_HTTP, FREE_KEY) as whole:
            prompt = await whole.get_prompt("simple-prompt")
            architecture = read_text(await whole.read_resource(ARCHITECTURE))
            completed = await complete_prompt(whole, "resource-prompt", "resourceType", "T")
            blob = await complete_template(whole, BLOB_TEMPLATE, "resourceId", "42")
        assert prompt.messages, prompt
        assert architecture.startswith("#"), architecture[:80]
        assert completed.completion.values == ["Text"]
        assert blob.completion.values == ["42"]

    clients.run(scenario)


# --- the command line --------------------------------------------------------------------------


def test_list_tools_with_a_profile_prints_only_its_tools(config):
    done = subprocess.run(
        [proxy_bin(), "--config", str(config), "--list-tools", "--profile", "clock"],
        capture_output=True,
        text=True,
        timeout=SESSION_TIMEOUT_S,
        env=proxy_env(),
    )
    print(f"--- stderr of --list-tools ---\n{done.stderr}", file=sys.stderr)
    assert done.returncode == 0, done.stdout
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.strip() and not line.endswith(" tools")]
    assert listed == CLOCK_TOOLS, done.stdout
