//! Schema migrations, applied in order on connect and recorded in `schema_migrations`.
//! Column types are the common subset of SQLite and PostgreSQL: TEXT, BIGINT; times are
//! milliseconds since the epoch, JSON is TEXT, bytes are BLOB (BYTEA on PostgreSQL, the one
//! word [`crate::Store`] rewrites). A line starting `--postgres ` is a statement for
//! PostgreSQL only (a comment to SQLite).

pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE units (
    id TEXT PRIMARY KEY,
    parent_id TEXT REFERENCES units(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    name_en TEXT,
    path TEXT NOT NULL UNIQUE
);
CREATE TABLE people (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    unit_id TEXT NOT NULL REFERENCES units(id),
    phone TEXT,
    locale TEXT
);
CREATE TABLE person_roles (
    person_id TEXT NOT NULL REFERENCES people(id),
    role TEXT NOT NULL,
    unit_id TEXT NOT NULL REFERENCES units(id),
    PRIMARY KEY (person_id, role, unit_id)
);
CREATE INDEX person_roles_role ON person_roles (role);
CREATE TABLE workflows (
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    workflow_version BIGINT NOT NULL,
    unit_id TEXT NOT NULL REFERENCES units(id),
    unit_path TEXT NOT NULL,
    status TEXT NOT NULL,
    position TEXT NOT NULL,
    data TEXT NOT NULL,
    rev BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
CREATE INDEX instances_unit ON instances (unit_path);
CREATE TABLE events (
    instance_id TEXT NOT NULL REFERENCES instances(id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances(id),
    state TEXT NOT NULL,
    form TEXT,
    role TEXT,
    person_id TEXT,
    unit_id TEXT NOT NULL,
    unit_path TEXT NOT NULL,
    pool BIGINT NOT NULL,
    claimed_by TEXT,
    escalated_to TEXT,
    status TEXT NOT NULL,
    due_at BIGINT,
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    completed_by TEXT
);
CREATE INDEX tasks_open ON tasks (status, unit_path);
CREATE INDEX tasks_instance ON tasks (instance_id, state);
CREATE TABLE timers (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances(id),
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    fire_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX timers_due ON timers (fire_at);
CREATE INDEX timers_instance ON timers (instance_id, state);
CREATE TABLE schedules (
    workflow_id TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    next_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, schedule_id)
);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE plugins (
    id TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    manifest TEXT NOT NULL,
    wasm_base64 TEXT NOT NULL,
    signed_with TEXT,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE TABLE bindings (
    unit_id TEXT NOT NULL REFERENCES units(id),
    workflow_id TEXT NOT NULL,
    hook TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    plugin_version TEXT NOT NULL,
    limits TEXT NOT NULL,
    bound_at BIGINT NOT NULL,
    PRIMARY KEY (unit_id, workflow_id, hook),
    FOREIGN KEY (plugin_id, plugin_version) REFERENCES plugins (id, version)
);
CREATE TABLE trusted_keys (
    unit_id TEXT NOT NULL REFERENCES units(id),
    public_key TEXT NOT NULL,
    PRIMARY KEY (unit_id, public_key)
);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE api_tokens (
    token_sha256 TEXT PRIMARY KEY,
    person_id TEXT NOT NULL REFERENCES people(id),
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
"#,
    ),
    (
        4,
        r#"
ALTER TABLE tasks ADD COLUMN below BIGINT NOT NULL DEFAULT 0;
ALTER TABLE people ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
CREATE INDEX tasks_open_below ON tasks (status, below);
-- Amounts in thousandths, so sums are exact on both databases.
CREATE TABLE ledger (
    person_id TEXT NOT NULL,
    account TEXT NOT NULL,
    amount_milli BIGINT NOT NULL,
    instance_id TEXT NOT NULL REFERENCES instances(id),
    at BIGINT NOT NULL
);
CREATE INDEX ledger_period ON ledger (at, person_id, account);
-- Callbacks already taken, by their own id: a repeated callback changes nothing.
CREATE TABLE signal_receipts (
    workflow_id TEXT NOT NULL,
    signal TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, signal, receipt_id)
);
-- Answers to POSTs that carried an Idempotency-Key, per person.
CREATE TABLE idempotency_keys (
    person_id TEXT NOT NULL,
    key TEXT NOT NULL,
    response TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (person_id, key)
);
-- Server-wide secrets shared by every server on the database (the check-in code key).
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    ),
    (
        5,
        r#"
-- An argon2id PHC string; NULL until the person sets a password.
ALTER TABLE people ADD COLUMN password_hash TEXT;
-- Browser sessions by the SHA-256 of their cookie; the CSRF token rides in each form.
CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    person_id TEXT NOT NULL REFERENCES people(id),
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_person ON sessions (person_id);
-- One live one-time sign-in code per person.
CREATE TABLE sign_in_codes (
    person_id TEXT PRIMARY KEY REFERENCES people(id),
    code_sha256 TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
-- Failed sign-ins by subject (`person:ID`, `ip:ADDR`), counted over a window.
CREATE TABLE sign_in_failures (
    subject TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX sign_in_failures_subject ON sign_in_failures (subject, at);
-- Uploaded files by content hash: the same photo twice is stored once.
CREATE TABLE attachments (
    sha256 TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    content BLOB NOT NULL,
    uploaded_by TEXT NOT NULL,
    at BIGINT NOT NULL
);
"#,
    ),
    (
        6,
        r#"
-- Lists of a workflow's instances by time (Open311) and of what a person started.
CREATE INDEX instances_workflow_created ON instances (workflow_id, created_at);
CREATE INDEX instances_created_by ON instances (created_by, created_at);
"#,
    ),
    (
        7,
        r#"
-- The unit over which an escalated task's escalation role may act (the street's command
-- centre for a department's task); NULL: the task's own unit.
ALTER TABLE tasks ADD COLUMN escalated_path TEXT;
CREATE INDEX tasks_open_escalated ON tasks (status, escalated_path);
-- Working-day tables a unit uploaded, one per year; the calendar at a unit layers its own
-- and its ancestors' tables.
CREATE TABLE calendars (
    unit_id TEXT NOT NULL REFERENCES units(id),
    year BIGINT NOT NULL,
    table_json TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (unit_id, year)
);
-- Register attributes a workflow wrote for a person (a hardship exemption's end), kept apart
-- from the imported columns so a new import does not erase them; the instance that wrote
-- each value, whose event log holds the change, is kept with it.
CREATE TABLE person_register (
    person_id TEXT NOT NULL REFERENCES people(id),
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (person_id, name)
);
"#,
    ),
    (
        8,
        r#"
-- The locality overlays an instance started with, root first (JSON `[{unit, version}]`): it
-- keeps that composition to its end.
ALTER TABLE instances ADD COLUMN overlays TEXT NOT NULL DEFAULT '[]';
-- The file a version was published from, so diagnostics name it.
ALTER TABLE workflows ADD COLUMN file TEXT NOT NULL DEFAULT '';
-- A unit's changes to a shared workflow, one row per immutable version.
CREATE TABLE overlays (
    workflow_id TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    file TEXT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    published_by TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, unit_id, version)
);
-- The version of each unit's overlay that new instances get; a rollback points it back.
CREATE TABLE overlay_live (
    workflow_id TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, unit_id)
);
-- Units kept on an earlier base version by whoever published a newer one that their
-- overlay does not apply to.
CREATE TABLE base_holds (
    workflow_id TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    held_by TEXT NOT NULL,
    held_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, unit_id)
);
-- Every publication, rollback and hold, in order; its length is the stamp every server
-- polls to pick up what another server or the CLI changed.
CREATE TABLE registry_log (
    workflow_id TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    action TEXT NOT NULL,
    version BIGINT NOT NULL,
    by_person TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX registry_log_workflow ON registry_log (workflow_id, at);
-- A schedule fires per region: the whole organisation ('') and each unit whose overlays
-- give it its own version of the workflow; `cron` is the cron and zone it was armed with.
CREATE TABLE schedule_runs (
    workflow_id TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    region TEXT NOT NULL,
    cron TEXT NOT NULL,
    next_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, schedule_id, region)
);
CREATE INDEX schedule_runs_due ON schedule_runs (next_at);
INSERT INTO schedule_runs (workflow_id, schedule_id, region, cron, next_at)
    SELECT workflow_id, schedule_id, '', '', next_at FROM schedules;
DROP TABLE schedules;
"#,
    ),
    (
        9,
        r#"
-- A workflow's notification, resolved to people when it fired. `next_attempt_at` is set
-- while it waits for the outbound channel (webhook) and cleared once delivered or given up.
CREATE TABLE notices (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances(id),
    template TEXT NOT NULL,
    text TEXT NOT NULL,
    at BIGINT NOT NULL,
    next_attempt_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    delivered_at BIGINT
);
CREATE INDEX notices_outbox ON notices (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE TABLE inbox (
    person_id TEXT NOT NULL REFERENCES people(id),
    notice_id TEXT NOT NULL REFERENCES notices(id),
    at BIGINT NOT NULL,
    read_at BIGINT,
    PRIMARY KEY (person_id, notice_id)
);
CREATE INDEX inbox_person ON inbox (person_id, at);
-- The unread count every page shows costs what is unread, not the whole inbox.
CREATE INDEX inbox_unread ON inbox (person_id) WHERE read_at IS NULL;
CREATE INDEX inbox_notice ON inbox (notice_id);
-- Who holds a role at a unit: notifications to a unit's secretary, roles by unit.
CREATE INDEX person_roles_unit ON person_roles (unit_id, role);
-- What a person did (已办): their actions, newest first.
CREATE INDEX events_actor ON events (actor, at);
-- An instance's short number within its workflow and year: 事件 2026-000123.
ALTER TABLE instances ADD COLUMN number BIGINT;
CREATE TABLE counters (
    key TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);
"#,
    ),
    (
        10,
        r#"
-- A subtree is a byte range of materialised paths ([path, path-with-'0'-for-the-last-'/')).
-- PostgreSQL compares text by the database's collation, which need not be byte order, so
-- path columns compare as bytes there; SQLite's default (BINARY) already does.
--postgres ALTER TABLE units ALTER COLUMN path TYPE TEXT COLLATE "C";
--postgres ALTER TABLE instances ALTER COLUMN unit_path TYPE TEXT COLLATE "C";
--postgres ALTER TABLE tasks ALTER COLUMN unit_path TYPE TEXT COLLATE "C";
--postgres ALTER TABLE tasks ALTER COLUMN escalated_path TYPE TEXT COLLATE "C";
-- An escalated task always names the unit its escalation role acts over.
UPDATE tasks SET escalated_path = unit_path WHERE escalated_to IS NOT NULL AND escalated_path IS NULL;
-- One index per branch of a person's scope (see scope.rs): role over a subtree (and the
-- units above a grant, for tasks open to holders below), their own, claimed, escalated.
DROP INDEX tasks_open;
DROP INDEX tasks_open_below;
DROP INDEX tasks_open_escalated;
CREATE INDEX tasks_open_role ON tasks (status, role, unit_path);
CREATE INDEX tasks_open_person ON tasks (status, person_id);
CREATE INDEX tasks_open_claimed ON tasks (status, claimed_by);
CREATE INDEX tasks_open_escalated ON tasks (status, escalated_to, escalated_path);
"#,
    ),
    (
        11,
        r#"
-- A task list reads only open tasks, and for a page only its ids and sort keys: every index
-- of a scope branch holds open tasks alone (partial), and holds what the list sorts, filters
-- and counts by (due time, id, workflow, unit), so a page or a count reads one index range
-- per branch and then the page's rows, whatever else the person's answer or the city holds.
ALTER TABLE tasks ADD COLUMN workflow_id TEXT;
UPDATE tasks SET workflow_id = (SELECT i.workflow_id FROM instances i WHERE i.id = tasks.instance_id);
DROP INDEX tasks_open_role;
DROP INDEX tasks_open_person;
DROP INDEX tasks_open_claimed;
DROP INDEX tasks_open_escalated;
-- (A partial index's own conditions are columns too: SQLite reads them from the index
-- where it does not drop them as implied, as after a range on unit_path.)
CREATE INDEX tasks_open_role ON tasks (role, unit_path, below, due_at, id, workflow_id, unit_id, person_id, claimed_by, status)
    WHERE status = 'open' AND person_id IS NULL AND claimed_by IS NULL;
CREATE INDEX tasks_open_person ON tasks (person_id, due_at, id, workflow_id, unit_id) WHERE status = 'open';
CREATE INDEX tasks_open_claimed ON tasks (claimed_by, due_at, id, workflow_id, unit_id, person_id)
    WHERE status = 'open' AND person_id IS NULL;
CREATE INDEX tasks_open_escalated ON tasks (escalated_to, escalated_path, due_at, id, workflow_id, unit_id)
    WHERE status = 'open';
"#,
    ),
    (
        12,
        r#"
-- Each index of a task-list branch in the list's order: after the branch's equalities comes
-- the due key (no deadline last) and the id, so the branches of a page are merged in order
-- and the page stops at its last row instead of sorting a big unit's whole list. (The raw
-- due_at comes last too: SQLite reads the key's column from the index, not the table.)
DROP INDEX tasks_open_role;
DROP INDEX tasks_open_person;
DROP INDEX tasks_open_claimed;
DROP INDEX tasks_open_escalated;
CREATE INDEX tasks_open_role ON tasks (role, unit_path, (COALESCE(due_at, 9223372036854775807)), id, workflow_id, unit_id, below, person_id, claimed_by, status, due_at)
    WHERE status = 'open' AND person_id IS NULL AND claimed_by IS NULL;
CREATE INDEX tasks_open_person ON tasks (person_id, (COALESCE(due_at, 9223372036854775807)), id, workflow_id, unit_id, status, due_at)
    WHERE status = 'open';
CREATE INDEX tasks_open_claimed ON tasks (claimed_by, (COALESCE(due_at, 9223372036854775807)), id, workflow_id, unit_id, person_id, status, due_at)
    WHERE status = 'open' AND person_id IS NULL;
CREATE INDEX tasks_open_escalated ON tasks (escalated_to, escalated_path, (COALESCE(due_at, 9223372036854775807)), id, workflow_id, unit_id, status, due_at)
    WHERE status = 'open';
"#,
    ),
    (
        13,
        r#"
-- Sign-in attempts as one counter per subject over a window opened by its first attempt:
-- taking an attempt is one upsert that refuses at the cap, so simultaneous tries cannot
-- all be counted before any is recorded (they were, as rows read and then inserted).
DROP TABLE sign_in_failures;
CREATE TABLE sign_in_attempts (
    subject TEXT PRIMARY KEY,
    since BIGINT NOT NULL,
    attempts BIGINT NOT NULL
);
-- Everyone who uploaded a file (the same bytes are stored once, but each uploader may read
-- them back); others read a file only through an instance that refers to it.
CREATE TABLE attachment_uploaders (
    sha256 TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (sha256, person_id)
);
INSERT INTO attachment_uploaders (sha256, person_id) SELECT sha256, uploaded_by FROM attachments;
-- Starts a locality's rule refused: there is no instance to note them on, and the unit's
-- admins must still learn that their plugin turned a resident's report away.
CREATE TABLE refused_starts (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    workflow_id TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    unit_path TEXT NOT NULL,
    person_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    plugin TEXT,
    error TEXT NOT NULL
);
CREATE INDEX refused_starts_unit ON refused_starts (unit_path, at);
-- Answers of Idempotency-Keys are kept for a week (see idempotency.rs), dropped by age.
CREATE INDEX idempotency_keys_at ON idempotency_keys (at);
"#,
    ),
    (
        14,
        r#"
-- The audit page reads the log newest first across instances (then narrows by unit and
-- workflow through the instance, or by person on events_actor).
CREATE INDEX events_at ON events (at, instance_id, seq);
-- What admins changed (admin_log.rs), at the unit concerned ('/' for the whole organisation).
CREATE TABLE admin_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    unit_path TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX admin_log_unit ON admin_log (unit_path, at);
-- The dashboards' figures (dashboard.rs): one workflow's instances in a subtree read in
-- path order with what is counted, without touching the table.
CREATE INDEX instances_figures ON instances (workflow_id, unit_path, created_at, status, updated_at, id);
-- Whether an instance had a task finished after its limit, read from the index alone.
CREATE INDEX tasks_lateness ON tasks (instance_id, due_at, completed_at);
CREATE INDEX admin_log_actor ON admin_log (actor, at);
"#,
    ),
];
