use chrono::{DateTime, TimeZone, Utc};
use civicflow_engine::ManualClock;
use civicflow_engine::machine::ExpressionRules;
use civicflow_engine::validate::load;
use civicflow_store::org::{Numbered, PersonRow, UnitRow};
use civicflow_store::{Runtime, Store};
use std::sync::Arc;

pub const REVIEW: &str = r#"
id: review
version: 1
title: {zh-CN: 审核, en: Review}
roles:
  clerk: {title: {zh-CN: 办事员}}
  manager: {title: {zh-CN: 负责人}}
start: {roles: [clerk], form: request, to: check}
forms:
  request:
    schema: {type: object, required: [amount], properties: {amount: {type: number, minimum: 0}}}
  decision:
    schema: {type: object, required: [approve], properties: {approve: {type: boolean}}}
states:
  check:
    type: auto
    transitions:
      - {to: manager_review, when: "data.amount > 1000"}
      - {to: clerk_review}
  clerk_review:
    type: task
    form: decision
    assign: {role: clerk}
    escalate: [{after: 1d, to: manager}]
    transitions:
      - {to: done, when: "form.approve"}
      - {to: rejected}
    timers:
      - {after: 2d, to: expired}
  manager_review:
    type: task
    form: decision
    assign: {role: manager}
    transitions:
      - {to: done, when: "form.approve", set: {approved_by: "actor.id"}}
      - {to: rejected}
  done: {type: end}
  rejected: {type: end}
  expired: {type: end}
"#;

pub const PARALLEL: &str = r#"
id: parallel
version: 1
title: {zh-CN: 并行}
roles:
  clerk: {title: {zh-CN: 办事员}}
start: {roles: [clerk], to: fork}
states:
  fork:
    type: auto
    transitions: [{to: [left, right]}]
  left:
    type: task
    assign: {role: clerk}
    transitions: [{to: both}]
  right:
    type: wait
    timers: [{after: 1h, to: both}]
  both:
    type: join
    from: [left, right]
    transitions: [{to: done}]
  done: {type: end}
"#;

pub const MONTHLY: &str = r#"
id: monthly
version: 1
title: {zh-CN: 每月事项}
roles:
  clerk: {title: {zh-CN: 办事员}}
start: {roles: [clerk], to: pay}
schedules:
  - id: items
    cron: "0 9 1 * *"
    for_each_role: clerk
    data: {member: "person.id", period: "scheduled_at[:7]"}
states:
  pay:
    type: task
    assign: {person: "data.member"}
    transitions: [{to: paid}]
  paid: {type: end}
"#;

pub const POOL: &str = r#"
id: pool
version: 1
title: {zh-CN: 认领}
roles:
  clerk: {title: {zh-CN: 办事员}}
start: {roles: [clerk], to: wish}
states:
  wish:
    type: task
    assign: {role: clerk, pool: true}
    transitions: [{to: done}]
  done: {type: end}
"#;

pub const ROUTE: &str = r#"
id: route
version: 1
title: {zh-CN: 转办}
roles:
  clerk: {title: {zh-CN: 办事员}}
start: {roles: [clerk], to: route}
forms:
  route:
    schema: {type: object, required: [unit], properties: {unit: {type: string}}}
states:
  route:
    type: task
    form: route
    assign: {role: clerk}
    transitions: [{to: handle}]
  handle:
    type: task
    assign: {role: clerk, unit: "data.route.unit"}
    transitions: [{to: done}]
  done: {type: end}
"#;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap()
}

/// One database to run a test on.
pub struct Db {
    pub label: &'static str,
    pub url: String,
    pub schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub async fn store(&self) -> Store {
        Store::connect(&self.url, self.schema.as_deref())
            .await
            .unwrap_or_else(|e| panic!("{}: cannot connect to {}: {e}", self.label, self.url))
    }

    /// A second raw connection, for tests that tamper with stored rows.
    pub async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let schema = self.schema.clone();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    if let Some(s) = schema {
                        sqlx::Executor::execute(conn, format!("SET search_path TO {s}").as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect(&self.url)
            .await
            .expect("raw connection")
    }
}

/// SQLite always; PostgreSQL when `CIVICFLOW_TEST_PG` is set (and then it must work).
pub fn databases() -> Vec<Db> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut out = vec![Db {
        label: "sqlite",
        url: format!("sqlite://{}", dir.path().join("t.db").display()),
        schema: None,
        _dir: Some(dir),
    }];
    if let Ok(url) = std::env::var("CIVICFLOW_TEST_PG") {
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        out.push(Db {
            label: "postgres",
            url,
            schema: Some(schema),
            _dir: None,
        });
    }
    out
}

pub fn postgres() -> Option<Db> {
    databases().into_iter().find(|d| d.label == "postgres")
}

pub fn unit(id: &str, parent: Option<&str>, kind: &str) -> Numbered<UnitRow> {
    Numbered {
        file: "units.csv".into(),
        line: 0,
        row: UnitRow {
            id: id.into(),
            parent: parent.map(Into::into),
            kind: kind.into(),
            name: id.into(),
            name_en: None,
        },
    }
}

pub fn person(id: &str, unit: &str, roles: &[&str]) -> Numbered<PersonRow> {
    Numbered {
        file: "people.csv".into(),
        line: 0,
        row: PersonRow {
            id: id.into(),
            name: id.into(),
            unit: unit.into(),
            roles: roles.iter().map(|r| (r.to_string(), None)).collect(),
            phone: None,
            locale: None,
            attributes: Default::default(),
        },
    }
}

/// city → district → communities a and b; a clerk in each community, a manager at the district.
pub async fn seed(store: &Store) {
    let units = vec![
        unit("city", None, "city"),
        unit("d", Some("city"), "district"),
        unit("a", Some("d"), "community"),
        unit("b", Some("d"), "community"),
    ];
    let people = vec![
        person("clerk_a", "a", &["clerk"]),
        person("clerk_a2", "a", &["clerk"]),
        person("clerk_b", "b", &["clerk"]),
        person("boss", "d", &["manager"]),
    ];
    store.import_org(&units, &people, &|_| {}).await.expect("seed org");
}

pub async fn runtime(store: Store, clock: Arc<ManualClock>) -> Runtime {
    let rt = Runtime::new(store, clock, Arc::new(ExpressionRules))
        .await
        .expect("runtime");
    for src in [REVIEW, PARALLEL, MONTHLY, POOL, ROUTE] {
        let wf = load("fixture.yaml", src).workflow.expect("fixture workflow is valid");
        rt.publish(wf).await.expect("publish");
    }
    rt
}

/// A seeded store and runtime at `t0()`.
pub async fn setup(db: &Db) -> (Runtime, Arc<ManualClock>) {
    let store = db.store().await;
    seed(&store).await;
    let clock = Arc::new(ManualClock::new(t0()));
    (runtime(store, clock.clone()).await, clock)
}

pub async fn open_task(rt: &Runtime, instance: &str) -> String {
    let tasks = rt.store.instance_tasks(instance).await.expect("tasks");
    tasks
        .into_iter()
        .find(|t| t.status == civicflow_engine::TaskStatus::Open)
        .expect("an open task")
        .task
        .id
}

/// Every open task `person` may act on, read page by page (3 at a time, so the cursor is
/// walked too).
pub async fn tasks_of(rt: &Runtime, person: &str) -> Vec<civicflow_store::TaskView> {
    let scope = rt.scope(&rt.store.actor(person).await.unwrap());
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let query = civicflow_store::TaskQuery {
            workflow: None,
            unit: None,
            after,
            limit: 3,
        };
        let page = rt.store.tasks_page(&scope, &query).await.unwrap();
        out.extend(page.tasks);
        match page.next {
            Some(c) => after = Some(c),
            None => return out,
        }
    }
}
