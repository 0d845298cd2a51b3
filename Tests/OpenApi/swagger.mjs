// The Swagger UI test (ctest "swagger: ..."): OrderService in its embedded mode serves /swagger;
// Debian's Chromium, headless and driven by playwright-core, loads the page, finds POST /order among
// the operations the document lists, and with "Try it out" posts an order, which then completes.
//   node swagger.mjs <OrderService executable> <appsettings dir>
import { chromium } from "playwright-core";
import path from "node:path";
import { startOrderService, waitForOrderStatus } from "./server.mjs";

const [binary, settingsDir] = process.argv.slice(2).map((p) => path.resolve(p));
const { base, stop } = await startOrderService(binary, settingsDir);
// As root and on a machine with no network but its own: no sandbox, nothing fetched in the background.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await browser.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  await page.goto(`${base}/swagger`);
  // The operations come from /openapi.json: POST /order is listed with its summary.
  const operation = page.locator("#operations-default-submitOrder");
  await operation.waitFor({ timeout: 20000 });
  const summary = await operation.locator(".opblock-summary").innerText();
  if (!/POST/.test(summary) || !/\/order/.test(summary)) throw new Error(`POST /order is listed as "${summary}"`);
  console.log(`ok the page lists: ${summary.replace(/\s+/g, " ")}`);
  await operation.locator(".opblock-summary").click();
  await operation.locator("button.try-out__btn").click();
  const order = { orderId: "swagger-ui-3", customerNumber: "C-UI", totalAmount: "30.00",
                  items: [{ sku: "SKU-1", quantity: 1, unitPrice: "30.00" }] };
  await operation.locator("textarea.body-param__text").fill(JSON.stringify(order, null, 2));
  await operation.locator("button.execute").click();
  const status = operation.locator(".live-responses-table .response .response-col_status").first();
  await status.waitFor({ timeout: 20000 });
  const code = (await status.innerText()).trim();
  if (code !== "202") throw new Error(`Try it out answered ${code}`);
  console.log("ok Try it out: POST /order answered 202");
  const stored = await waitForOrderStatus(base, "swagger-ui-3", "Completed");
  if (stored?.status !== "Completed") throw new Error(`the order did not complete: ${JSON.stringify(stored)}`);
  console.log("ok the order posted from the page completed");
  if (problems.length) throw new Error(problems.join("; "));
} catch (error) {
  failed = true;
  console.error(`FAIL ${error.message}`);
} finally {
  await browser.close();
  await stop();
}
process.exit(failed ? 1 : 0);
