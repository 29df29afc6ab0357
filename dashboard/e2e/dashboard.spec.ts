import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { expect, test, type Locator, type Page } from "@playwright/test";

// Runs against the real stack (Kafka, PostgreSQL, consumer, producer, API) that
// tests/integration/test_dashboard_e2e.py starts; API_PID lets us pause the API.
const SHOTS = process.env.E2E_SCREENSHOTS ?? path.resolve(__dirname, "../../artifacts/e2e");
mkdirSync(SHOTS, { recursive: true });

const number = (text: string | null) => Number((text ?? "").replace(/[^0-9.-]/g, ""));

async function tileValue(page: Page, id: string): Promise<number> {
  return number(await page.getByTestId(id).locator(".tile-value").textContent());
}

test("overview loads and its counts increase", async ({ page }) => {
  await page.goto("/?view=overview");
  await expect(page.getByRole("heading", { name: "Overview" })).toBeVisible();
  await expect.poll(() => tileValue(page, "stored-total"), { timeout: 30_000 }).toBeGreaterThan(0);
  const first = await tileValue(page, "stored-total");
  await expect.poll(() => tileValue(page, "stored-total"), { timeout: 30_000 }).toBeGreaterThan(first);
  await expect(page.getByTestId("group-state").locator(".tile-value")).toHaveText(/stable/);
  await page.screenshot({ path: path.join(SHOTS, "overview.png"), fullPage: true });
});

test("overview shows the disk budget, each share's use and no alarm", async ({ page }) => {
  await page.goto("/?view=overview");
  const panel = page.getByTestId("disk-panel");
  await expect(panel.getByTestId("disk-budget")).toContainText(/Budget [0-9.]+ [KMGT]iB; free [0-9.]+ [KMGT]iB \(floor/, {
    timeout: 30_000,
  });
  await expect(panel.getByRole("meter")).toHaveCount(3);
  await expect(panel.getByTestId("disk-drops")).toContainText("Retention drops");
  await expect(panel.getByRole("alert")).toHaveCount(0);
});

test("overview draws throughput, freshness and lag per partition, and raises a silent-sensor alarm", async ({ page }) => {
  const quiet = process.env.E2E_QUIET_SENSOR ?? "";
  expect(quiet).not.toBe("");
  await page.goto("/?view=overview");
  // the stored rate is drawn from the API's history once it holds two points
  await expect(page.getByRole("img", { name: /^Throughput: .* stored [1-9][0-9,]*\/s/ })).toBeVisible({ timeout: 30_000 });
  await expect(page.getByRole("img", { name: /^Freshness: now p50 [0-9,]+ ms, p99 [0-9,]+ ms/ })).toBeVisible({
    timeout: 30_000,
  });
  const heat = page.getByTestId("lag-heatmap");
  await expect(heat.locator("ol li")).toHaveCount(12);
  await expect(heat.getByRole("img")).toHaveAttribute("aria-label", /in messages: worst now: partition \d+ at [0-9,]+/);
  await heat.getByRole("button", { name: "seconds" }).click();
  await expect(heat.getByRole("img")).toHaveAttribute("aria-label", /in seconds: worst now: partition \d+ at [0-9.]+ s/);
  // sent four times a second apart, then nothing: silent past 10 usual intervals (+15 s)
  await expect(page.getByTestId("alarm-silent_sensors")).toContainText(quiet, { timeout: 60_000 });
  await expect(page.getByTestId("alarms").getByRole("alert")).toHaveCount(0); // nothing critical: no stall, no outage
  await page.screenshot({ path: path.join(SHOTS, "overview-alarms.png"), fullPage: true });
});

test("explorer filters by sensor and time range, and keeps them in the URL", async ({ page }) => {
  const end = new Date();
  const start = new Date(end.getTime() - 10 * 60 * 1000);
  const url = `/?view=explorer&sensor=sensor-00003&range=custom&start=${start.toISOString()}&end=${end.toISOString()}`;
  await page.goto(url);
  const rows = page.getByTestId("readings").locator("tbody tr");
  await expect(rows.first()).toBeVisible();
  const sensors = await page.getByTestId("readings").locator('td[data-col="sensor"]').allTextContents();
  const times = await page
    .getByTestId("readings")
    .locator('td[data-col="timestamp"] time')
    .evaluateAll((els) => els.map((e) => e.getAttribute("datetime") ?? ""));
  const shown = await page.getByTestId("readings").locator('td[data-col="timestamp"]').first().textContent();
  expect(shown).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/); // readable, to the millisecond
  expect(sensors.length).toBeGreaterThan(0);
  expect(new Set(sensors)).toEqual(new Set(["sensor-00003"]));
  for (const t of times) {
    const ms = Date.parse(t);
    expect(ms).toBeGreaterThanOrEqual(start.getTime());
    expect(ms).toBeLessThan(end.getTime());
  }
  expect(page.url()).toContain("sensor=sensor-00003");
  await expect(page.getByRole("img", { name: /Values per/ })).toBeVisible();
  await expect(page.getByTestId("resolution")).toContainText(/resolution (raw readings|1-minute rollups) \(from metrics/);
  await page.screenshot({ path: path.join(SHOTS, "explorer.png"), fullPage: true });
});

test("several sensors get a chart each, and the CSV download holds exactly the rows of the range", async ({ page }) => {
  // ends 3 s ago: the consumer has stored everything stamped before that
  const end = new Date(Date.now() - 3_000);
  const start = new Date(end.getTime() - 5 * 60 * 1000);
  const sensors = ["sensor-00003", "sensor-00004"];
  const q = sensors.map((s) => `sensor=${s}`).join("&");
  await page.goto(`/?view=explorer&${q}&range=custom&start=${start.toISOString()}&end=${end.toISOString()}`);
  for (const s of sensors) {
    await expect(page.getByRole("figure", { name: new RegExp(`^Values per \\S+ bucket: ${s}$`) })).toBeVisible();
  }
  await expect(page.getByTestId("readings").locator("tbody tr").first()).toBeVisible();
  const download = page.waitForEvent("download");
  await page.getByTestId("csv").click();
  const csv = (await (await download).createReadStream()).toArray();
  const lines = Buffer.concat(await csv).toString("utf8").trim().split("\n");
  expect(lines[0]).toBe("timestamp,sensor_id,event_id,value,seq");
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const params = new URLSearchParams({ start: start.toISOString(), end: end.toISOString(), limit: "10000" });
    for (const s of sensors) params.append("sensor_id", s);
    if (cursor) params.set("cursor", cursor);
    const page_ = (await (await page.request.get(`/api/readings?${params.toString()}`)).json()) as {
      data: { event_id: string }[];
      next_cursor: string | null;
    };
    ids.push(...page_.data.map((r) => r.event_id));
    cursor = page_.next_cursor;
  } while (cursor);
  expect(ids.length).toBeGreaterThan(0);
  expect(lines.slice(1).map((l) => l.split(",")[2])).toEqual(ids);
  await page.screenshot({ path: path.join(SHOTS, "explorer-multiples.png"), fullPage: true });
});

/** The gapped sensor's chart in the explorer, over the range the test wrote it. */
async function gapChart(page: Page): Promise<Locator> {
  const sensor = process.env.E2E_GAP_SENSOR ?? "";
  const start = process.env.E2E_GAP_START ?? "";
  const end = process.env.E2E_GAP_END ?? "";
  expect(sensor && start && end).toBeTruthy();
  await page.goto(`/?view=explorer&sensor=${sensor}&range=custom&start=${start}&end=${end}`);
  const figure = page.getByRole("figure", { name: new RegExp(`^Values per \\S+ bucket: ${sensor}$`) });
  await expect(figure).toBeVisible();
  return figure;
}

/** Pixels of the first sensor's colour (#1f77b4) in the first, middle and last thirds of a
 *  chart's plotting area (the canvas less uPlot's 60 px y axis), each trimmed by a tenth at
 *  both edges. */
function inkByThird(figure: Locator): Promise<number[]> {
  return figure.locator("canvas").evaluate((c: HTMLCanvasElement) => {
    const ctx = c.getContext("2d");
    if (!ctx) return [-1, -1, -1];
    const dpr = window.devicePixelRatio || 1;
    const left = Math.round(60 * dpr);
    const third = (c.width - left) / 3;
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    return [0, 1, 2].map((k) => {
      let n = 0;
      for (let x = Math.ceil(left + third * (k + 0.1)); x < left + third * (k + 0.9); x++) {
        for (let y = 0; y < c.height; y++) {
          const i = (y * c.width + x) * 4;
          const [r, g, b] = [px[i] ?? 0, px[i + 1] ?? 0, px[i + 2] ?? 0];
          if (b > 140 && r < 90 && g > 80 && g < 160) n++;
        }
      }
      return n;
    });
  });
}

test("a gap in a sensor's readings is drawn as a break", async ({ page }) => {
  const figure = await gapChart(page);
  // data in the outer thirds, none in the middle one, where the sensor sent nothing
  await expect.poll(async () => (await inkByThird(figure))[0], { timeout: 30_000 }).toBeGreaterThan(0);
  const [before, during, after] = await inkByThird(figure);
  expect(before).toBeGreaterThan(0);
  expect(after).toBeGreaterThan(0);
  expect(during).toBe(0);
  await page.screenshot({ path: path.join(SHOTS, "explorer-gap.png"), fullPage: true });
});

test("a chart whose code arrives after its data still draws the data", async ({ page }) => {
  // uPlot's code is loaded on demand; held back 2 s here, it comes well after the readings
  // (as on a slow machine), and the chart must be made with them, not with the empty first render.
  let held = 0;
  await page.route("**/_next/static/chunks/**/*.js", async (route) => {
    const response = await route.fetch();
    const body = await response.text();
    if (body.includes("u-over")) {
      held++;
      await new Promise((r) => setTimeout(r, 2000));
    }
    await route.fulfill({ response, body });
  });
  const figure = await gapChart(page);
  await expect.poll(async () => (await inkByThird(figure))[0], { timeout: 15_000 }).toBeGreaterThan(0);
  expect(held).toBe(1);
  const [before, during, after] = await inkByThird(figure);
  expect(after).toBeGreaterThan(0);
  expect(during).toBe(0);
  expect(before).toBeGreaterThan(0);
});

test("a sensor that stops sending turns silent, and the quietest come first", async ({ page }) => {
  const quiet = process.env.E2E_QUIET_SENSOR ?? "";
  expect(quiet).not.toBe("");
  await page.goto("/?view=sensors");
  await expect(page.getByTestId("sensors").locator("tbody tr").first()).toHaveAttribute("data-status", /live|late|silent/);
  // sent four times a second apart, then nothing: silent past 10 usual intervals (+15 s)
  const rows = page.getByTestId("sensors").locator("tbody tr");
  await expect(rows.filter({ hasText: quiet })).toHaveAttribute("data-status", "silent", { timeout: 60_000 });
  await expect(rows.first()).toHaveAttribute("data-status", "silent");
  const live = page.getByTestId("sensors").locator('tbody tr[data-status="live"]');
  await expect(live.first()).toBeVisible(); // the simulated sensors still send
  // worst first: the stopped sensor (and any other silent one, like the test's gapped sensor)
  // comes before every live one
  const order = await rows.evaluateAll((trs) => trs.map((tr) => [tr.textContent ?? "", tr.getAttribute("data-status")]));
  const quietAt = order.findIndex(([text]) => text?.includes(quiet));
  const firstLive = order.findIndex(([, status]) => status === "live");
  expect(quietAt).toBeGreaterThanOrEqual(0);
  expect(quietAt).toBeLessThan(firstLive);
  await page.screenshot({ path: path.join(SHOTS, "sensors-silent.png"), fullPage: true });
});

test("sensors table opens a sensor's page, with its last hour drawn in the row", async ({ page }) => {
  await page.goto("/?view=sensors");
  await page.getByTestId("sensor-filter").fill("00007");
  await expect(page.getByTestId("sensors").locator("tbody tr")).toHaveCount(1);
  await expect(page.getByRole("img", { name: /^sensor-00007, last hour: [1-9]\d* of 60 minutes, last -?[0-9.]+$/ })).toBeVisible();
  await page.screenshot({ path: path.join(SHOTS, "sensors.png"), fullPage: true });
  await page.getByRole("button", { name: "sensor-00007" }).click();
  await expect(page).toHaveURL(/view=sensor&/);
  await expect(page).toHaveURL(/sensor=sensor-00007/);
  await expect(page.getByTestId("sensor-stats")).toContainText(/[0-9,]+ events; last value/);
  await expect(page.getByTestId("last-events").locator("tbody tr")).toHaveCount(20);
  await page.getByRole("button", { name: "Open in the explorer" }).click();
  await expect(page).toHaveURL(/view=explorer/);
  await expect(page).toHaveURL(/sensor=sensor-00007/);
});

test("a sensor's page lists its seq gap with its time, and draws the gap as a break", async ({ page }) => {
  const sensor = process.env.E2E_GAP_SENSOR ?? "";
  expect(sensor).not.toBe("");
  await page.goto(`/?view=sensor&sensor=${sensor}&range=1h`);
  const gaps = page.getByTestId("seq-gaps").locator("tbody tr");
  await expect(gaps).toHaveCount(1);
  // the readings of the middle three minutes never came: seq jumps by 91, after 89 comes 180
  await expect(gaps.first()).toContainText(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z\s*180\s*89\s*90/);
  await expect(page.getByTestId("order-violations").locator("tbody tr")).toHaveText(["none"]);
  await expect(page.getByTestId("sensor-status")).toHaveText(/late|silent/);
  // its values, drawn once the buckets are in: the two thirds with readings
  await expect(page.getByRole("img", { name: new RegExp(`^Values per \\S+ bucket: ${sensor}: [1-9]\\d* buckets`) })).toBeVisible();
  await page.screenshot({ path: path.join(SHOTS, "sensor.png"), fullPage: true });
});

test("kafka view shows partitions and members", async ({ page }) => {
  await page.goto("/?view=kafka");
  await expect(page.getByTestId("partitions").locator("tbody tr")).toHaveCount(12);
  await page.screenshot({ path: path.join(SHOTS, "kafka.png"), fullPage: true });
});

test("a new rate saved in the form reaches the producer", async ({ page }) => {
  await page.goto("/?view=config");
  await expect(page.getByTestId("config-version")).toContainText("Version");
  await page.getByLabel("rate", { exact: true }).fill("1500");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByTestId("saved")).toBeVisible();
  await expect(page.getByTestId("history").locator("li").first()).toContainText("rate 1500");
  await page.screenshot({ path: path.join(SHOTS, "config.png"), fullPage: true });
  await page.goto("/?view=overview");
  await expect.poll(() => tileValue(page, "produced-rate"), { timeout: 40_000 }).toBeGreaterThan(1100);
});

test("invalid values show errors: the client's, then the API's own", async ({ page }) => {
  await page.goto("/?view=config");
  await expect(page.getByTestId("config-version")).toContainText("Version");
  await page.getByLabel("duplicate_ratio", { exact: true }).fill("3");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByTestId("error-duplicate_ratio")).toContainText("at most 1");
  await page.getByLabel("duplicate_ratio", { exact: true }).fill("0");
  // each value is in range, but together they are not: only the API knows that rule
  await page.getByLabel("burst_every_s", { exact: true }).fill("10");
  await page.getByLabel("burst_duration_s", { exact: true }).fill("20");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByTestId("error-burst_duration_s")).toContainText("shorter than burst_every_s");
});

test("the demo scenarios are one click each on the form", async ({ page }) => {
  await page.goto("/?view=config");
  await expect(page.getByTestId("config-version")).toContainText("Version");
  await page.getByTestId("scenario-slowdown").click();
  await expect(page.getByTestId("saved")).toBeVisible();
  await expect(page.getByTestId("history").locator("li").first()).toContainText("slowdown 2000 ms");
  await expect(page.getByLabel("consumer_batch_max", { exact: true })).toHaveValue("500");
  await page.getByTestId("scenario-duplicates").click();
  await expect(page.getByTestId("history").locator("li").first()).toContainText("duplicates 0.1, poison");
  await expect(page.getByTestId("history").locator("li").first()).toContainText("slowdown 0 ms");
  await page.getByTestId("scenario-normal").click();
  await expect(page.getByTestId("history").locator("li").first()).toContainText("duplicates 0, poison");
});

test("a poison message appears in the dead-letter browser with its reason and payload", async ({ page }) => {
  const mark = process.env.E2E_POISON_MARK ?? "";
  expect(mark).not.toBe("");
  await page.goto("/?view=deadletters");
  const row = page.getByTestId("dead-letters").locator("tbody tr", { hasText: "malformed_json" });
  await expect(row).toHaveCount(1, { timeout: 30_000 });
  // counted by reason over time: the one malformed message, in the last 24 hours' buckets
  const timeline = page.getByTestId("dlq-timeline");
  await expect(timeline.getByRole("img")).toHaveAttribute("aria-label", /in the last 24 h, in buckets of 15 min: .*malformed_json 1\b/);
  await timeline.getByRole("button", { name: "1 h" }).click();
  await expect(timeline.getByRole("img")).toHaveAttribute("aria-label", /in the last 1 h, in buckets of 1 min: .*malformed_json 1\b/);
  await row.getByRole("button").click();
  await expect(page.getByTestId("dead-letter")).toContainText("malformed_json");
  await expect(page.getByTestId("text-value")).toContainText(mark);
  await expect(page.getByTestId("hex-value")).toContainText("7b 22 73 65"); // {"se
  await expect(page.getByTestId("dead-headers")).toContainText("sensorpipe.reason");
  await page.screenshot({ path: path.join(SHOTS, "deadletters.png"), fullPage: true });
});

test("the event lookup finds a stored id and reports the duplicate that was sent", async ({ page }) => {
  const id = process.env.E2E_EVENT_ID ?? "";
  expect(id).not.toBe("");
  await page.goto("/?view=events");
  await page.getByTestId("event-id").fill(id);
  await page.getByRole("button", { name: "Look up" }).click();
  await expect(page.getByTestId("event-found")).toContainText("seq 0, value 42.5");
  const copies = page.getByTestId("event-ignored").locator("tbody tr");
  await expect(copies).toHaveCount(1);
  await expect(copies.first()).toContainText("duplicate");
  await page.getByTestId("event-id").fill("no-such-event");
  await page.getByRole("button", { name: "Look up" }).click();
  await expect(page.getByTestId("event-missing")).toBeVisible();
  await page.getByTestId("event-id").fill(id);
  await page.getByRole("button", { name: "Look up" }).click();
  await page.screenshot({ path: path.join(SHOTS, "events.png"), fullPage: true });
});

test("the dark theme follows the system's preference", async ({ page }) => {
  await page.emulateMedia({ colorScheme: "dark" });
  await page.goto("/?view=overview");
  await expect.poll(() => tileValue(page, "stored-total")).toBeGreaterThan(0);
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(bg).toBe("rgb(18, 21, 27)");
  await page.screenshot({ path: path.join(SHOTS, "overview-dark.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });
  expect(await page.evaluate(() => getComputedStyle(document.body).backgroundColor)).toBe("rgb(246, 247, 249)");
});

test("the layout works at 390 px", async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto("/?view=overview");
  await expect.poll(() => tileValue(page, "stored-total")).toBeGreaterThan(0);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(1);
  await page.screenshot({ path: path.join(SHOTS, "overview-390.png"), fullPage: true });
});

test("with the API stopped, the banner appears and the last data stays", async ({ page }) => {
  const pid = Number(process.env.API_PID);
  expect(pid).toBeGreaterThan(0);
  await page.goto("/?view=overview");
  await expect.poll(() => tileValue(page, "stored-total")).toBeGreaterThan(0);
  execFileSync("kill", ["-STOP", String(pid)]);
  try {
    await expect(page.getByTestId("api-banner")).toBeVisible({ timeout: 30_000 });
    expect(await tileValue(page, "stored-total")).toBeGreaterThan(0); // stale, not blank
    await page.screenshot({ path: path.join(SHOTS, "api-down.png"), fullPage: true });
  } finally {
    execFileSync("kill", ["-CONT", String(pid)]);
  }
  await expect(page.getByTestId("api-banner")).toBeHidden({ timeout: 30_000 });
});
