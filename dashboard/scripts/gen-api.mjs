// Generates src/api/schema.d.ts from src/api/openapi.json with openapi-typescript.
// openapi.json itself comes from `sensorpipe openapi` (a Python test keeps it current);
// neither file is ever edited by hand.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

const bin = "node_modules/.bin/openapi-typescript";
if (!existsSync(bin)) throw new Error("openapi-typescript is missing: run npm ci");
execFileSync(bin, ["src/api/openapi.json", "-o", "src/api/schema.d.ts"], { stdio: "inherit" });
