"""The stdio MCP server that tests/conformance/run.sh puts behind the proxy.

It offers exactly what the server scenarios of the official conformance suite
(@modelcontextprotocol/conformance, pinned in scripts/install-test-deps.sh)
ask of the server under test, with the names, contents and behaviours their
descriptions give. The proxy registers it with ``"namespace": ""``, so the
suite sees these names unchanged. Built with the official Python SDK's
``MCPServer``; run with ``python fixture_server.py`` (stdio).

Scenario -> what serves it:

- server-initialize, ping: the SDK itself
- logging-set-level: a ``logging/setLevel`` handler (answers ``{}``)
- completion-complete: a completion handler for ``test_prompt_with_arguments``
- tools-list, json-schema-2020-12: every tool has a description; ``json_schema_2020_12_tool``
  lists the 2020-12 input schema verbatim
- tools-call-*: ``test_simple_text``, ``test_image_content``, ``test_audio_content``,
  ``test_embedded_resource``, ``test_multiple_content_types``, ``test_tool_with_logging``,
  ``test_error_handling``, ``test_tool_with_progress``, ``test_sampling``, ``test_elicitation``
- elicitation-sep1034-defaults, elicitation-sep1330-enums: ``test_elicitation_sep1034_defaults``,
  ``test_elicitation_sep1330_enums``
- server-sse-polling: ``test_reconnection`` (closing the stream is a no-op over stdio; the proxy owns it)
- resources-*: ``test://static-text``, ``test://static-binary``, the template
  ``test://template/{id}/data``, ``test://watched-resource`` and subscribe/unsubscribe handlers
- prompts-*: ``test_simple_prompt``, ``test_prompt_with_arguments``,
  ``test_prompt_with_embedded_resource``, ``test_prompt_with_image``
"""

import base64
import json
import warnings
from typing import Any

import anyio
from mcp import types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.mcpserver.tools.base import Tool

# Logging and sampling are deprecated in the SDK's newest protocol version, not in the ones the suite tests.
warnings.filterwarnings("ignore", message=".*deprecated as of 2026-07-28.*")

# A 1x1 red PNG and a 1-sample 8 kHz mono 8-bit WAV: the smallest valid payloads of their kinds.
RED_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
TINY_WAV = "UklGRiUAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQEAAACA"

JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


def json_schema_2020_12_tool(name: str | None = None, address: dict[str, Any] | None = None) -> str:
    """Tool with JSON Schema 2020-12 features"""
    return f"name={name!r}, address={address!r}"


# The SDK derives input schemas from signatures; this one must be listed exactly as the scenario wrote it.
mcp = MCPServer(
    name="mcp-proxy-server-conformance-fixture",
    version="1.0.0",
    tools=[Tool.from_function(json_schema_2020_12_tool).model_copy(update={"parameters": JSON_SCHEMA_2020_12})],
)


def image() -> types.ImageContent:
    return types.ImageContent(data=RED_PIXEL_PNG, mime_type="image/png")


# --- tools ---------------------------------------------------------------------------------------


@mcp.tool(structured_output=False)
def test_simple_text() -> list[types.ContentBlock]:
    """Returns one text block."""
    return [types.TextContent(text="This is a simple text response for testing.")]


@mcp.tool(structured_output=False)
def test_image_content() -> list[types.ContentBlock]:
    """Returns one PNG image block."""
    return [image()]


@mcp.tool(structured_output=False)
def test_audio_content() -> list[types.ContentBlock]:
    """Returns one WAV audio block."""
    return [types.AudioContent(data=TINY_WAV, mime_type="audio/wav")]


@mcp.tool(structured_output=False)
def test_embedded_resource() -> list[types.ContentBlock]:
    """Returns one embedded text resource."""
    resource = types.TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return [types.EmbeddedResource(resource=resource)]


@mcp.tool(structured_output=False)
def test_multiple_content_types() -> list[types.ContentBlock]:
    """Returns a text, an image and an embedded resource block."""
    resource = types.TextResourceContents(
        uri="test://mixed-content-resource",
        mime_type="application/json",
        text=json.dumps({"test": "data", "value": 123}),
    )
    return [
        types.TextContent(text="Multiple content types test:"),
        image(),
        types.EmbeddedResource(resource=resource),
    ]


@mcp.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three info log notifications, 50 ms apart, while it runs."""
    await ctx.info("Tool execution started")
    await anyio.sleep(0.05)
    await ctx.info("Tool processing data")
    await anyio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@mcp.tool()
def test_error_handling() -> str:
    """Always fails: the result has isError true."""
    raise ToolError("This tool intentionally returns an error for testing")


@mcp.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 of 100, 50 ms apart, when the call has a progress token."""
    for step, progress in enumerate((0, 50, 100)):
        if step:
            await anyio.sleep(0.05)
        await ctx.report_progress(progress, 100)
    return "Tool with progress executed successfully"


@mcp.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's LLM (sampling/createMessage) and returns its answer."""
    result = await ctx.session.create_message(
        messages=[types.SamplingMessage(role="user", content=types.TextContent(text=prompt))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    content = result.content
    text = content.text if isinstance(content, types.TextContent) else str(content)
    return f"LLM response: {text}"


async def elicit(ctx: Context, message: str, schema: dict[str, Any]) -> str:
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return f"action={result.action}, content={json.dumps(result.content)}"


@mcp.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user (elicitation/create) for a username and an email."""
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    return f"User response: {await elicit(ctx, message, schema)}"


@mcp.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicitation whose schema gives a default for every primitive type (SEP-1034)."""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
        "required": [],
    }
    return f"Elicitation completed: {await elicit(ctx, 'Please review and update the form fields with defaults', schema)}"


@mcp.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Elicitation whose schema has the five enum variants of SEP-1330."""
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {
                "type": "string",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"},
                ],
            },
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"},
                    ]
                },
            },
        },
        "required": [],
    }
    return f"Elicitation completed: {await elicit(ctx, 'Please choose from the enum variants', schema)}"


@mcp.tool()
async def test_reconnection(ctx: Context) -> str:
    """Closes its SSE stream mid-call when served over Streamable HTTP (SEP-1699), then answers."""
    await ctx.close_sse_stream()
    await anyio.sleep(0.1)
    return "Reconnection test completed successfully"


# --- resources -----------------------------------------------------------------------------------


@mcp.resource("test://static-text", name="static-text", description="A static text resource", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@mcp.resource(
    "test://static-binary", name="static-binary", description="A static binary resource", mime_type="image/png"
)
def static_binary() -> bytes:
    return base64.b64decode(RED_PIXEL_PNG)


@mcp.resource(
    "test://template/{id}/data",
    name="template-data",
    description="A resource template with an id parameter",
    mime_type="application/json",
)
def template_data(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@mcp.resource(
    "test://watched-resource", name="watched-resource", description="A resource to subscribe to", mime_type="text/plain"
)
def watched_resource() -> str:
    return "Watched resource content."


subscriptions: set[str] = set()


async def on_subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    subscriptions.add(str(params.uri))
    return types.EmptyResult()


async def on_unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    subscriptions.discard(str(params.uri))
    return types.EmptyResult()


async def on_set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


# MCPServer has no decorators for these; registering them also declares `resources.subscribe` and `logging`.
mcp._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
mcp._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe)
mcp._lowlevel_server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, on_set_level)


# --- prompts -------------------------------------------------------------------------------------


@mcp.prompt()
def test_simple_prompt() -> str:
    """A simple prompt without arguments."""
    return "This is a simple prompt for testing."


@mcp.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@mcp.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    """A prompt that embeds the resource it is given."""
    resource = types.TextResourceContents(
        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
    )
    return [
        UserMessage(types.EmbeddedResource(resource=resource)),
        UserMessage("Please process the embedded resource above."),
    ]


@mcp.prompt()
def test_prompt_with_image() -> list[UserMessage]:
    """A prompt with an image."""
    return [UserMessage(image()), UserMessage("Please analyze the image above.")]


@mcp.completion()
async def complete(
    ref: types.PromptReference | types.ResourceTemplateReference,
    argument: types.CompletionArgument,
    context: types.CompletionContext | None,
) -> types.Completion:
    if isinstance(ref, types.PromptReference) and ref.name == "test_prompt_with_arguments":
        values = [v for v in ("paris", "park", "party", "test-value") if v.startswith(argument.value)]
        return types.Completion(values=values, total=len(values), has_more=False)
    return types.Completion(values=[], total=0, has_more=False)


if __name__ == "__main__":
    mcp.run()
