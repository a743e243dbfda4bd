"""Interop: the 2026-07-28 tasks extension (``io.modelcontextprotocol/tasks``) relayed by the proxy,
with the official MCP Python SDK (2.3) on both ends.

The SDK implements no tasks, but has an extension framework on both sides, and both ends here are
built on it, following modelcontextprotocol/ext-tasks specification/draft/tasks.md:

- behind the proxy, ``tests/fixtures/tasks_server.py``: a 2026-07-28 server whose ``Extension``
  answers a declaring client's tool call with a task and serves ``tasks/get``, ``tasks/update`` and
  ``tasks/cancel`` (over stdio, and in one test over Streamable HTTP);
- in front, the SDK's ``Client`` pinned to ``mode="2026-07-28"`` (over stdio and over Streamable HTTP)
  with ``TasksExtension`` below, a ``ClientExtension`` whose result claim takes ``resultType: "task"``
  and polls ``tasks/get`` at the task's ``pollIntervalMs`` until the task ends, answering the
  elicitations a task asks in ``inputRequests`` with ``tasks/update``; so ``call_tool`` returns the
  final result. ``client.session.call_tool(..., allow_claimed=True)`` gives the raw task handle.

Each test proves one behaviour through the proxy: a task polled to its result; the client knowing it
by an id of the proxy's own (``mcp-proxy-…``), never the backend's; over HTTP, another API key unable
to poll or cancel it, while another connection with the same key can (2026-07-28 HTTP is sessionless,
so a task is bound to its credential); a client that does not declare the extension, and a
handshake-era client, getting a plain result, and ``-32021`` for ``tasks/get`` without the
declaration; ``tasks/cancel`` reaching the backend; a task's elicitation answered with
``tasks/update``; a task made after an ``input_required`` round of the call; ``server/discover``
naming the extension (and not without a backend that takes it); a Streamable HTTP backend's task
relayed, its routing header naming the backend's id. The wire details are pinned by the hub's unit
tests (src/hub/tests.rs, "the 2026-07-28 tasks extension").

The proxy binary is ``MCP_PROXY_BIN`` (default ``target/debug/mcp-proxy-server``).
"""

import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters, types
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import InputRequest, RequestParams
from peers import PYTHON, Callbacks, HttpProxy, modern_only, proxy_bin, proxy_env, require, write_config, run, only_text
from pydantic import ConfigDict, TypeAdapter

EXTENSION = "io.modelcontextprotocol/tasks"
MODERN = "2026-07-28"
TASKS_SERVER = Path(__file__).resolve().parents[1] / "fixtures/tasks_server.py"
TIMEOUT_S = 30
TRANSPORTS = ["stdio", "streamable_http"]
KEY_ONE, KEY_TWO = "k-tasks-one", "k-tasks-two"
# Over HTTP every client comes with one of two API keys, so a task's credential can be told apart.
ENV = proxy_env(ALLOWED_KEYS=f"{KEY_ONE},{KEY_TWO}")
ELICITED_NAME = "Ada"
# The fixture's task ends after `ms`; a cancelled one must still be working when it is cancelled.
LONG_MS = 20_000


# ----- the client's side of the extension --------------------------------------------------------------


class TaskHandle(types.Result):
    """`CreateTaskResult`: what a tool call answers when the server made a task."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    poll_interval_ms: int | None = None


class DetailedTask(types.Result):
    """A `tasks/get` answer: the task, with its result, error or questions inline."""

    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None


class TaskParams(RequestParams):
    task_id: str


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any]


class GetTask(types.Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class UpdateTask(types.Request[UpdateTaskParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    name_param = "taskId"


class CancelTask(types.Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


async def get_task(session: ClientSession, task_id: str) -> DetailedTask:
    return await session.send_request(GetTask(params=TaskParams(task_id=task_id)), DetailedTask)


async def update_task(session: ClientSession, task_id: str, responses: dict[str, Any]) -> None:
    await session.send_request(UpdateTask(params=UpdateTaskParams(task_id=task_id, input_responses=responses)), types.EmptyResult)


async def cancel_task(session: ClientSession, task_id: str) -> None:
    await session.send_request(CancelTask(params=TaskParams(task_id=task_id)), types.EmptyResult)


Elicit = Callable[[Any, types.ElicitRequestParams], Awaitable[types.ElicitResult]]


class TasksExtension(ClientExtension):
    """The tasks extension for the SDK's `Client`: a task a tool call answers with is polled with
    `tasks/get` (waiting `pollIntervalMs` between polls) until it ends; `completed` gives `call_tool`
    its result, `failed` and `cancelled` raise. An `input_required` task's elicitations go to `elicit`
    (each key once) and their answers back with `tasks/update`. Records what it saw."""

    identifier = EXTENSION

    def __init__(self, elicit: Elicit | None = None) -> None:
        self.elicit = elicit
        self.handles: list[TaskHandle] = []
        self.polled: list[DetailedTask] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=self.resolve)]

    async def resolve(self, handle: TaskHandle, ctx: ClaimContext) -> types.CallToolResult:
        self.handles.append(handle)
        interval_ms, answered = handle.poll_interval_ms or 100, set()
        while True:
            await anyio.sleep(interval_ms / 1000)
            task = await get_task(ctx.session, handle.task_id)
            self.polled.append(task)
            interval_ms = task.poll_interval_ms or interval_ms
            if task.status == "completed":
                return types.CallToolResult.model_validate(task.result)
            if task.status == "failed":
                raise MCPError(**(task.error or {"code": -32603, "message": "task failed"}))
            if task.status == "cancelled":
                raise RuntimeError(f"task {task.task_id} was cancelled: {task.status_message}")
            if task.status == "input_required":
                responses = {}
                for key, request in (task.input_requests or {}).items():
                    if key not in answered:
                        responses[key] = await self.answer(request)
                        answered.add(key)
                if responses:
                    await update_task(ctx.session, handle.task_id, responses)

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        question = TypeAdapter(InputRequest).validate_python(request)
        if not isinstance(question, types.ElicitRequest) or self.elicit is None:
            raise RuntimeError(f"this client answers elicitations only: {request}")
        return (await self.elicit(None, question.params)).model_dump(by_alias=True, mode="json", exclude_none=True)


# ----- the proxy and its backends ----------------------------------------------------------------------


def tasks_backend() -> dict[str, Any]:
    """tests/fixtures/tasks_server.py over stdio."""
    return {"command": require(PYTHON, "run scripts/install-test-deps.sh"), "args": [str(TASKS_SERVER)]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def http_tasks_backend() -> Iterator[str]:
    """tests/fixtures/tasks_server.py over Streamable HTTP on a free port; yields its /mcp URL. Killed at
    the end, its output printed (pytest shows it with a failure)."""
    port = free_port()
    args = [require(PYTHON, "run scripts/install-test-deps.sh"), str(TASKS_SERVER), "--transport", "streamable-http", "--port", str(port)]
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"tasks_server.py did not listen on port {port}", pytrace=False)
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.kill()
            server.wait()
            log.seek(0)
            print(f"--- output of tasks_server.py ---\n{log.read()}", file=sys.stderr)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("tasks"), {"tasks": tasks_backend()})


@pytest.fixture(scope="module")
def http_proxy(config) -> Iterator[HttpProxy]:
    proxy = HttpProxy(config, ENV)
    yield proxy
    proxy.stop()


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    return request.param


@pytest.fixture
def target(request, transport, config) -> Any:
    """Where a client of the proxy connects: the stdio command, or the HTTP proxy's URL."""
    if transport == "stdio":
        return StdioServerParameters(command=proxy_bin(), args=["--config", str(config)], env=ENV)
    return request.getfixturevalue("http_proxy").url


@asynccontextmanager
async def client_of(
    target: Any,
    extension: TasksExtension | None = None,
    key: str = KEY_ONE,
    mode: str = MODERN,
    callbacks: Callbacks | None = None,
) -> AsyncIterator[Client]:
    """An SDK client of the proxy at `target` (stdio command or HTTP URL, sending `key` as its API key),
    declaring the tasks extension when given one, and elicitation when given `callbacks`."""
    options: dict[str, Any] = {"mode": mode, "extensions": [extension] if extension else None}
    if callbacks:
        options["elicitation_callback"] = callbacks.elicit
    with anyio.fail_after(TIMEOUT_S):
        if isinstance(target, str):
            async with httpx2.AsyncClient(headers={"X-Api-Key": key}, timeout=httpx2.Timeout(30, read=300)) as http:
                async with Client(streamable_http_client(target, http_client=http), **options) as client:
                    yield client
        else:
            async with Client(target, **options) as client:
                yield client


def unique(word: str) -> str:
    """`word` made unique, to find this test's task among those the backend knows."""
    return f"{word}-{uuid.uuid4().hex[:8]}"


async def tasks_seen(client: Client) -> list[dict[str, Any]]:
    """Every task the backend knows, under its own ids, with the task requests it received."""
    return json.loads(only_text(await client.call_tool("tasks__tasks_seen", {})))


async def backend_task(client: Client, text: str) -> dict[str, Any]:
    [task] = [t for t in await tasks_seen(client) if t["arguments"].get("text") == text]
    return task


async def made_task(client: Client, text: str, ms: int = LONG_MS) -> TaskHandle:
    """The raw task handle the client gets for `slow_echo(text, ms)`."""
    handle = await client.session.call_tool("tasks__slow_echo", {"text": text, "ms": ms}, allow_claimed=True)
    assert isinstance(handle, TaskHandle), handle
    return handle


# ----- the tests ---------------------------------------------------------------------------------------


def test_a_task_is_polled_through_the_proxy_to_its_final_result(target):
    extension = TasksExtension()

    async def scenario():
        async with client_of(target, extension) as client:
            result = await client.call_tool("tasks__slow_echo", {"text": "relayed", "ms": 800})
        assert only_text(result) == "echo: relayed"
        [handle] = extension.handles
        assert (handle.status, handle.poll_interval_ms) == ("working", 100)
        statuses = [task.status for task in extension.polled]
        assert statuses[0] == "working" and statuses[-1] == "completed", statuses
        assert {task.task_id for task in extension.polled} == {handle.task_id}, "every answer names the task as the client knows it"

    run(scenario)


def test_the_client_knows_the_task_by_an_id_of_the_proxys_own(target):
    text = unique("own-id")

    async def scenario():
        async with client_of(target, TasksExtension()) as client:
            handle = await made_task(client, text)
            backends = await backend_task(client, text)
        assert handle.task_id.startswith("mcp-proxy-"), handle.task_id
        assert handle.task_id != backends["taskId"]
        assert not backends["taskId"].startswith("mcp-proxy-"), backends

    run(scenario)


def test_another_api_key_can_neither_poll_nor_cancel_the_task(http_proxy):
    text = unique("other-key")

    async def scenario():
        async with client_of(http_proxy.url, TasksExtension(), key=KEY_ONE) as owner:
            handle = await made_task(owner, text)
            async with client_of(http_proxy.url, TasksExtension(), key=KEY_TWO) as other:
                with pytest.raises(MCPError) as polled:
                    await get_task(other.session, handle.task_id)
                with pytest.raises(MCPError) as cancelled:
                    await cancel_task(other.session, handle.task_id)
            seen = await backend_task(owner, text)
        assert (polled.value.error.code, cancelled.value.error.code) == (-32602, -32602)
        assert (seen["status"], seen["requests"]) == ("working", []), "nothing reached the backend"

    run(scenario)


def test_another_connection_with_the_same_api_key_can_poll_the_task(http_proxy):
    text = unique("same-key")

    async def scenario():
        async with client_of(http_proxy.url, TasksExtension(), key=KEY_ONE) as owner:
            handle = await made_task(owner, text, ms=100)
        async with client_of(http_proxy.url, TasksExtension(), key=KEY_ONE) as again:
            with anyio.fail_after(5):
                while (task := await get_task(again.session, handle.task_id)).status != "completed":
                    await anyio.sleep(0.1)
        assert task.task_id == handle.task_id
        assert task.result is not None and task.result["content"] == [{"type": "text", "text": f"echo: {text}"}]

    run(scenario)


def test_a_client_without_the_extension_gets_a_plain_result(target):
    text = unique("plain")

    async def scenario():
        async with client_of(target) as client:
            result = await client.call_tool("tasks__slow_echo", {"text": text, "ms": 100})
            made = [t for t in await tasks_seen(client) if t["arguments"].get("text") == text]
        assert only_text(result) == f"echo: {text}"
        assert made == [], "the backend made no task"

    run(scenario)


def test_a_handshake_era_client_gets_a_plain_result(target):
    text = unique("handshake")

    async def scenario():
        async with client_of(target, mode="legacy") as client:
            assert client.protocol_version != MODERN
            result = await client.call_tool("tasks__slow_echo", {"text": text, "ms": 100})
            made = [t for t in await tasks_seen(client) if t["arguments"].get("text") == text]
        assert only_text(result) == f"echo: {text}"
        assert made == [], "the backend made no task"

    run(scenario)


def test_tasks_get_of_a_client_without_the_extension_is_refused_with_32021(target):
    """Over HTTP with the id of a real task of the same API key (a sessionless request of the same
    credential could otherwise ask about it); over stdio, where one connection is one client, with an
    id the proxy never gave: the declaration is checked first either way."""

    async def scenario():
        if isinstance(target, str):
            async with client_of(target, TasksExtension()) as declaring:
                task_id = (await made_task(declaring, unique("undeclared"))).task_id
        else:
            task_id = f"mcp-proxy-{uuid.uuid4().hex}"
        async with client_of(target) as client:
            with pytest.raises(MCPError) as refused:
                await get_task(client.session, task_id)
        assert refused.value.error.code == -32021
        assert EXTENSION in refused.value.error.data["requiredCapabilities"]["extensions"], refused.value.error

    run(scenario)


def test_tasks_cancel_reaches_the_backend(target):
    text = unique("cancel")

    async def scenario():
        async with client_of(target, TasksExtension()) as client:
            handle = await made_task(client, text)
            await cancel_task(client.session, handle.task_id)
            task = await get_task(client.session, handle.task_id)
            seen = await backend_task(client, text)
        assert (task.task_id, task.status) == (handle.task_id, "cancelled")
        assert seen["status"] == "cancelled"
        assert seen["requests"] == ["tasks/cancel", "tasks/get"], seen

    run(scenario)


def test_a_tasks_elicitation_is_answered_with_tasks_update(target):
    callbacks = Callbacks(sampled="unused", elicited=ELICITED_NAME)
    extension = TasksExtension(elicit=callbacks.elicit)

    async def scenario():
        async with client_of(target, extension) as client:
            result = await client.call_tool("tasks__ask_name", {})
            [seen] = [t for t in await tasks_seen(client) if t["tool"] == "ask_name"]
        assert only_text(result) == f"Hello, {ELICITED_NAME}!"
        [question] = callbacks.elicitation
        assert question.message == "Please enter your name."
        statuses = [task.status for task in extension.polled]
        assert "input_required" in statuses and statuses[-1] == "completed", statuses
        assert "tasks/update" in seen["requests"] and seen["status"] == "completed", seen

    run(scenario)


def test_a_task_made_after_an_input_required_round_is_relayed(target):
    callbacks = Callbacks(sampled="unused", elicited=ELICITED_NAME)
    extension = TasksExtension()

    async def scenario():
        async with client_of(target, extension, callbacks=callbacks) as client:
            result = await client.call_tool("tasks__confirmed_echo", {"text": "confirmed", "ms": 200})
        assert only_text(result) == f"echo: confirmed for {ELICITED_NAME}"
        [question] = callbacks.elicitation
        assert question.message == "Who is asking?"
        [handle] = extension.handles
        assert handle.task_id.startswith("mcp-proxy-"), handle.task_id
        assert extension.polled[-1].status == "completed"

    run(scenario)


def test_server_discover_names_the_extension_of_a_backend_that_takes_it(target):
    async def scenario():
        async with client_of(target, TasksExtension()) as client:
            # Once the backend is up (its tools are listed), the aggregate is what it offers.
            assert "tasks__slow_echo" in {tool.name for tool in (await client.list_tools()).tools}
            discovered = await client.session.send_discover(MODERN)
        assert EXTENSION in (discovered["capabilities"].get("extensions") or {}), discovered["capabilities"]

    run(scenario)


def test_server_discover_names_no_tasks_extension_without_a_backend_that_takes_it(tmp_path):
    target = StdioServerParameters(command=proxy_bin(), args=["--config", str(write_config(tmp_path, {"modern": modern_only()}))], env=ENV)

    async def scenario():
        async with client_of(target, TasksExtension()) as client:
            assert "modern__echo" in {tool.name for tool in (await client.list_tools()).tools}
            discovered = await client.session.send_discover(MODERN)
        assert EXTENSION not in (discovered["capabilities"].get("extensions") or {}), discovered["capabilities"]

    run(scenario)


def test_a_task_of_a_streamable_http_backend_is_relayed(transport, tmp_path):
    extension = TasksExtension()

    async def scenario(target: Any):
        async with client_of(target, extension) as client:
            result = await client.call_tool("tasks__slow_echo", {"text": "over http", "ms": 300})
            [seen] = [t for t in await tasks_seen(client) if t["arguments"].get("text") == "over http"]
        assert only_text(result) == "echo: over http"
        [handle] = extension.handles
        assert handle.task_id.startswith("mcp-proxy-"), handle.task_id
        # The extension's routing header names the task as its backend knows it.
        assert seen["requests"] and seen["mcpNames"] == [seen["taskId"]] * len(seen["requests"]), seen

    with http_tasks_backend() as backend:
        config = write_config(tmp_path, {"tasks": {"type": "http", "url": backend}})
        if transport == "stdio":
            run(lambda: scenario(StdioServerParameters(command=proxy_bin(), args=["--config", str(config)], env=ENV)))
        else:
            proxy = HttpProxy(config, ENV)
            try:
                run(lambda: scenario(proxy.url))
            finally:
                proxy.stop()
