// OrderService in its embedded mode (all three services in one process, no broker) on a free port,
// its databases in a directory of its own, for the OpenAPI and Swagger UI tests.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Starts it and waits until /health/ready answers 200; `stop()` ends it and removes its files.
export async function startOrderService(binary, settingsDir) {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "order-service-"));
  const child = spawn(binary, ["--in-memory", "--config", path.join(settingsDir, "OrderService.json")], {
    cwd: dir,
    env: {
      ...process.env,
      Http__Host: "127.0.0.1",
      Http__Port: String(port),
      Database__Path: path.join(dir, "orders.db"),
      Http__SwaggerUiDir: path.resolve(settingsDir, "../OrderService/SwaggerUi/node_modules/swagger-ui-dist"),
      Logging__Level: "warning",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const base = `http://127.0.0.1:${port}`;
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      if ((await fetch(`${base}/health/ready`)).status === 200) return { base, port, stop };
    } catch {}
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error("OrderService --in-memory did not become ready within 30 s");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Polls GET /order/{id} until its status is `status` or `timeoutMs` passes; the last answer's body.
export async function waitForOrderStatus(base, id, status, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let order;
  do {
    const answer = await fetch(`${base}/order/${id}`);
    order = answer.status === 200 ? await answer.json() : undefined;
    if (order?.status === status) return order;
    await new Promise((r) => setTimeout(r, 100));
  } while (Date.now() < deadline);
  return order;
}
