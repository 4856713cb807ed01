// The ticket process on bpmn-engine (npm), the way an application embedding it would keep
// tickets: each ticket's engine state is saved after every step (written to its own file,
// fsync'd, then renamed over the last one) and recovered from that file before the next.
//
//   node bpmn-engine.mjs inprocess TICKETS CLIENTS DIR   prints tickets/s
//   node bpmn-engine.mjs serve PORT DIR                  POST /tickets, POST /tickets/ID/TASK
import { Engine } from "bpmn-engine";
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { mkdir, open, readFile, rename } from "node:fs/promises";
import http from "node:http";

const here = new URL(".", import.meta.url).pathname;
const source = readFileSync(`${here}ticket.bpmn`, "utf8")
  .replace(">RETURNED<", '>${environment.services.differs(environment.output.decision,"accept")}<')
  .replace(">ACCEPTED<", '>${environment.services.equals(environment.output.decision,"accept")}<')
  .replace(">UNRESOLVED<", ">${environment.services.not(environment.output.resolved)}<")
  .replace(">RESOLVED<", ">${environment.output.resolved}<");
const steps = JSON.parse(readFileSync(`${here}steps.json`, "utf8"));
const services = { equals: (a, b) => a === b, differs: (a, b) => a !== b, not: (a) => !a };

let dir;
let next = 0;

async function save(id, state) {
  const path = `${dir}/${id}.json`;
  const file = await open(`${path}.tmp`, "w");
  await file.writeFile(JSON.stringify(state));
  await file.sync();
  await file.close();
  await rename(`${path}.tmp`, path);
}

// Drives one engine: `waited()` is the user task it next waits on (null once it ended).
function driven(engine) {
  const listener = new EventEmitter();
  let reached;
  let pending;
  const arm = () => (pending = new Promise((resolve) => (reached = resolve)));
  listener.on("wait", (api) => reached(api));
  engine.on("end", () => reached(null));
  arm();
  return { listener, waited: () => pending, arm };
}

async function start(data) {
  const id = `t${next++}`;
  const engine = new Engine({ name: id, source, services, variables: { start: data } });
  const run = driven(engine);
  await engine.execute({ listener: run.listener });
  await run.waited();
  await save(id, await engine.getState());
  return id;
}

async function complete(id, task, form) {
  const state = JSON.parse(await readFile(`${dir}/${id}.json`, "utf8"));
  const engine = new Engine({ name: id, source, services }).recover(state);
  const run = driven(engine);
  await engine.resume({ listener: run.listener });
  const waiting = await run.waited();
  if (!waiting || waiting.id !== task) throw new Error(`${id}: waiting at ${waiting?.id}, not ${task}`);
  Object.assign(waiting.environment.output, form);
  run.arm();
  waiting.signal(form);
  await run.waited();
  await save(id, await engine.getState());
}

async function ticket() {
  const id = await start(steps.start);
  for (const [task, form] of steps.steps) await complete(id, task, form);
}

async function inprocess(tickets, clients) {
  let left = tickets;
  const began = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (left > 0) {
        left--;
        await ticket();
      }
    }),
  );
  const seconds = (performance.now() - began) / 1000;
  console.log(`bpmn_engine_inprocess_${clients}_clients: ${(tickets / seconds).toFixed(1)} tickets/s`);
}

function serve(port) {
  const server = http.createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    try {
      const parts = req.url.split("/").filter(Boolean);
      if (req.method === "POST" && parts.length === 1 && parts[0] === "tickets") {
        const id = await start(JSON.parse(body));
        res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ id }));
      } else if (req.method === "POST" && parts.length === 3 && parts[0] === "tickets") {
        await complete(parts[1], parts[2], JSON.parse(body));
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      } else {
        res.writeHead(404).end();
      }
    } catch (err) {
      res.writeHead(409, { "content-type": "text/plain" }).end(String(err));
    }
  });
  server.listen(port, "127.0.0.1");
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "inprocess") {
  dir = args[2];
  await mkdir(dir, { recursive: true });
  await inprocess(Number(args[0]), Number(args[1]));
} else if (mode === "serve") {
  dir = args[1];
  await mkdir(dir, { recursive: true });
  serve(Number(args[0]));
} else {
  console.error("usage: bpmn-engine.mjs inprocess TICKETS CLIENTS DIR | serve PORT DIR");
  process.exit(2);
}
