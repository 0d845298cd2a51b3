// The OpenAPI test (ctest "openapi: ..."): validates docs/openapi.json with a real OpenAPI validator
// (@apidevtools/swagger-parser), then runs OrderService in its embedded mode and sends it a request
// for every route and every error it can give, and checks each answer against the document: the
// status is documented for that route and method, the content type is the documented one, and the
// body matches the documented schema (Ajv, JSON Schema 2020-12, as OpenAPI 3.1 uses). Answers to no
// route (404, a request that cannot be read) are checked against the Error schema. Every operation
// of the document must have been exercised. Then every answer the C++ HTTP tests received, recorded
// by Tests/Support/HttpAnswers (one JSON object a line), is checked the same way.
//   node check.mjs <OrderService executable> <openapi.json> <appsettings dir> [<recorded answers>]
import SwaggerParser from "@apidevtools/swagger-parser";
import Ajv2020 from "ajv/dist/2020.js";
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { startOrderService, waitForOrderStatus } from "./server.mjs";

const [binary, documentPath, settingsDir, answersPath] = process.argv.slice(2).map((p) => path.resolve(p));
const failures = [];
const fail = (what) => {
  failures.push(what);
  console.error(`FAIL ${what}`);
};

// 1. The document itself.
const documentText = readFileSync(documentPath, "utf8");
await SwaggerParser.validate(JSON.parse(documentText));
const api = await SwaggerParser.dereference(JSON.parse(documentText));
console.log(`${documentPath}: a valid OpenAPI ${api.openapi} document`);
const ajv = new Ajv2020({ strict: false, allErrors: true });

// 2. The server.
const { base, port, stop } = await startOrderService(binary, settingsDir);

// 3. Each answer against the document.
const exercised = new Set();
function operationOf(method, urlPath) {
  for (const [template, item] of Object.entries(api.paths)) {
    const pattern = new RegExp("^" + template.replace(/\{[^}]+\}/g, "[^/]+") + "$");
    if (pattern.test(urlPath)) return { template, operation: item[method.toLowerCase() === "head" ? "get" : method.toLowerCase()] };
  }
  return null;
}
function check(name, method, urlPath, status, contentType, body, bodyKept = true) {
  const found = operationOf(method, urlPath);
  let schema;
  let mediaType = "application/json";
  if (found) {
    const responses = found.operation ? found.operation.responses : null;
    // A method the route does not serve: the document's 405 of the route's operation.
    const spec = responses?.[String(status)] ??
      (status === 405 ? Object.values(api.paths[found.template])[0].responses["405"] : undefined);
    if (!spec) return fail(`${name}: ${method} ${urlPath} answered ${status}, which the document does not list`);
    exercised.add(`${found.operation ? method : "*"} ${found.template} ${status}`);
    if (found.operation) exercised.add(`${method === "HEAD" ? "GET" : method} ${found.template}`);
    const listed = Object.keys(spec.content ?? {});
    mediaType = listed.find((type) => (contentType ?? "").startsWith(type)) ?? listed[0];
    schema = spec.content?.[mediaType]?.schema;
  } else {
    schema = api.components.schemas.Error;  // no route: the services' error shape
  }
  if (mediaType && !(contentType ?? "").startsWith(mediaType))
    return fail(`${name}: content type ${contentType}, the document says ${mediaType}`);
  // HEAD has no body; a recorded answer of another type kept none.
  if (!schema || mediaType !== "application/json" || method === "HEAD" || !bodyKept)
    return console.log(`ok ${name}: ${status}`);
  let parsed;
  try {
    parsed = JSON.parse(body);
  } catch {
    return fail(`${name}: the body is not JSON: ${body.slice(0, 200)}`);
  }
  const validate = ajv.compile(schema);
  if (!validate(parsed)) {
    fail(`${name}: ${status} ${body} does not match: ${ajv.errorsText(validate.errors)}`);
    return parsed;
  }
  console.log(`ok ${name}: ${status}`);
  return parsed;
}
async function request(name, method, urlPath, { body, contentType = "application/json", expect } = {}) {
  const answer = await fetch(base + urlPath, {
    method,
    body,
    headers: body === undefined ? {} : { "content-type": contentType },
  });
  const text = await answer.text();
  if (expect !== undefined && answer.status !== expect) fail(`${name}: expected ${expect}, got ${answer.status} ${text}`);
  return { status: answer.status, headers: answer.headers, json: check(name, method, urlPath, answer.status, answer.headers.get("content-type"), text) };
}
// A request written byte by byte, for what fetch will not send.
function raw(name, bytes, urlPath, expect) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.end(bytes));
    let data = "";
    socket.on("data", (chunk) => (data += chunk));
    socket.on("close", () => {
      const [head, ...rest] = data.split("\r\n\r\n");
      const status = Number(head.split(" ")[1]);
      const type = /content-type: *([^\r\n]+)/i.exec(head)?.[1];
      if (status !== expect) fail(`${name}: expected ${expect}, got ${status}`);
      check(name, "GET", urlPath, status, type, rest.join("\r\n\r\n"));
      resolve();
    });
  });
}

const order = { orderId: "openapi-3", customerNumber: "C-1", totalAmount: "20.00", items: [{ sku: "SKU-1", quantity: 2, unitPrice: 10 }] };
const accepted = await request("POST /order", "POST", "/order", { body: JSON.stringify(order), expect: 202 });
if (accepted.headers.get("location") !== "/order/openapi-3") fail(`POST /order: Location ${accepted.headers.get("location")}`);
await request("POST /order again, the same order", "POST", "/order", { body: JSON.stringify(order), expect: 202 });
await request("POST /order without an id", "POST", "/order", { body: JSON.stringify({ customerNumber: "C-2", totalAmount: 5 }), expect: 202 });
await request("POST /order, the id taken by another order", "POST", "/order",
  { body: JSON.stringify({ ...order, totalAmount: "21.00" }), expect: 409 });
await request("POST /order, not JSON", "POST", "/order", { body: "{not json", expect: 400 });
await request("POST /order, an invalid field", "POST", "/order", { body: JSON.stringify({ ...order, orderId: "x", totalAmount: "1.234" }), expect: 400 });
await request("POST /order, an unknown field", "POST", "/order", { body: JSON.stringify({ ...order, orderId: "y", extra: 1 }), expect: 400 });
await request("POST /order, not application/json", "POST", "/order", { body: "a", contentType: "text/plain", expect: 415 });
await request("POST /order, a body over the limit", "POST", "/order", { body: "x".repeat(70000), expect: 413 });
await request("PUT /order", "PUT", "/order", { body: "{}", expect: 405 });
const order3 = await waitForOrderStatus(base, "openapi-3", "Completed");
if (order3?.status !== "Completed") fail(`GET /order/openapi-3: ${JSON.stringify(order3)} did not complete`);
await request("GET /order/{orderId}", "GET", "/order/openapi-3", { expect: 200 });
await request("GET /order/{orderId}, unknown", "GET", "/order/no-such-order", { expect: 404 });
await request("GET /order/{orderId}, an invalid id", "GET", "/order/bad%20id", { expect: 400 });
await request("DELETE /order/{orderId}", "DELETE", "/order/openapi-3", { expect: 405 });
await request("GET /health", "GET", "/health", { expect: 200 });
await request("GET /health/ready", "GET", "/health/ready", { expect: 200 });
await request("GET /health/live", "GET", "/health/live", { expect: 200 });
await request("POST /health", "POST", "/health", { body: "{}", expect: 405 });
await request("GET /metrics", "GET", "/metrics", { expect: 200 });
const served = await fetch(`${base}/openapi.json`);
const servedText = await served.text();
if (servedText !== documentText) fail("GET /openapi.json: not the repository's docs/openapi.json");
check("GET /openapi.json", "GET", "/openapi.json", served.status, served.headers.get("content-type"), servedText);
await request("GET /swagger", "GET", "/swagger", { expect: 200 });
await request("GET /swagger/{file}", "GET", "/swagger/swagger-ui.css", { expect: 200 });
await request("GET /swagger/{file}, no such file", "GET", "/swagger/nothing.js", { expect: 404 });
await request("GET on no route", "GET", "/nowhere", { expect: 404 });
await raw("a request that cannot be read", "NOT HTTP AT ALL\r\n\r\n", "/-", 400);
await raw("a head over the limit", `GET /order/x HTTP/1.1\r\nX-Big: ${"a".repeat(70000)}\r\n\r\n`, "/-", 431);

// Every operation of the document was asked at least once.
for (const [template, item] of Object.entries(api.paths))
  for (const method of Object.keys(item))
    if (!exercised.has(`${method.toUpperCase()} ${template}`)) fail(`${method.toUpperCase()} ${template} was never asked`);

await stop();

// 4. Every answer of the C++ HTTP tests (ctest runs them first).
if (answersPath) {
  const lines = existsSync(answersPath) ? readFileSync(answersPath, "utf8").split("\n").filter((line) => line) : [];
  if (lines.length === 0) fail(`${answersPath}: no answers recorded by the HTTP tests`);
  for (const line of lines) {
    const answer = JSON.parse(line);
    const urlPath = answer.path.split("?")[0];
    check(`the HTTP tests' ${answer.method} ${answer.path}`, answer.method, urlPath, answer.status, answer.contentType,
      answer.body, answer.bodyKept);
  }
  console.log(`${lines.length} answers of the HTTP tests checked`);
}

if (failures.length) {
  console.error(`${failures.length} answer(s) do not match the document`);
  process.exit(1);
}
console.log("every answer matches the document");
