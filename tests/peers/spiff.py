"""The ticket process on SpiffWorkflow (PyPI), the way an application embedding it keeps
tickets: one SQLite database (WAL, synchronous=FULL), each ticket's serialized workflow
reloaded before every human step and saved after it in one transaction.

    python spiff.py inprocess TICKETS CLIENTS DB    prints tickets/s
    python spiff.py serve PORT DB                   POST /tickets, POST /tickets/ID/TASK
"""

import json
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from SpiffWorkflow.bpmn.parser import BpmnParser
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

HERE = Path(__file__).parent
CONDITIONS = {
    ">ACCEPTED<": '>decision == "accept"<',
    ">RETURNED<": '>decision != "accept"<',
    ">RESOLVED<": ">resolved<",
    ">UNRESOLVED<": ">not resolved<",
}
STEPS = json.loads((HERE / "steps.json").read_text())


def load_spec():
    text = (HERE / "ticket.bpmn").read_text()
    for placeholder, expression in CONDITIONS.items():
        text = text.replace(placeholder, expression)
    path = Path(DB).with_suffix(".bpmn")
    path.write_text(text)
    parser = BpmnParser()
    parser.add_bpmn_file(str(path))
    return parser.get_spec("ticket")


local = threading.local()


def db():
    if not hasattr(local, "conn"):
        conn = sqlite3.connect(DB, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        local.conn = conn
    return local.conn


def start(data):
    workflow = BpmnWorkflow(SPEC)
    workflow.data.update(data)
    workflow.do_engine_steps()
    conn = db()
    conn.execute("BEGIN IMMEDIATE")
    cursor = conn.execute("INSERT INTO tickets (state) VALUES (?)", (SERIALIZER.serialize_json(workflow),))
    conn.execute("COMMIT")
    return cursor.lastrowid


def complete(ticket, task_name, form):
    conn = db()
    conn.execute("BEGIN IMMEDIATE")
    try:
        (state,) = conn.execute("SELECT state FROM tickets WHERE id = ?", (ticket,)).fetchone()
        workflow = SERIALIZER.deserialize_json(state)
        ready = [t for t in workflow.get_tasks(state=TaskState.READY) if t.task_spec.manual]
        if len(ready) != 1 or ready[0].task_spec.name != task_name:
            raise ValueError(f"ticket {ticket}: ready {[t.task_spec.name for t in ready]}, not {task_name}")
        ready[0].data.update(form)
        ready[0].run()
        workflow.do_engine_steps()
        conn.execute("UPDATE tickets SET state = ? WHERE id = ?", (SERIALIZER.serialize_json(workflow), ticket))
        conn.execute("COMMIT")
        return workflow.is_completed()
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def ticket():
    ticket_id = start(STEPS["start"])
    for task_name, form in STEPS["steps"]:
        done = complete(ticket_id, task_name, form)
    assert done, f"ticket {ticket_id} did not end"


def inprocess(tickets, clients):
    left = [tickets]
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            ticket()

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = tickets / (time.perf_counter() - began)
    print(f"spiff_inprocess_{clients}_clients: {rate:.1f} tickets/s", flush=True)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        parts = [p for p in self.path.split("/") if p]
        try:
            if parts == ["tickets"]:
                self.answer(201, {"id": start(body)})
            elif len(parts) == 3 and parts[0] == "tickets":
                self.answer(200, {"ended": complete(int(parts[1]), parts[2], body)})
            else:
                self.answer(404, {})
        except ValueError as refused:
            self.answer(409, {"error": str(refused)})


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    DB = args[-1]
    SPEC = load_spec()
    SERIALIZER = BpmnWorkflowSerializer()
    setup = sqlite3.connect(DB)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE IF NOT EXISTS tickets (id INTEGER PRIMARY KEY, state TEXT NOT NULL)")
    setup.close()
    if mode == "inprocess":
        inprocess(int(args[0]), int(args[1]))
    elif mode == "serve":
        ThreadingHTTPServer.daemon_threads = True
        ThreadingHTTPServer(("127.0.0.1", int(args[0])), Handler).serve_forever()
    else:
        sys.exit("usage: spiff.py inprocess TICKETS CLIENTS DB | serve PORT DB")
