//! Writing a step. A step becomes a list of [`Write`]s, each SQL text written once here. On
//! PostgreSQL they run one by one, each checked for the rows it must change. On SQLite they
//! are sent as one multi-statement round trip (the driver binds `$N` by number across
//! statements), because with sqlx each round trip costs far more than SQLite's own work.

use crate::db::millis;
use crate::error::{Result, StoreError};
use crate::events::{GENESIS, chain};
use crate::queries::StoredInstance;
use chrono::{DateTime, Utc};
use civicflow_engine::EngineError;
use civicflow_engine::machine::Step;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{AnyConnection, Row};

use crate::runtime::Applied;

/// One bound argument.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
    MaybeInt(Option<i64>),
}

/// What a statement must have changed, and the error to give if it did not.
#[derive(Debug, Clone)]
enum Expect {
    Rows(u64, fn(&str) -> StoreError, String),
    Any,
}

#[derive(Debug, Clone)]
pub(crate) struct Write {
    sql: String,
    args: Vec<Arg>,
    expect: Expect,
}

impl Write {
    pub(crate) fn new(sql: &str, args: Vec<Arg>) -> Self {
        Self {
            sql: sql.to_string(),
            args,
            expect: Expect::Any,
        }
    }

    fn exactly(mut self, rows: u64, error: fn(&str) -> StoreError, subject: &str) -> Self {
        self.expect = Expect::Rows(rows, error, subject.to_string());
        self
    }
}

pub(crate) fn bind<'q>(
    mut q: Query<'q, sqlx::Any, AnyArguments<'q>>,
    args: &'q [Arg],
) -> Query<'q, sqlx::Any, AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v.as_str()),
            Arg::MaybeText(v) => q.bind(v.as_deref()),
            Arg::Int(v) => q.bind(*v),
            Arg::MaybeInt(v) => q.bind(*v),
        };
    }
    q
}

fn unknown_person(subject: &str) -> StoreError {
    EngineError::Evaluation(format!("{subject}: no such person")).into()
}

fn conflict(subject: &str) -> StoreError {
    EngineError::Conflict(format!("{subject} was changed by someone else; reload and try again")).into()
}

fn unknown_unit(subject: &str) -> StoreError {
    EngineError::Evaluation(format!("{subject} is assigned to a unit that does not exist")).into()
}

/// Run each write on its own, checking each one's row count.
pub(crate) async fn execute_each(conn: &mut AnyConnection, writes: &[Write]) -> Result<()> {
    for w in writes {
        let done = bind(sqlx::query(&w.sql), &w.args).execute(&mut *conn).await?;
        if let Expect::Rows(rows, error, subject) = &w.expect
            && done.rows_affected() != *rows
        {
            return Err(error(subject));
        }
    }
    Ok(())
}

/// The SQLite fast path: every write in one round trip. Each checked write is followed by
/// `SELECT changes()`, which SQLite answers with the rows that write changed, so each one is
/// still checked exactly and fails with its own error.
pub(crate) async fn execute_combined(conn: &mut AnyConnection, writes: &[Write]) -> Result<()> {
    let mut sql = String::new();
    let mut args = Vec::new();
    for w in writes {
        sql.push_str(&renumber(&w.sql, args.len()));
        sql.push_str(";\n");
        args.extend(w.args.iter().cloned());
        if matches!(w.expect, Expect::Rows(..)) {
            sql.push_str("SELECT changes();\n");
        }
    }
    let counts = bind(sqlx::query(&sql), &args).fetch_all(&mut *conn).await?;
    let checked = writes.iter().filter_map(|w| match &w.expect {
        Expect::Rows(n, error, subject) => Some((*n, error, subject)),
        Expect::Any => None,
    });
    for ((rows, error, subject), count) in checked.zip(&counts) {
        if count.try_get::<i64, _>(0)? as u64 != rows {
            return Err(error(subject));
        }
    }
    Ok(())
}

/// `$1` → `$(1 + offset)`, so statements can share one argument list.
fn renumber(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '$' {
            let start = i + 1;
            let mut end = start;
            while let Some((j, d)) = chars.peek() {
                if d.is_ascii_digit() {
                    end = j + 1;
                    chars.next();
                } else {
                    break;
                }
            }
            if end > start {
                let n: usize = sql[start..end].parse().expect("digits");
                out.push_str(&format!("${}", n + offset));
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The writes that store one step, its notices resolved to people, and what the caller gets
/// back. Reads (who holds a role) on `conn`, the step's own transaction.
pub(crate) async fn plan_addressed(
    conn: &mut AnyConnection,
    mut s: Step,
    prior: Option<&StoredInstance>,
    now: DateTime<Utc>,
) -> Result<(Vec<Write>, Applied)> {
    let notices = crate::notices::address(conn, &mut s, now).await?;
    let (mut writes, applied) = plan(s, prior, now)?;
    writes.extend(notices);
    Ok((writes, applied))
}

/// Give a new instance the next number of its workflow in the current year (China time).
/// The upsert holds the counter's row until the transaction ends, so two servers never give
/// one number twice and a rolled-back start gives its number back; it is the step's last
/// statement because every start of the workflow, city-wide, waits for that row: taken
/// first, it held them all for the whole step (on PostgreSQL the 16-client report p99).
pub(crate) async fn number(conn: &mut AnyConnection, applied: &mut Applied, now: DateTime<Utc>) -> Result<()> {
    use chrono::Datelike;
    let year = now.with_timezone(&civicflow_engine::time::DEFAULT_TIME_ZONE).year();
    let key = format!("{}/{year}", applied.instance.workflow);
    let n: i64 = sqlx::query_scalar(
        "INSERT INTO counters (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = counters.n + 1 RETURNING n",
    )
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE instances SET number = $2 WHERE id = $1")
        .bind(&applied.instance.id)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    applied.instance.number = Some(n);
    applied.unnumbered = false;
    Ok(())
}

/// The writes that store one step, and what the caller gets back.
fn plan(s: Step, prior: Option<&StoredInstance>, now: DateTime<Utc>) -> Result<(Vec<Write>, Applied)> {
    use Arg::*;
    let at = millis(now);
    let mut instance = s.instance;
    let (seq, hash) = match prior {
        Some(p) => (p.last_seq, p.last_hash.clone()),
        None => (0, GENESIS.to_string()),
    };
    let (chained, last_seq, last_hash) = chain(&instance.id, seq, hash, at, &s.events)?;
    let position = serde_json::to_string(&instance.position)?;
    let data = serde_json::to_string(&instance.data)?;
    let id = instance.id.clone();
    let mut w = Vec::with_capacity(8);
    match prior {
        None => {
            instance.rev = 1;
            w.push(Write::new(
                "INSERT INTO instances (id, workflow_id, workflow_version, unit_id, unit_path, status, position, data, rev, created_by, created_at, updated_at, last_seq, last_hash, overlays, number) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $10, $11, $12, $13, $14)",
                vec![Text(id.clone()), Text(instance.workflow.clone()), Int(i64::from(instance.workflow_version)), Text(instance.unit_id.clone()), Text(instance.unit_path.clone()), Text(instance.status.as_str().into()), Text(position), Text(data), Text(instance.created_by.clone()), Int(at), Int(last_seq), Text(last_hash), Text(serde_json::to_string(&instance.overlays)?), MaybeInt(instance.number)],
            ).exactly(1, conflict, &format!("instance {id}")));
        }
        Some(p) => {
            w.push(Write::new(
                "UPDATE instances SET status = $3, position = $4, data = $5, rev = rev + 1, updated_at = $6, last_seq = $7, last_hash = $8 WHERE id = $1 AND rev = $2",
                vec![Text(id.clone()), Int(p.instance.rev), Text(instance.status.as_str().into()), Text(position), Text(data), Int(at), Int(last_seq), Text(last_hash)],
            ).exactly(1, conflict, &format!("instance {id}")));
            instance.rev = p.instance.rev + 1;
        }
    }
    if !s.events.is_empty() {
        let mut sql =
            String::from("INSERT INTO events (instance_id, seq, at, actor, kind, payload, prev_hash, hash) VALUES ");
        let mut args = Vec::with_capacity(s.events.len() * 8);
        for (i, (e, c)) in s.events.iter().zip(chained).enumerate() {
            let b = i * 8;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8
            ));
            args.extend([
                Text(id.clone()),
                Int(c.seq),
                Int(at),
                Text(e.actor.clone()),
                Text(e.event.kind().into()),
                Text(c.payload),
                Text(c.prev_hash),
                Text(c.hash),
            ]);
        }
        let n = s.events.len() as u64;
        w.push(
            Write {
                sql,
                args,
                expect: Expect::Any,
            }
            .exactly(n, conflict, &format!("the event log of instance {id}")),
        );
    }
    let actor = s.events.first().map(|e| e.actor.clone()).unwrap_or_default();
    if let Some(task) = &s.task_completed {
        w.push(Write::new("UPDATE tasks SET status = 'completed', completed_at = $2, completed_by = $3 WHERE id = $1 AND status = 'open'", vec![Text(task.clone()), Int(at), Text(actor.clone())]).exactly(1, conflict, &format!("task {task}")));
    }
    if let Some(task) = &s.task_claimed {
        w.push(
            Write::new(
                "UPDATE tasks SET claimed_by = $2 WHERE id = $1 AND status = 'open' AND claimed_by IS NULL",
                vec![Text(task.clone()), Text(actor)],
            )
            .exactly(1, conflict, &format!("task {task}")),
        );
    }
    for left in &s.states_left {
        if left.cancel_tasks {
            w.push(Write::new("UPDATE tasks SET status = 'cancelled', completed_at = $3 WHERE instance_id = $1 AND state = $2 AND status = 'open'", vec![Text(id.clone()), Text(left.state.clone()), Int(at)]));
        }
        if left.drop_timers {
            w.push(Write::new(
                "DELETE FROM timers WHERE instance_id = $1 AND state = $2",
                vec![Text(id.clone()), Text(left.state.clone())],
            ));
        }
    }
    for e in &s.escalations {
        w.push(Write::new(
            "UPDATE tasks SET escalated_to = $3, escalated_path = COALESCE($4, unit_path) WHERE instance_id = $1 AND state = $2 AND status = 'open'",
            vec![Text(id.clone()), Text(e.state.clone()), Text(e.role.clone()), MaybeText(e.unit_path.clone())],
        ));
    }
    for t in &s.tasks_created {
        w.push(Write::new(
            "INSERT INTO tasks (id, instance_id, state, form, role, person_id, unit_id, unit_path, pool, claimed_by, escalated_to, escalated_path, status, due_at, created_at, below, workflow_id) SELECT $1, $2, $3, $4, $5, $6, u.id, u.path, $8, NULL, NULL, NULL, 'open', $9, $10, $11, $12 FROM units u WHERE u.id = $7",
            vec![Text(t.id.clone()), Text(t.instance_id.clone()), Text(t.state.clone()), MaybeText(t.form.clone()), MaybeText(t.role.clone()), MaybeText(t.person.clone()), Text(t.unit_id.clone()), Int(i64::from(t.pool)), MaybeInt(t.due_at.map(millis)), Int(millis(t.created_at)), Int(i64::from(t.below)), Text(instance.workflow.clone())],
        ).exactly(1, unknown_unit, &format!("task \"{}\" (unit \"{}\")", t.state, t.unit_id)));
    }
    for r in &s.register {
        for (name, value) in &r.attributes {
            w.push(
                Write::new(
                    "INSERT INTO person_register (person_id, name, value, instance_id, at) SELECT p.id, $2, $3, $4, $5 FROM people p WHERE p.id = $1 \
                     ON CONFLICT (person_id, name) DO UPDATE SET value = excluded.value, instance_id = excluded.instance_id, at = excluded.at",
                    vec![Text(r.person.clone()), Text(name.clone()), Text(value.to_string()), Text(id.clone()), Int(at)],
                )
                .exactly(1, unknown_person, &format!("register of \"{}\"", r.person)),
            );
        }
    }
    for c in &s.credits {
        w.push(Write::new(
            "INSERT INTO ledger (person_id, account, amount_milli, instance_id, at) VALUES ($1, $2, $3, $4, $5)",
            vec![
                Text(c.person.clone()),
                Text(c.account.clone()),
                Int((c.amount * 1000.0).round() as i64),
                Text(id.clone()),
                Int(at),
            ],
        ));
    }
    for t in &s.timers_created {
        w.push(
            Write::new(
                "INSERT INTO timers (id, instance_id, state, kind, fire_at, attempts) VALUES ($1, $2, $3, $4, $5, 0)",
                vec![
                    Text(t.id.clone()),
                    Text(t.instance_id.clone()),
                    Text(t.state.clone()),
                    Text(serde_json::to_string(&t.kind)?),
                    Int(millis(t.fire_at)),
                ],
            )
            .exactly(1, conflict, &format!("timer {}", t.id)),
        );
    }
    Ok((
        w,
        Applied {
            instance,
            new_tasks: s.tasks_created,
            unnumbered: prior.is_none(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::renumber;

    #[test]
    fn renumbers_placeholders_only() {
        assert_eq!(
            renumber("a = $1 AND b = $12 AND c = '$x'", 3),
            "a = $4 AND b = $15 AND c = '$x'"
        );
        assert_eq!(renumber("x = $1", 0), "x = $1");
    }
}
