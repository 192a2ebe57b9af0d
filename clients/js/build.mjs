// `npm run build`: writes the file the server serves, websock_actors/static/client.js.
// The readable source is small enough gzipped (the bound is 5 KiB), so it is served
// as it is: the build copies it, and tests/server/test_client_js.py checks the copy is current.
import {copyFileSync} from "node:fs";

copyFileSync(new URL("src/client.js", import.meta.url), new URL("../../websock_actors/static/client.js", import.meta.url));
