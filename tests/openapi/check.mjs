// Validates docs/openapi.yaml against the OpenAPI 3.1 JSON schema (the
// validator of @seriousme/openapi-schema-validator, pinned by
// package-lock.json) and prints one line per operation for the test:
//   METHOD<TAB>TEMPLATE<TAB>PROBE PATH<TAB>SECURITY<TAB>REQUEST MEDIA TYPE
// PROBE PATH has each {parameter} replaced by its example ("x" when none);
// SECURITY is the first security scheme's name or "-"; the media type "-"
// when there is no request body. Exit 1 (with the validator's errors on
// stderr) when the document is not valid OpenAPI 3.1.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import YAML from "yaml";

const file = process.argv[2];
const text = readFileSync(file, "utf8");
const validator = new Validator();
const res = await validator.validate(text);
if (!res.valid) {
  console.error(`${file}: not valid OpenAPI: ${JSON.stringify(res.errors, null, 1)}`);
  process.exit(1);
}
if (validator.version !== "3.1") {
  console.error(`${file}: OpenAPI ${validator.version}, expected 3.1`);
  process.exit(1);
}
const doc = YAML.parse(text);
const deref = (o) => {
  while (o && o.$ref) {
    const parts = o.$ref.replace(/^#\//, "").split("/");
    o = parts.reduce((a, k) => a[k.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
  }
  return o;
};
const methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
for (const [path, item] of Object.entries(doc.paths || {})) {
  for (const m of methods) {
    const op = item[m];
    if (!op) continue;
    const params = [...(item.parameters || []), ...(op.parameters || [])].map(deref);
    const probe = path.replace(/\{([^}]+)\}/g, (_, name) => {
      const p = params.find((q) => q.in === "path" && q.name === name);
      if (!p) {
        console.error(`${file}: ${m.toUpperCase()} ${path}: path parameter {${name}} not declared`);
        process.exit(1);
      }
      return encodeURIComponent(String(p.example ?? "x"));
    });
    const sec = op.security ?? doc.security ?? [];
    const scheme = sec.length && Object.keys(sec[0]).length ? Object.keys(sec[0])[0] : "-";
    const body = op.requestBody ? deref(op.requestBody) : null;
    const media = body && body.content ? Object.keys(body.content)[0] : "-";
    console.log([m.toUpperCase(), path, probe, scheme, media].join("\t"));
  }
}
