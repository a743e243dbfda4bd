// Interop: the official MCP TypeScript SDK runs a tool call as a task (MCP 2025-11-25) through
// mcp-proxy-server, over stdio.
//
//   node tests/interop/ts_tasks_client.mjs PROXY_BIN CONFIG TOOL ARGUMENTS_JSON
//
// Starts the proxy on CONFIG, lists the tools (so the SDK knows which ones run as tasks), calls TOOL with
// `client.experimental.tasks.callToolStream`, which creates the task, polls it and fetches its result
// through the proxy, and prints one JSON summary on stdout:
//   {"capabilities": {...}, "types": ["taskCreated", "taskStatus", ..., "result"], "text": "..."}
// Exits 1 with the error on stderr when anything fails. The SDK is loaded from .deps/node
// (scripts/install-test-deps.sh).

import { createRequire } from "node:module";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const TIMEOUT_MS = 60_000;
const prefix = fileURLToPath(new URL("../../.deps/node/", import.meta.url));
const requireFromDeps = createRequire(resolve(prefix, "package.json"));
const load = (specifier) => import(pathToFileURL(requireFromDeps.resolve(specifier)).href);

async function main(proxy, config, tool, args) {
  const { Client } = await load("@modelcontextprotocol/sdk/client/index.js");
  const { StdioClientTransport } = await load("@modelcontextprotocol/sdk/client/stdio.js");
  const client = new Client({ name: "mcp-proxy-server-interop-ts-tasks", version: "1.0.0" }, { capabilities: { tasks: {} } });
  const transport = new StdioClientTransport({ command: proxy, args: ["--config", config], stderr: "inherit" });
  await client.connect(transport, { timeout: TIMEOUT_MS });
  try {
    await client.listTools(undefined, { timeout: TIMEOUT_MS });
    const types = [];
    let text = "";
    for await (const message of client.experimental.tasks.callToolStream({ name: tool, arguments: args }, undefined, { timeout: TIMEOUT_MS })) {
      types.push(message.type);
      if (message.type === "error") throw message.error;
      if (message.type === "result") text = message.result.content.filter((b) => b.type === "text").map((b) => b.text).join("\n");
    }
    return { capabilities: client.getServerCapabilities(), types, text };
  } finally {
    await client.close();
  }
}

const [proxy, config, tool, args] = process.argv.slice(2);
if (!tool) {
  console.error("usage: node ts_tasks_client.mjs PROXY_BIN CONFIG TOOL ARGUMENTS_JSON");
  process.exit(2);
}
main(proxy, config, tool, JSON.parse(args ?? "{}")).then(
  (summary) => console.log(JSON.stringify(summary)),
  (error) => {
    console.error(error?.stack ?? String(error));
    process.exit(1);
  },
);
