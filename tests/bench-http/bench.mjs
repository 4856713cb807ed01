// HTTP load on a real civicflow server (started by ./run): autocannon drives each endpoint
// over loopback for a fixed time with a fixed number of connections, and prints one table
// row per endpoint (requests per second, median and p99 latency, non-2xx answers).
import autocannon from "autocannon";

const base = process.env.BASE;
const seconds = Number(process.env.SECONDS_EACH ?? 10);
const connections = Number(process.env.CONNECTIONS ?? 64);
const seed = Number(process.env.SEED_TICKETS ?? 200);
const tokens = { wang: process.env.TOKEN_WANG, li: process.env.TOKEN_LI };
const bearer = (who) => ({ authorization: `Bearer ${tokens[who]}` });
const ticket = JSON.stringify({
  workflow: "ticket",
  unit: "guoyuan-c1-g1",
  data: { category: "road", description: "路面塌陷需要修补", location: "果园路5号" },
});

async function must(response, what) {
  if (!response.ok && response.status !== 303) {
    throw new Error(`${what}: HTTP ${response.status} ${await response.text()}`);
  }
  return response;
}

async function signIn(who) {
  const response = await must(
    await fetch(`${base}/login`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `login=${who}&password=bench-pass-${who}&action=password&next=/tasks`,
    }),
    `sign in as ${who}`,
  );
  return response.headers.get("set-cookie").split(";")[0];
}

// Tickets reported by the grid worker: the dispatcher's list and the timelines have content.
let instance;
for (let i = 0; i < seed; i++) {
  const response = await must(
    await fetch(`${base}/api/instances`, {
      method: "POST",
      headers: { ...bearer("wang"), "content-type": "application/json" },
      body: ticket,
    }),
    "seed a ticket",
  );
  instance = (await response.json()).instance.id;
}
const cookie = { li: await signIn("li"), wang: await signIn("wang") };

// [line name, table label, request]
const cases = [
  ["healthz", "GET /healthz (the HTTP stack alone)", { path: "/healthz" }],
  ["api_tasks", `GET /api/tasks (dispatcher, ${seed} open)`, { path: "/api/tasks", headers: bearer("li") }],
  ["page_tasks", `GET /tasks page (dispatcher, ${seed} open)`, { path: "/tasks", headers: { cookie: cookie.li } }],
  ["api_instance", "GET /api/instances/{id} (with timeline)", { path: `/api/instances/${instance}`, headers: bearer("wang") }],
  ["page_instance", "GET /instances/{id} page (timeline)", { path: `/instances/${instance}`, headers: { cookie: cookie.wang } }],
  ["page_start_form", "GET /start/ticket page (generated form)", { path: "/start/ticket", headers: { cookie: cookie.wang } }],
  [
    "api_start_ticket",
    "POST /api/instances (start a ticket, durable)",
    {
      path: "/api/instances",
      method: "POST",
      headers: { ...bearer("wang"), "content-type": "application/json" },
      body: ticket,
    },
  ],
  [
    "open311_requests",
    "GET /open311/v2/requests.json (grid worker)",
    { path: `/open311/v2/requests.json?api_key=${tokens.wang}` },
  ],
];

// autocannon's own histogram keeps whole milliseconds; these pages answer in less, so the
// percentiles come from each response's own timing.
function load(path, opts) {
  const durations = [];
  return new Promise((resolve, reject) => {
    const instance = autocannon({ ...opts, url: base + path, connections, duration: seconds }, (err, result) =>
      err ? reject(err) : resolve({ result, durations }),
    );
    instance.on("response", (_client, status, _bytes, ms) => {
      if (status < 300) durations.push(ms);
    });
  });
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
const ms = (v) => (v === undefined ? "-" : `${v.toFixed(2)} ms`);
console.log(`${connections} connections, ${seconds} s each, ${seed} tickets seeded\n`);
console.log("| endpoint | requests/s | median | p99 | non-2xx |");
console.log("| --- | --- | --- | --- | --- |");
const lines = [];
for (const [key, name, { path, ...opts }] of cases) {
  const { result, durations } = await load(path, opts);
  durations.sort((a, b) => a - b);
  const bad = result.non2xx + result.errors + result.timeouts;
  const rate = Math.round(result.requests.average);
  const [p50, p99] = [percentile(durations, 50), percentile(durations, 99)];
  console.log(`| ${name} | ${rate} | ${ms(p50)} | ${ms(p99)} | ${bad} |`);
  const at = `http_${connections}_${key}`;
  lines.push(`${at}_rate: ${rate} requests/s`, `${at}_p50: ${ms(p50)}`, `${at}_p99: ${ms(p99)}`, `${at}_failed: ${bad} requests`);
}
console.log(`\n${lines.join("\n")}`);
