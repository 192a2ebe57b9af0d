// client.d.ts under strict tsc, with the chat's generated types (schemas/chat.d.ts, kept current by
// tests/typed/test_typescript.py): a typed client compiles; a wrong field
// in a request or a push does not.
import assert from "node:assert/strict";
import {spawnSync} from "node:child_process";
import {existsSync} from "node:fs";
import {fileURLToPath} from "node:url";
import {test} from "node:test";

const here = fileURLToPath(new URL(".", import.meta.url));
const tsc = fileURLToPath(new URL("../node_modules/.bin/tsc", import.meta.url));
const skip = existsSync(tsc) ? false : "tsc is not installed (npm ci)";

function compile(file) {
  const args = ["--strict", "--noEmit", "--module", "nodenext", "--target", "es2022", `types/${file}`];
  return spawnSync(tsc, args, {cwd: here, encoding: "utf8"});
}

test("strict tsc accepts a typed client", {skip}, () => {
  const result = compile("good.ts");
  assert.equal(result.status, 0, result.stdout + result.stderr);
});

test("strict tsc refuses a wrong field in a request and in a push", {skip}, () => {
  const result = compile("bad.ts");
  assert.notEqual(result.status, 0);
  assert.match(result.stdout, /bad\.ts\(6,\d+\): error TS2353: .*'nmae' does not exist in type 'Join'/);
  assert.match(result.stdout, /bad\.ts\(7,\d+\): error TS2551: Property 'txt' does not exist on type 'ChatMessage'/);
});
