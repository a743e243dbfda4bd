"""Interop: isolation per client session (`"isolation": "session"`) with the official Python SDK clients.

Two clients of different transports, one over legacy HTTP+SSE (``sse_client`` on ``/sse``) and one over
Streamable HTTP (``streamable_http_client`` on ``/mcp``), each with sampling and elicitation callbacks that
answer with something of their own and record what they are asked, call the same sampling tool, then the
same elicitation tool, at the same moment, for 20 rounds, in front of one stdio backend:

- ``@modelcontextprotocol/server-everything`` (TypeScript SDK), isolated: its
  ``trigger-sampling-request`` and ``trigger-elicitation-request`` tools;
- ``tests/fixtures/isolation_server.py`` (Python SDK), isolated: its ``ask_model`` and ``ask_user``
  tools, whose calls wait for each other before asking and before returning, so both calls are in
  flight whenever either asks;
- both shared (no ``"isolation"``), with both clients' calls in flight whenever the backend asks (the
  fixture's calls wait for each other; server-everything is kept busy by a long-running call of each
  client): there the proxy cannot tell which client a question is for, answers the backend with the
  documented error, and the callers get it back (a tool error from server-everything, a JSON-RPC error
  from the Python SDK server, which re-raises it); no client is asked anything.

Isolated, each client is asked only its own questions and each call's result carries its own client's
answer; and each client session has a process of its own (the fixture's ``whoami``).

The proxy binary is ``MCP_PROXY_BIN`` (default ``target/debug/mcp-proxy-server``).
"""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import ClientSession, MCPError, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from peers import PYTHON, INSTALL_HINT, everything, http_proxy, proxy_env, require, run

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/isolation_server.py"
ROUNDS = 20
TIMEOUT_S = 50
TRANSPORTS = ("sse", "streamable_http")
ISOLATED = {"isolation": "session"}
# Over HTTP the proxy declares to backends what its clients can answer, since they come and go; the
# template of an isolated server-everything lists its sampling and elicitation tools only then.
ENV = proxy_env(MCP_PROXY_CLIENT_CAPABILITIES="sampling,elicitation")


def fixture(**entry: Any) -> dict[str, Any]:
    """tests/fixtures/isolation_server.py, asking the handshake-era way (requests to its client)."""
    return {"command": require(PYTHON, INSTALL_HINT), "args": [require(FIXTURE, "tests/fixtures is incomplete")], "protocol": "legacy"} | entry


def collision(key: str) -> str:
    """What the proxy answers a shared server's question while several clients are calling it."""
    return f"several clients are calling server '{key}' at once; set \"isolation\": \"session\" on it"


class Party:
    """A client: its transport, its session, and its callbacks, which answer with its own name and
    record every question they get."""

    def __init__(self, transport: str) -> None:
        self.name = f"{transport}-client"
        self.session: ClientSession
        self.sampled: list[str] = []
        self.elicited: list[str] = []

    def model_answer(self, question: str) -> str:
        return f"{self.name} answers [{question}]"

    def user_answer(self, count: int) -> str:
        return f"{self.name} #{count}"

    async def sample(self, context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        question = " ".join(m.content.text for m in params.messages if isinstance(m.content, types.TextContent))
        self.sampled.append(question)
        content = types.TextContent(type="text", text=self.model_answer(question))
        return types.CreateMessageResult(role="assistant", content=content, model="test-model", stop_reason="endTurn")

    async def elicit(self, context, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicited.append(params.message)
        return types.ElicitResult(action="accept", content={"name": self.user_answer(len(self.elicited)), "check": True})


@asynccontextmanager
async def connected(mcp_url: str, transport: str) -> AsyncIterator[Party]:
    """An initialized SDK session over `transport` with its party's callbacks."""
    party = Party(transport)
    callbacks = {"sampling_callback": party.sample, "elicitation_callback": party.elicit}
    if transport == "sse":
        async with sse_client(mcp_url.removesuffix("/mcp") + "/sse") as (read, write):
            async with ClientSession(read, write, **callbacks) as party.session:
                await party.session.initialize()
                yield party
    else:
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300)) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write, **callbacks) as party.session:
                    await party.session.initialize()
                    yield party


@asynccontextmanager
async def two_clients(tmp: Path, servers: dict[str, Any]) -> AsyncIterator[tuple[Party, Party]]:
    """The proxy over HTTP on `servers`, and one client over each transport, under the test's timeout."""
    with anyio.fail_after(TIMEOUT_S):
        async with http_proxy(tmp, servers, ENV) as url, AsyncExitStack() as stack:
            yield tuple([await stack.enter_async_context(connected(url, transport)) for transport in TRANSPORTS])


async def at_once(calls: dict[Party, Any]) -> dict[Party, types.CallToolResult | MCPError]:
    """Runs each party's call concurrently; each one's result, or the JSON-RPC error it got."""
    results: dict[Party, types.CallToolResult | MCPError] = {}

    async def call(party: Party, coroutine) -> None:
        try:
            results[party] = await coroutine
        except MCPError as error:
            results[party] = error

    async with anyio.create_task_group() as tasks:
        for party, coroutine in calls.items():
            tasks.start_soon(call, party, coroutine)
    return results


def text_of(result: types.CallToolResult | MCPError) -> str:
    if isinstance(result, MCPError):
        return f"error {result.error.code}: {result.error.message}"
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def succeeded(party: Party, result: types.CallToolResult | MCPError, what: str) -> str:
    """The text of a successful result, or the test fails naming the call."""
    assert isinstance(result, types.CallToolResult) and not result.is_error, f"{party.name}'s {what} failed: {text_of(result)}"
    return text_of(result)


async def wait_for_tools(party: Party, names: set[str]) -> None:
    """Waits until `names` are listed: server-everything adds its sampling and elicitation tools once it
    knows its client can answer them, after its handshake."""
    with anyio.fail_after(10):
        while not names <= {tool.name for tool in (await party.session.list_tools()).tools}:
            await anyio.sleep(0.1)


# ----- isolated ----------------------------------------------------------------------------------------


def test_isolated_server_everything_asks_each_of_two_simultaneous_clients_only_its_own_questions(tmp_path):
    sampling_tool, elicitation_tool = "everything__trigger-sampling-request", "everything__trigger-elicitation-request"

    async def scenario():
        async with two_clients(tmp_path, {"everything": everything() | ISOLATED}) as parties:
            await wait_for_tools(parties[0], {sampling_tool, elicitation_tool})
            for n in range(1, ROUNDS + 1):
                prompts = {party: f"round {n} prompt of {party.name}" for party in parties}
                sampled = await at_once({p: p.session.call_tool(sampling_tool, {"prompt": prompts[p], "maxTokens": 10}) for p in parties})
                elicited = await at_once({p: p.session.call_tool(elicitation_tool, {}) for p in parties})
                for party in parties:
                    text = succeeded(party, sampled[party], f"round {n} sampling call")
                    assert len(party.sampled) == n, f"round {n}: {party.name} was asked to sample {party.sampled}"
                    assert prompts[party] in party.sampled[-1], f"round {n}: {party.name} was asked {party.sampled[-1]!r}"
                    assert party.model_answer(party.sampled[-1]) in text, f"round {n}: {party.name}'s sampling call got {text!r}"
                    text = succeeded(party, elicited[party], f"round {n} elicitation call")
                    assert len(party.elicited) == n, f"round {n}: {party.name} was asked to elicit {party.elicited}"
                    assert f"- Name: {party.user_answer(n)}\n" in text, f"round {n}: {party.name}'s elicitation call got {text!r}"

    run(scenario)


def test_isolated_sdk_server_asks_each_of_two_clients_only_its_own_questions_while_both_calls_are_in_flight(tmp_path):
    async def scenario():
        async with two_clients(tmp_path, {"asker": fixture(**ISOLATED)}) as parties:
            for n in range(1, ROUNDS + 1):
                for tool, asked in (("asker__ask_model", "sampled"), ("asker__ask_user", "elicited")):
                    meet = tmp_path / f"round-{n}-{tool}"
                    results = await at_once({p: p.session.call_tool(tool, {"party": p.name, "meet_in": str(meet)}) for p in parties})
                    for party in parties:
                        text = succeeded(party, results[party], f"round {n} {tool} call")
                        questions = getattr(party, asked)
                        assert questions[-1:] == [f"question for {party.name}"] and len(questions) == n, (
                            f"round {n}, {tool}: {party.name} was asked {questions}"
                        )
                        answer = party.model_answer(questions[-1]) if asked == "sampled" else party.user_answer(n)
                        assert text == f"{party.name} was answered: {answer}", f"round {n}, {tool}: {party.name} got {text!r}"

    run(scenario)


def test_each_client_session_has_a_process_of_its_own_of_an_isolated_server(tmp_path):
    async def scenario():
        async with two_clients(tmp_path, {"asker": fixture(**ISOLATED)}) as parties:
            seen: dict[str, list[str]] = {party.name: [] for party in parties}
            for _ in range(3):
                results = await at_once({p: p.session.call_tool("asker__whoami", {}) for p in parties})
                for party in parties:
                    seen[party.name].append(succeeded(party, results[party], "whoami"))
        # "pid <pid>, tool calls <n>": one process per client, and each counts its own client's calls only.
        pids = {name: {text.split(", ")[0] for text in texts} for name, texts in seen.items()}
        assert all(len(p) == 1 for p in pids.values()) and len(set.union(*pids.values())) == 2, seen
        for name, texts in seen.items():
            assert [text.split(", ")[1] for text in texts] == [f"tool calls {k}" for k in (1, 2, 3)], seen

    run(scenario)


# ----- shared ------------------------------------------------------------------------------------------


def test_shared_sdk_server_asking_during_two_clients_calls_gets_the_error_naming_isolation(tmp_path):
    async def scenario():
        async with two_clients(tmp_path, {"asker": fixture()}) as parties:
            for n in range(1, ROUNDS + 1):
                for tool in ("asker__ask_model", "asker__ask_user"):
                    meet = tmp_path / f"round-{n}-{tool}"
                    results = await at_once({p: p.session.call_tool(tool, {"party": p.name, "meet_in": str(meet)}) for p in parties})
                    for party in parties:
                        text = text_of(results[party])
                        assert collision("asker") in text, f"round {n}, {tool}: {party.name} got {text!r}"
            for party in parties:
                assert party.sampled == [] and party.elicited == [], f"{party.name} was asked {party.sampled + party.elicited}"

    run(scenario)


def test_shared_server_everything_asking_during_two_clients_calls_gets_the_error_naming_isolation(tmp_path):
    sampling_tool, elicitation_tool = "everything__trigger-sampling-request", "everything__trigger-elicitation-request"

    async def scenario():
        async with two_clients(tmp_path, {"everything": everything()}) as parties:
            await wait_for_tools(parties[0], {sampling_tool, elicitation_tool})
            # server-everything asks as soon as it is called: a call of each client that keeps running
            # (reporting progress) makes sure both clients are calling it whenever it asks.
            holding = {party: anyio.Event() for party in parties}

            async def hold(party: Party) -> None:
                async def progressed(progress: float, total: float | None, message: str | None) -> None:
                    holding[party].set()

                arguments = {"duration": 60, "steps": 600}
                await party.session.call_tool("everything__trigger-long-running-operation", arguments, progress_callback=progressed)

            async with anyio.create_task_group() as held:
                for party in parties:
                    held.start_soon(hold, party)
                    await holding[party].wait()
                for n in range(1, ROUNDS + 1):
                    for tool, arguments in ((sampling_tool, {"prompt": f"round {n}", "maxTokens": 10}), (elicitation_tool, {})):
                        results = await at_once({p: p.session.call_tool(tool, arguments) for p in parties})
                        for party in parties:
                            text = text_of(results[party])
                            assert collision("everything") in text, f"round {n}, {tool}: {party.name} got {text!r}"
                held.cancel_scope.cancel()
            for party in parties:
                assert party.sampled == [] and party.elicited == [], f"{party.name} was asked {party.sampled + party.elicited}"

    run(scenario)
