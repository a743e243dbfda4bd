// Interop: the official MCP TypeScript SDK as a Streamable HTTP client of mcp-proxy-server.
//
//   node tests/interop/ts_client.mjs http://127.0.0.1:PORT/mcp [TOOL ARGUMENTS_JSON]
//
// Connects (Client + StreamableHTTPClientTransport), lists every tool (following cursors), calls
// `everything__echo` (or TOOL with ARGUMENTS_JSON), closes the session, and prints one JSON summary on
// stdout:
//   {"serverInfo": {...}, "protocolVersion": "...", "tools": [names], "echo": {"isError": false, "text": "..."}}
// Exits 1 with the error on stderr when anything fails. The SDK is loaded from the pinned copy in
// .deps/node (scripts/install-test-deps.sh), or from the directory named by MCP_TS_SDK_PREFIX.

import { createRequire } from "node:module";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const TIMEOUT_MS = 20_000;

const prefix = process.env.MCP_TS_SDK_PREFIX ?? fileURLToPath(new URL("../../.deps/node/", import.meta.url));
// Bare specifiers in an ES module resolve from the module's own directory, not from .deps: resolve by hand.
const requireFromDeps = createRequire(resolve(prefix, "package.json"));
const load = (specifier) => import(pathToFileURL(requireFromDeps.resolve(specifier)).href);

async function main(url, tool, args) {
  const { Client } = await load("@modelcontextprotocol/sdk/client/index.js");
  const { StreamableHTTPClientTransport } = await load("@modelcontextprotocol/sdk/client/streamableHttp.js");

  const client = new Client({ name: "mcp-proxy-server-interop-ts", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport, { timeout: TIMEOUT_MS });
  try {
    const tools = [];
    let cursor;
    do {
      const page = await client.listTools(cursor ? { cursor } : undefined, { timeout: TIMEOUT_MS });
      tools.push(...page.tools.map((tool) => tool.name));
      cursor = page.nextCursor;
    } while (cursor);

    const echo = await client.callTool({ name: tool, arguments: args }, undefined, { timeout: TIMEOUT_MS });
    const texts = echo.content.filter((block) => block.type === "text").map((block) => block.text);

    return {
      serverInfo: client.getServerVersion(),
      protocolVersion: transport.protocolVersion,
      tools,
      echo: { isError: echo.isError ?? false, text: texts.join("\n") },
    };
  } finally {
    // Ends the session on the server (DELETE /mcp), then closes the transport.
    await transport.terminateSession().catch((e) => console.error(`terminateSession: ${e}`));
    await client.close();
  }
}

const [url, tool = "everything__echo", args = '{"message": "hello from the TypeScript SDK"}'] = process.argv.slice(2);
if (!url) {
  console.error("usage: node ts_client.mjs http://HOST:PORT/mcp [TOOL ARGUMENTS_JSON]");
  process.exit(2);
}
main(url, tool, JSON.parse(args)).then(
  (summary) => console.log(JSON.stringify(summary)),
  (error) => {
    console.error(error?.stack ?? String(error));
    process.exit(1);
  },
);
