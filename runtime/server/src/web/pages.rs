//! The pages: my tasks and open to claim, a task's generated form, starting an instance,
//! what I started, and an instance with its timeline in plain words.

use super::forms::{self, Posted};
use super::session::Viewer;
use super::timeline;
use super::views::{
    self, Frame, InstanceList, InstancePage, InstanceRow, OpenTask, StartList, Startable, TaskFilter, TaskList, TaskRow,
};
use super::{Page, error_page, render, see_other};
use crate::AppState;
use crate::error::AppError;
use crate::i18n::text;
use crate::uploads;
use crate::work_api::visible;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use civicflow_engine::definition::localize;
use civicflow_engine::{EngineError, Instance, TaskStatus, Workflow};
use civicflow_store::idempotency::Once;
use civicflow_store::{Applied, Cursor, Op, StoreError, TaskQuery, TaskView};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub(super) type Names = HashMap<String, (String, Option<String>)>;

pub(super) fn name_of(names: &Names, id: &str, lang: &str) -> String {
    match names.get(id) {
        Some((_, Some(en))) if lang == "en" && !en.is_empty() => en.clone(),
        Some((name, _)) => name.clone(),
        None => id.to_string(),
    }
}

pub(super) fn state_title(wf: &Workflow, state: &str, lang: &str) -> String {
    wf.def
        .states
        .get(state)
        .and_then(|s| s.title.as_ref())
        .map(|t| localize(t, lang).to_string())
        .unwrap_or_else(|| state.to_string())
}

pub(super) fn role_title(wf: &Workflow, role: &str, lang: &str) -> String {
    wf.def
        .roles
        .get(role)
        .map(|r| localize(&r.title, lang).to_string())
        .unwrap_or_else(|| role.to_string())
}

/// "2 days", "3 hours", "15 minutes": the largest unit that is at least one.
/// Minutes as people say them, in the largest unit that fits; `up` rounds up (time left:
/// a 3-day limit just started has 3 days left, not 2), else down (time overdue).
pub(super) fn span_text(lang: &str, minutes: i64, up: bool) -> String {
    let div = |unit: i64| {
        if up {
            (minutes + unit - 1) / unit
        } else {
            minutes / unit
        }
    };
    let (id, n) = if minutes >= 24 * 60 {
        ("duration-days", div(24 * 60))
    } else if minutes >= 60 {
        ("duration-hours", div(60))
    } else {
        ("duration-minutes", minutes.max(1))
    };
    text(lang, id, &[("n", n.into())])
}

/// A duration as people say it: `5wd` is "5 个工作日", `P1Y6M` "1 年 6 个月".
pub(super) fn span_words(written: &str, lang: &str) -> Option<String> {
    let s = civicflow_engine::duration::Span::parse(written).ok()?;
    let (years, months) = (s.months / 12, s.months % 12);
    let parts = [
        ("span-years", u64::from(years)),
        ("span-months", u64::from(months)),
        ("span-days", u64::from(s.days)),
        ("span-working-days", u64::from(s.working_days)),
        ("span-hours", s.seconds / 3600),
        ("span-minutes", s.seconds % 3600 / 60),
    ];
    let words: Vec<String> = parts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(id, n)| text(lang, id, &[("n", n.into())]))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

fn due_text(lang: &str, due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> (String, bool) {
    match due {
        None => (text(lang, "task-no-due", &[]), false),
        Some(d) if d < now => (
            text(
                lang,
                "task-overdue",
                &[("time", span_text(lang, (now - d).num_minutes(), false).into())],
            ),
            true,
        ),
        Some(d) => (
            text(
                lang,
                "task-due-in",
                &[("time", span_text(lang, (d - now).num_minutes(), true).into())],
            ),
            false,
        ),
    }
}

#[derive(Deserialize, Default)]
pub struct ListFilter {
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    done: Option<String>,
    /// Where the previous page ended (the "more" link).
    #[serde(default)]
    after: Option<String>,
}

/// Rows per page of the HTML lists.
pub(crate) const PAGE_ROWS: usize = 50;

pub async fn task_list(State(state): State<AppState>, viewer: Viewer, Query(filter): Query<ListFilter>) -> Response {
    let lang = viewer.lang;
    let store = &state.runtime.store;
    let scope = state.runtime.scope(&viewer.actor);
    let chosen = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let (workflow, unit) = (chosen(&filter.workflow), chosen(&filter.unit));
    let query = TaskQuery {
        workflow: workflow.as_deref(),
        unit: unit.as_deref(),
        after: filter.after.as_deref().and_then(Cursor::parse),
        limit: PAGE_ROWS,
    };
    let (page, counts) = match tokio::try_join!(store.tasks_page(&scope, &query), store.task_counts(&scope)) {
        Ok(found) => found,
        Err(e) => return error_page(e, lang),
    };
    let all = &page.tasks;
    let mut units: Vec<&str> = all.iter().map(|t| t.task.unit_id.as_str()).collect();
    units.extend(counts.iter().map(|(_, u, _)| u.as_str()));
    let claimers: Vec<&str> = all.iter().filter_map(|t| t.task.claimed_by.as_deref()).collect();
    let names = match store.names(&units, &claimers).await {
        Ok(n) => n,
        Err(e) => return error_page(e, lang),
    };
    let instance_ids: Vec<&str> = all.iter().map(|t| t.task.instance_id.as_str()).collect();
    // Each task is shown with the workflow its instance runs (its own overlays' states).
    let instances = match store.instances(&instance_ids).await {
        Ok(list) => list,
        Err(e) => return error_page(e, lang),
    };
    let pinned: HashMap<&str, Arc<Workflow>> = instances
        .iter()
        .filter_map(|i| Some((i.id.as_str(), state.runtime.registry.for_instance(i).ok()?)))
        .collect();
    let by_id: HashMap<&str, &Instance> = instances.iter().map(|i| (i.id.as_str(), i)).collect();
    let now = state.runtime.now();
    // The filters offer every workflow and unit the person has work in, not only this page's.
    let workflows: BTreeMap<&str, String> = counts
        .iter()
        .map(|(w, _, _)| {
            let title = state
                .runtime
                .registry
                .latest(w)
                .map(|wf| localize(&wf.def.title, lang).to_string());
            (w.as_str(), title.unwrap_or_else(|| w.clone()))
        })
        .collect();
    let unit_choices: BTreeMap<&str, String> = counts
        .iter()
        .map(|(_, u, _)| (u.as_str(), name_of(&names, u, lang)))
        .collect();
    let total: i64 = counts
        .iter()
        .filter(|(w, u, _)| workflow.as_deref().is_none_or(|x| x == w) && unit.as_deref().is_none_or(|x| x == u))
        .map(|(_, _, n)| n)
        .sum();
    let (mut mine, mut pool) = (Vec::new(), Vec::new());
    for t in all {
        let (Some(wf), Some(instance)) = (
            pinned.get(t.task.instance_id.as_str()),
            by_id.get(t.task.instance_id.as_str()),
        ) else {
            continue;
        };
        // A ballot cast or a sign-up made is done for me, though the state stays open for
        // others: it is under 已办, not 待办.
        if my_entry(wf, &t.task.state, &instance.data, &viewer.actor.person).is_some() {
            continue;
        }
        let wf_title = localize(&wf.def.title, lang).to_string();
        let (due, overdue) = due_text(lang, t.task.due_at, now);
        let open_to_claim = t.task.pool && t.task.claimed_by.is_none();
        let item = TaskRow {
            id: t.task.id.clone(),
            instance: t.task.instance_id.clone(),
            title: state_title(wf, &t.task.state, lang),
            number: number_text(wf, instance, lang),
            brief: brief(wf, &instance.data, lang),
            workflow: wf_title,
            unit: name_of(&names, &t.task.unit_id, lang),
            role: t.task.role.as_deref().map(|r| role_title(wf, r, lang)),
            claimed_by: t.task.claimed_by.as_deref().map(|p| name_of(&names, p, lang)),
            due,
            overdue,
            due_at: t.task.due_at,
        };
        if open_to_claim {
            pool.push(item)
        } else {
            mine.push(item)
        }
    }
    // The store sorts by due time, so overdue tasks (the earliest due) already come first.
    let more = page.next.map(|c| {
        let after = c.to_string();
        more_link(
            "/tasks",
            &[
                ("workflow", workflow.as_deref()),
                ("unit", unit.as_deref()),
                ("after", Some(&after)),
            ],
        )
    });
    let list = TaskList {
        mine,
        pool,
        workflows,
        units: unit_choices,
        total,
        more,
        filter: TaskFilter {
            workflow: filter.workflow,
            unit: filter.unit,
        },
    };
    let frame = Frame {
        notice: filter.done.map(|_| text(lang, "task-done", &[])),
        ..viewer.frame("tasks")
    };
    render(StatusCode::OK, lang, frame, &list)
}

/// The link to a list's next page: its path with the filters in force and where to go on.
pub(super) fn more_link(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(v) = value {
            query.append_pair(name, v);
        }
    }
    format!("{path}?{}", query.finish())
}

/// The open task `id` if the viewer may see its instance, with its workflow.
async fn find_task(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
) -> Result<(TaskView, Instance, Arc<Workflow>), Response> {
    let store = &state.runtime.store;
    let lang = viewer.lang;
    let instance_id = store.task_instance(id).await.map_err(|e| error_page(e, lang))?;
    let instance = store.instance(&instance_id).await.map_err(|e| error_page(e, lang))?;
    if !visible(state, &viewer.actor, &instance)
        .await
        .map_err(|e| error_page(e, lang))?
    {
        return Err(Page::not_found(lang));
    }
    let wf = state
        .runtime
        .registry
        .for_instance(&instance)
        .map_err(|e| error_page(e, lang))?;
    let tasks = store
        .instance_tasks(&instance_id)
        .await
        .map_err(|e| error_page(e, lang))?;
    let task = tasks
        .into_iter()
        .find(|t| t.task.id == id)
        .ok_or_else(|| Page::not_found(lang))?;
    Ok((task, instance, wf))
}

struct FormPage<'a> {
    wf: &'a Workflow,
    form: Option<&'a str>,
    title: String,
    action: String,
    data: Value,
    errors: BTreeMap<String, String>,
    /// Units to start in (start forms only), with the chosen one.
    units: Vec<(String, String)>,
    unit: String,
    key: String,
    /// The instance, for a task's form (its page, and whose attachments it shows).
    instance: Option<String>,
    /// What the task is about: the start form as filled in (tasks only).
    context: Vec<forms::Field>,
    /// Choices rules gave this task's fields (tasks only).
    choices: BTreeMap<String, Vec<civicflow_engine::definition::Choice>>,
    /// A state that takes a check-in code: the code scanned, if any (`None`: scan first).
    code: Option<Option<String>>,
}

fn form_page(viewer: &Viewer, status: StatusCode, p: FormPage) -> Response {
    let def = p.form.and_then(|f| p.wf.def.forms.get(f));
    let schema = def.map(|d| d.schema.clone()).unwrap_or(json!({}));
    let ui = def.and_then(|d| d.ui.clone()).unwrap_or(Value::Null);
    let (schema, ui) = forms::with_choices(&schema, &ui, &p.choices);
    let mut fields = forms::fields(&schema, &ui, &p.data, "", viewer.lang);
    let summary = forms::attach_errors(&mut fields, &p.errors);
    let page = views::Form {
        title: p.title,
        action: p.action,
        fields,
        summary,
        units: p.units,
        unit: p.unit,
        key: p.key,
        instance: p.instance,
        context: p.context,
        needs_code: p.code.is_some(),
        code: p.code.flatten(),
        max_mb: uploads::MAX_UPLOAD_BYTES >> 20,
    };
    render(status, viewer.lang, viewer.frame(""), &page)
}

/// Read a multipart form post: text parts, `_csrf`, and files, each kept by content hash
/// (a refused file becomes a problem beside its field).
async fn read_post(state: &AppState, viewer: &Viewer, mut multipart: Multipart) -> Result<Posted, Response> {
    let mut posted = Posted::default();
    let lang = viewer.lang;
    let bad = |e: axum::extract::multipart::MultipartError| {
        tracing::info!(error = %e, "unreadable form post");
        Page::refused_body(e.status(), lang)
    };
    let mut csrf = None;
    while let Some(part) = multipart.next_field().await.map_err(bad)? {
        let name = part.name().unwrap_or("").to_string();
        let file_name = part.file_name().map(str::to_string);
        let bytes = part.bytes().await.map_err(bad)?;
        match file_name {
            None if name == "_csrf" => csrf = Some(String::from_utf8_lossy(&bytes).into_owned()),
            None => posted.values.push((name, String::from_utf8_lossy(&bytes).into_owned())),
            Some(_) if bytes.is_empty() => {}
            // Nothing is kept from a post that is not the viewer's own: every form sends its
            // token first, so a forged post is refused before its files are stored.
            Some(file_name) => match viewer.check_csrf(csrf.as_deref()).map(|()| uploads::check(&bytes))? {
                Ok(content_type) => {
                    let reference = state
                        .runtime
                        .store
                        .put_attachment(&bytes, content_type, &viewer.profile.id, state.runtime.now())
                        .await
                        .map_err(|e| error_page(e, lang))?;
                    posted.files.entry(name).or_default().push(reference);
                }
                Err(refused) => {
                    let id = if refused == uploads::Refused::TooLarge {
                        "err-upload-size"
                    } else {
                        "err-upload-type"
                    };
                    let message = text(
                        lang,
                        id,
                        &[
                            ("name", file_name.into()),
                            ("mb", (uploads::MAX_UPLOAD_BYTES >> 20).into()),
                        ],
                    );
                    posted.problems.insert(name, message);
                }
            },
        }
    }
    viewer.check_csrf(csrf.as_deref())?;
    Ok(posted)
}

/// Read the post into form data and list what is wrong with it, in the viewer's language.
fn check(wf: &Workflow, form: Option<&str>, posted: &mut Posted, lang: &str) -> (Value, BTreeMap<String, String>) {
    let Some(form) = form else {
        return (json!({}), BTreeMap::new());
    };
    let schema = wf.def.forms.get(form).map(|d| d.schema.clone()).unwrap_or(json!({}));
    let data = forms::read(&schema, posted, "");
    let mut errors: BTreeMap<String, String> = wf
        .form_problems(form, &data)
        .iter()
        .map(|p| (p.pointer.clone(), forms::problem_text(p, lang)))
        .collect();
    for (pointer, message) in &posted.problems {
        let message = if message.starts_with("err-") {
            text(lang, message, &[])
        } else {
            message.clone()
        };
        errors.insert(pointer.clone(), message);
    }
    (data, errors)
}

/// An engine refusal as errors for the form page.
#[allow(clippy::result_large_err)] // a page is the error; it goes straight back to the browser
fn refusal(e: StoreError, viewer: &Viewer) -> Result<BTreeMap<String, String>, Response> {
    let lang = viewer.lang;
    let reason = match &e {
        StoreError::Engine(EngineError::InvalidForm(fields)) => {
            return Ok(fields
                .iter()
                .map(|(pointer, message)| (pointer.clone(), crate::i18n::field_message(lang, message)))
                .collect());
        }
        StoreError::Db(_) | StoreError::Corrupt(_) => return Err(error_page(e, lang)),
        // My own sign-up is "you", anything else (a household) by what it is called.
        StoreError::Engine(EngineError::Duplicate(key)) if *key == viewer.profile.id => {
            text(lang, "err-duplicate-mine", &[])
        }
        StoreError::Engine(EngineError::Duplicate(key)) => text(lang, "err-duplicate", &[("key", key.clone().into())]),
        other => {
            // The English detail is for whoever looks after the workflow; the person is told
            // in their language what happened and what to do.
            tracing::info!(code = other.code(), error = %other, "action refused");
            text(lang, &format!("err-{}", other.code()), &[])
        }
    };
    Ok([(String::new(), text(lang, "err-refused", &[("reason", reason.into())]))].into())
}

#[derive(Deserialize, Default)]
pub struct CodeQuery {
    /// A check-in code, from the organiser's QR code (it opens this page).
    #[serde(default)]
    code: Option<String>,
}

pub async fn task_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(scanned): Query<CodeQuery>,
) -> Response {
    let (task, instance, wf) = match find_task(&state, &viewer, &id).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if task.status != TaskStatus::Open || !viewer.actor.may_act_on(&task.task) {
        return see_other(&format!("/instances/{}", instance.id));
    }
    if task.task.pool && task.task.claimed_by.is_none() {
        return see_other(&format!("/instances/{}", instance.id));
    }
    task_page(
        &state,
        &viewer,
        (&task, &instance, &wf),
        StatusCode::OK,
        json!({}),
        BTreeMap::new(),
        scanned.code,
    )
    .await
}

/// The choices rules give a task's fields; a failing rule leaves the fields as the schema
/// has them (completing the task then refuses with the rule's error).
async fn choices_for(
    state: &AppState,
    viewer: &Viewer,
    task: &str,
) -> BTreeMap<String, Vec<civicflow_engine::definition::Choice>> {
    state
        .runtime
        .task_choices(&viewer.profile.id, task)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(task, error = %e, "choices for a task form could not be read");
            BTreeMap::new()
        })
}

/// A task's form with what the task is about: blank, or as posted with its errors.
async fn task_page(
    state: &AppState,
    viewer: &Viewer,
    (task, instance, wf): (&TaskView, &Instance, &Workflow),
    status: StatusCode,
    data: Value,
    errors: BTreeMap<String, String>,
    code: Option<String>,
) -> Response {
    let mut choices = choices_for(state, viewer, &task.task.id).await;
    // A rule's choices first (a district's own list of departments), else the org tree's.
    match state
        .runtime
        .store
        .reference_choices(wf, task.task.form.as_deref(), &instance.unit_path)
        .await
    {
        Ok(from_org) => {
            for (field, list) in from_org {
                choices.entry(field).or_insert(list);
            }
        }
        Err(e) => tracing::warn!(error = %e, "pickers of a task form could not be read"),
    }
    let takes_code = wf.state(&task.task.state).is_some_and(|s| s.code.is_some());
    // What the task is about, with people and units by name.
    let mut ids = Vec::new();
    timeline::short_texts(&instance.data, &mut ids);
    let names = state.runtime.store.names(&ids, &ids).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "names for a task's context could not be read");
        Names::new()
    });
    let about = named(&instance.data, &names, viewer.lang);
    form_page(
        viewer,
        status,
        FormPage {
            wf,
            form: task.task.form.as_deref(),
            title: state_title(wf, &task.task.state, viewer.lang),
            action: format!("/tasks/{}", task.task.id),
            data,
            errors,
            units: Vec::new(),
            unit: String::new(),
            key: uuid::Uuid::now_v7().to_string(),
            instance: Some(instance.id.clone()),
            context: filled(wf, wf.def.start.form.as_deref(), &about, viewer.lang),
            choices,
            code: takes_code.then_some(code),
        },
    )
}

pub async fn task_submit(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    super::PagePost(multipart): super::PagePost<Multipart>,
) -> Response {
    let (task, instance, wf) = match find_task(&state, &viewer, &id).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let mut posted = match read_post(&state, &viewer, multipart).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let key = posted.take("_key");
    let (data, mut errors) = check(&wf, task.task.form.as_deref(), &mut posted, viewer.lang);
    // The check-in code travels beside the form's fields; the runtime verifies and drops it.
    let code = posted.values.iter().find(|(k, _)| k == "_code").map(|(_, v)| v.clone());
    if errors.is_empty() {
        let mut with_code = data.clone();
        if let (Some(code), Some(m)) = (&code, with_code.as_object_mut()) {
            m.insert("code".into(), code.clone().into());
        }
        // A double-tapped submit completes once; the repeat lands on the same page.
        fn answer(applied: &Applied) -> Value {
            json!({"instance": applied.instance.id})
        }
        let op = Op::Complete {
            person: viewer.profile.id.clone(),
            task: id.clone(),
            form: with_code,
        };
        match state.runtime.once(key.as_deref(), answer, op).await {
            Ok(_) => return see_other(&format!("/instances/{}?done=1", instance.id)),
            Err(e) => match refusal(e, &viewer) {
                Ok(e) => errors = e,
                Err(r) => return r,
            },
        }
    }
    task_page(
        &state,
        &viewer,
        (&task, &instance, &wf),
        StatusCode::UNPROCESSABLE_ENTITY,
        data,
        errors,
        code,
    )
    .await
}

pub async fn task_claim(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    super::PagePost(axum::Form(form)): super::PagePost<axum::Form<super::session::CsrfOnly>>,
) -> Response {
    if let Err(r) = viewer.check_csrf(form.csrf.as_deref()) {
        return r;
    }
    if let Err(r) = find_task(&state, &viewer, &id).await {
        return r;
    }
    match state.runtime.claim(&viewer.profile.id, &id).await {
        Ok(_) => see_other(&format!("/tasks/{id}")),
        // Taken by someone else meanwhile: back to the list, which no longer offers it.
        Err(e) => match AppError::from(e) {
            e if e.status.is_server_error() => e.page(viewer.lang),
            _ => see_other("/tasks"),
        },
    }
}

/// A unit id and the workflow as that unit has it.
type AtUnit = (String, Arc<Workflow>);

/// Workflows the viewer may start: by id, the units they may start each in, with the
/// workflow as that unit has it (its own overlays: its form, who may start it).
fn startable(state: &AppState, viewer: &Viewer) -> Vec<(String, Vec<AtUnit>)> {
    let registry = &state.runtime.registry;
    let mut out = Vec::new();
    for base in registry.all_latest() {
        let mut units: Vec<AtUnit> = Vec::new();
        for g in &viewer.actor.roles {
            if units.iter().any(|(u, _)| *u == g.unit_id) {
                continue;
            }
            let Ok(Some(wf)) = registry.resolve(base.id(), &g.unit_path) else {
                continue;
            };
            if wf.available_at(&g.unit_path) && wf.def.start.roles.contains(&g.role) {
                units.push((g.unit_id.clone(), wf));
            }
        }
        if !units.is_empty() {
            out.push((base.id().to_string(), units));
        }
    }
    out
}

/// The workflow `id` as the viewer may start it at `unit` (default: their first unit for it).
fn startable_at(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    unit: Option<&str>,
) -> Option<(Arc<Workflow>, String, Vec<String>)> {
    let (_, units) = startable(state, viewer).into_iter().find(|(w, _)| w == id)?;
    let (chosen, wf) = match unit {
        Some(u) => units.iter().find(|(x, _)| x == u)?.clone(),
        None => units.first()?.clone(),
    };
    Some((wf, chosen, units.into_iter().map(|(u, _)| u).collect()))
}

pub async fn start_list(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let startable = startable(&state, &viewer)
        .iter()
        .map(|(_, units)| {
            let wf = &units[0].1;
            Startable {
                id: wf.id().to_string(),
                title: localize(&wf.def.title, lang).to_string(),
                description: wf.def.description.as_ref().map(|d| localize(d, lang).to_string()),
            }
        })
        .collect();
    render(StatusCode::OK, lang, viewer.frame("start"), &StartList { startable })
}

async fn start_page(
    state: &AppState,
    viewer: &Viewer,
    workflow: &str,
    status: StatusCode,
    data: Value,
    errors: BTreeMap<String, String>,
    unit: Option<String>,
) -> Response {
    let lang = viewer.lang;
    let Some((wf, unit, units)) = startable_at(state, viewer, workflow, unit.as_deref()) else {
        return Page::not_found(lang);
    };
    let refs: Vec<&str> = units.iter().map(String::as_str).collect();
    let names = match state.runtime.store.names(&refs, &[]).await {
        Ok(n) => n,
        Err(e) => return error_page(e, lang),
    };
    let key = uuid::Uuid::now_v7().to_string();
    // Pickers of units and people, from the tree below the unit it starts in.
    let here = match state.runtime.store.unit_path(&unit).await {
        Ok(p) => p,
        Err(e) => return error_page(e, lang),
    };
    let choices = match state
        .runtime
        .store
        .reference_choices(&wf, wf.def.start.form.as_deref(), &here)
        .await
    {
        Ok(c) => c,
        Err(e) => return error_page(e, lang),
    };
    form_page(
        viewer,
        status,
        FormPage {
            wf: &wf,
            form: wf.def.start.form.as_deref(),
            title: localize(&wf.def.title, lang).to_string(),
            action: format!("/start/{workflow}"),
            data,
            errors,
            unit,
            units: units.iter().map(|u| (u.clone(), name_of(&names, u, lang))).collect(),
            key,
            instance: None,
            context: Vec::new(),
            choices,
            code: None,
        },
    )
}

/// `?unit=` on the start page: the form is the one that unit has (its overlays).
#[derive(serde::Deserialize)]
pub struct StartQuery {
    unit: Option<String>,
}

pub async fn start_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(workflow): Path<String>,
    axum::extract::Query(q): axum::extract::Query<StartQuery>,
) -> Response {
    start_page(
        &state,
        &viewer,
        &workflow,
        StatusCode::OK,
        json!({}),
        BTreeMap::new(),
        q.unit,
    )
    .await
}

pub async fn start_submit(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(workflow): Path<String>,
    super::PagePost(multipart): super::PagePost<Multipart>,
) -> Response {
    let lang = viewer.lang;
    let mut posted = match read_post(&state, &viewer, multipart).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let unit = posted.take("_unit").unwrap_or_default();
    let Some((wf, _, _)) = startable_at(&state, &viewer, &workflow, Some(&unit)) else {
        return Page::not_found(lang);
    };
    let key = posted.take("_key");
    let (data, mut errors) = check(&wf, wf.def.start.form.as_deref(), &mut posted, lang);
    if errors.is_empty() {
        // A double-tapped submit button starts one instance, not two.
        fn answer(applied: &Applied) -> Value {
            json!({"instance": {"id": applied.instance.id}})
        }
        let op = Op::Start {
            person: viewer.profile.id.clone(),
            workflow: workflow.clone(),
            unit: unit.clone(),
            data: data.clone(),
        };
        let page = |answer: &Value| format!("/instances/{}", answer["instance"]["id"].as_str().unwrap_or(""));
        match state.runtime.once(key.as_deref(), answer, op).await {
            Ok(Once::Ran(answer)) => return see_other(&format!("{}?done=1", page(&answer))),
            Ok(Once::Repeated(answer)) => return see_other(&page(&answer)),
            Err(e) => match refusal(e, &viewer) {
                Ok(e) => errors = e,
                Err(r) => return r,
            },
        }
    }
    start_page(
        &state,
        &viewer,
        &workflow,
        StatusCode::UNPROCESSABLE_ENTITY,
        data,
        errors,
        Some(unit),
    )
    .await
}

#[derive(Deserialize, Default)]
pub struct MoreOf {
    /// Where the previous page ended (the "more" link).
    #[serde(default)]
    after: Option<String>,
}

impl MoreOf {
    /// The page asked for starts after this row (none, or not a cursor: the first page).
    pub(crate) fn cursor(&self) -> Option<Cursor> {
        self.after.as_deref().and_then(Cursor::parse)
    }
}

/// `rows` (read one past a page) cut to a page of [`PAGE_ROWS`], and the link to the next
/// page of `path` when there is one, after the last row shown.
pub(crate) fn next_page<T>(rows: &mut Vec<T>, path: &str, after: impl FnOnce(&T) -> Cursor) -> Option<String> {
    if rows.len() <= PAGE_ROWS {
        return None;
    }
    rows.truncate(PAGE_ROWS);
    let last = after(&rows[PAGE_ROWS - 1]).to_string();
    Some(more_link(path, &[("after", Some(&last))]))
}

pub async fn mine(State(state): State<AppState>, viewer: Viewer, Query(more): Query<MoreOf>) -> Response {
    let lang = viewer.lang;
    let store = &state.runtime.store;
    let rows = PAGE_ROWS as i64 + 1;
    let mut started = match store
        .instances_started_by(&viewer.profile.id, more.cursor().as_ref(), rows)
        .await
    {
        Ok(s) => s,
        Err(e) => return error_page(e, lang),
    };
    let next = next_page(&mut started, "/mine", Cursor::after_instance);
    let refs: Vec<&Instance> = started.iter().collect();
    let items = match instance_rows(&state, &refs, lang).await {
        Ok(rows) => rows,
        Err(e) => return error_page(e, lang),
    };
    render(
        StatusCode::OK,
        lang,
        viewer.frame("mine"),
        &InstanceList {
            started: items,
            more: next,
        },
    )
}

/// 已办: what I did, newest first, with where each instance stands now.
pub async fn done(State(state): State<AppState>, viewer: Viewer, Query(more): Query<MoreOf>) -> Response {
    let lang = viewer.lang;
    let store = &state.runtime.store;
    let rows = PAGE_ROWS as i64 + 1;
    let mut actions = match store.actions_of(&viewer.profile.id, more.cursor().as_ref(), rows).await {
        Ok(a) => a,
        Err(e) => return error_page(e, lang),
    };
    let next = next_page(&mut actions, "/done", |(instance, event)| {
        Cursor::after_event(event.at, instance)
    });
    let ids: Vec<&str> = actions.iter().map(|(i, _)| i.as_str()).collect();
    let instances = match store.instances(&ids).await {
        Ok(list) => list,
        Err(e) => return error_page(e, lang),
    };
    let by_id: HashMap<&str, &Instance> = instances.iter().map(|i| (i.id.as_str(), i)).collect();
    let refs: Vec<&Instance> = ids.iter().filter_map(|id| by_id.get(id).copied()).collect();
    let mut items = match instance_rows(&state, &refs, lang).await {
        Ok(rows) => rows,
        Err(e) => return error_page(e, lang),
    };
    let mine: HashMap<&str, &civicflow_store::EventRow> = actions.iter().map(|(i, e)| (i.as_str(), e)).collect();
    // Rows come in the order of `refs`: say beside each what I did there and when.
    for (item, i) in items.iter_mut().zip(&refs) {
        let (Some(event), Ok(wf)) = (mine.get(i.id.as_str()), state.runtime.registry.for_instance(i)) else {
            continue;
        };
        let Some((did, state_name)) = event.event.as_ref().and_then(timeline::done_message) else {
            continue;
        };
        item.did = Some(text(lang, did, &[("state", state_title(&wf, state_name, lang).into())]));
        item.did_at = Some(event.at);
        // What I entered (my vote, my sign-up's note), so I need not open it to check.
        if let Some(entry) = my_entry(&wf, state_name, &i.data, &viewer.actor.person) {
            let form = wf.def.states.get(state_name).and_then(|st| st.form.as_deref());
            let entered: Vec<String> = filled(&wf, form, entry, lang)
                .iter()
                .filter(|f| !f.value.is_empty() || f.options.iter().any(|o| o.selected))
                .map(|f| {
                    let shown = f
                        .options
                        .iter()
                        .find(|o| o.selected)
                        .map_or(f.value.as_str(), |o| o.label.as_str());
                    format!("{}{}{shown}", f.label, text(lang, "colon", &[]))
                })
                .collect();
            item.entered = Some(entered.join(&text(lang, "list-separator", &[])));
        }
    }
    render(
        StatusCode::OK,
        lang,
        viewer.frame("done"),
        &InstanceList {
            started: items,
            more: next,
        },
    )
}

/// Rows of a list of instances: the number, what it is about, where it stands.
async fn instance_rows(
    state: &AppState,
    instances: &[&Instance],
    lang: &str,
) -> Result<Vec<InstanceRow>, civicflow_store::StoreError> {
    let store = &state.runtime.store;
    let units: Vec<&str> = instances.iter().map(|i| i.unit_id.as_str()).collect();
    let names = store.names(&units, &[]).await?;
    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let last = store.last_event_times(&ids).await?;
    Ok(instances
        .iter()
        .map(|i| {
            let wf = state.runtime.registry.for_instance(i).ok();
            let states: Vec<String> = i
                .position
                .tokens
                .iter()
                .map(|s| {
                    wf.as_ref()
                        .map(|w| state_title(w, s, lang))
                        .unwrap_or_else(|| s.clone())
                })
                .collect();
            InstanceRow {
                id: i.id.clone(),
                workflow: wf
                    .as_ref()
                    .map(|w| localize(&w.def.title, lang).to_string())
                    .unwrap_or_else(|| i.workflow.clone()),
                number: wf.as_ref().and_then(|w| number_text(w, i, lang)),
                brief: wf.as_ref().map(|w| brief(w, &i.data, lang)),
                states,
                status: text(lang, &format!("instance-status-{}", i.status.as_str()), &[]),
                finished: i.status != civicflow_engine::machine::Status::Running,
                unit: name_of(&names, &i.unit_id, lang),
                created_at: i.created_at,
                updated_at: *last.get(&i.id).unwrap_or(&i.created_at),
                did: None,
                did_at: None,
                entered: None,
            }
        })
        .collect())
}

/// A line saying what an instance is about: the workflow's `summary` template, else the
/// first text its start form was given.
pub(super) fn brief(wf: &Workflow, data: &Value, lang: &str) -> String {
    let summary = wf.def.summary.as_ref().and_then(|t| {
        let ctx = civicflow_engine::expr::context(&json!({ "data": data }));
        civicflow_engine::expr::render(localize(t, lang), &ctx)
            .inspect_err(|e| tracing::warn!(workflow = wf.id(), error = %e, "summary template failed"))
            .ok()
    });
    let text = summary
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            filled(wf, wf.def.start.form.as_deref(), data, lang)
                .into_iter()
                .find(|f| matches!(f.widget, "text" | "textarea") && !f.value.is_empty())
                .map(|f| f.value)
        })
        .unwrap_or_default();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// My entry in a collect state (my ballot, my sign-up, on the list or waiting), if any.
fn my_entry<'a>(wf: &Workflow, state: &str, data: &'a Value, person: &str) -> Option<&'a Value> {
    let collect = wf.def.states.get(state)?.collect.as_ref()?;
    std::iter::once(&collect.into)
        .chain(collect.waitlist.as_ref())
        .filter_map(|list| data[list.as_str()].as_array())
        .flatten()
        .find(|e| e["submitted_by"] == person)
}

/// `事件 2026-000123`: the workflow's word for one instance and its number in its year.
pub(super) fn number_text(wf: &Workflow, i: &Instance, lang: &str) -> Option<String> {
    use chrono::Datelike;
    let n = i.number?;
    let year = i
        .created_at
        .with_timezone(&civicflow_engine::time::DEFAULT_TIME_ZONE)
        .year();
    let noun = localize(wf.def.noun.as_ref().unwrap_or(&wf.def.title), lang);
    Some(format!("{noun} {year}-{n:06}"))
}

/// Every short text in `v`, however deep: what may be the id of a unit or a person (a
/// department picked, the owners on a vote's roll).
/// `v` with each text that is a unit's or a person's id replaced by their name, however
/// deep, so data shows as people know it.
pub(super) fn named(v: &Value, names: &Names, lang: &str) -> Value {
    match v {
        Value::String(s) if names.contains_key(s) => Value::String(name_of(names, s, lang)),
        Value::Array(items) => Value::Array(items.iter().map(|i| named(i, names, lang)).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, i)| (k.clone(), named(i, names, lang))).collect()),
        other => other.clone(),
    }
}

/// Read-only fields of a form with its data, for the timeline.
pub(super) fn filled(wf: &Workflow, form: Option<&str>, data: &Value, lang: &str) -> Vec<forms::Field> {
    let Some(def) = form.and_then(|f| wf.def.forms.get(f)) else {
        return Vec::new();
    };
    let ui = def.ui.clone().unwrap_or(Value::Null);
    let mut fields = forms::fields(&def.schema, &ui, data, "", lang);
    fields.retain(|f| data.get(f.name.trim_start_matches('/')).is_some());
    fields
}

pub async fn instance_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(filter): Query<ListFilter>,
) -> Response {
    let lang = viewer.lang;
    let store = &state.runtime.store;
    let instance = match store.instance(&id).await {
        Ok(i) => i,
        Err(e) => return error_page(e, lang),
    };
    match visible(&state, &viewer.actor, &instance).await {
        Ok(true) => {}
        Ok(false) => return Page::not_found(lang),
        Err(e) => return error_page(e, lang),
    }
    let wf = match state.runtime.registry.for_instance(&instance) {
        Ok(wf) => wf,
        Err(e) => return error_page(e, lang),
    };
    let (tasks, events) = match (store.instance_tasks(&id).await, store.events(&id).await) {
        (Ok(t), Ok(e)) => (t, e),
        (Err(e), _) | (_, Err(e)) => return error_page(e, lang),
    };
    let mentioned = timeline::mentioned(&events);
    let mut people = mentioned.people;
    people.extend(tasks.iter().filter_map(|t| t.task.person.as_deref()));
    let mut units = mentioned.units;
    units.push(instance.unit_id.as_str());
    units.extend(instance.overlays.iter().map(|p| p.unit.as_str()));
    units.extend(tasks.iter().map(|t| t.task.unit_id.as_str()));
    // A role's task is done by the role's holders at the nearest unit at or above its own
    // (a grid's dispatch by the street's command centre): say that unit, not the grid.
    let mut acting: HashMap<(String, String), String> = HashMap::new();
    let role_tasks = mentioned.role_tasks.into_iter().chain(
        tasks
            .iter()
            .filter(|t| t.task.person.is_none() && !t.task.below)
            .filter_map(|t| Some((t.task.role.as_deref()?, t.task.unit_id.as_str()))),
    );
    for (role, unit) in role_tasks {
        let key = (role.to_string(), unit.to_string());
        if acting.contains_key(&key) {
            continue;
        }
        match store.acting_unit(role, unit).await {
            Ok(Some(at)) => {
                acting.insert(key, at);
            }
            Ok(None) => {}
            Err(e) => return error_page(e, lang),
        }
    }
    units.extend(acting.values().map(String::as_str));
    people.sort_unstable();
    people.dedup();
    units.sort_unstable();
    units.dedup();
    let names = match store.names(&units, &people).await {
        Ok(n) => n,
        Err(e) => return error_page(e, lang),
    };
    let presenter = timeline::Presenter {
        wf: &wf,
        names: &names,
        acting: &acting,
        lang,
        admin: crate::admin::is_admin(&viewer.actor),
        now: state.runtime.now(),
    };
    let who = |person: Option<&str>, role: Option<&str>, unit: Option<&str>| presenter.who(person, role, unit);
    let timeline = presenter.timeline(&events);
    let open: Vec<OpenTask> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Open)
        .map(|t| {
            let (due, overdue) = due_text(lang, t.task.due_at, state.runtime.now());
            let def = wf.state(&t.task.state);
            // The organiser shows the check-in code; whoever signed up may take it back.
            let shows_code = def
                .and_then(|s| s.code.as_ref())
                .is_some_and(|c| viewer.actor.has_role_over(&c.shown_by, &instance.unit_path));
            let entered = my_entry(&wf, &t.task.state, &instance.data, &viewer.actor.person).is_some();
            let collect = def.and_then(|s| s.collect.as_ref());
            let may_withdraw = entered && collect.is_some_and(|c| c.withdraw);
            // "已报名 3 人，还剩 2 个名额": what a volunteer needs before signing up.
            let places = collect.map(|c| {
                let taken = instance.data[c.into.as_str()].as_array().map_or(0, Vec::len) as u64;
                let waiting = c
                    .waitlist
                    .as_ref()
                    .and_then(|w| instance.data[w.as_str()].as_array())
                    .map_or(0, Vec::len) as u64;
                match wf.places(&t.task.state, &instance.data).0 {
                    Some(cap) => text(
                        lang,
                        "collect-places",
                        &[
                            ("taken", taken.into()),
                            ("left", cap.saturating_sub(taken).into()),
                            ("waiting", waiting.into()),
                        ],
                    ),
                    None => text(lang, "collect-entries", &[("taken", taken.into())]),
                }
            });
            OpenTask {
                id: t.task.id.clone(),
                state: t.task.state.clone(),
                title: state_title(&wf, &t.task.state, lang),
                who: who(t.task.person.as_deref(), t.task.role.as_deref(), Some(&t.task.unit_id)),
                due,
                overdue,
                mine: viewer.actor.may_act_on(&t.task) && !entered,
                claim: t.task.pool && t.task.claimed_by.is_none(),
                shows_code,
                places,
                withdraw: may_withdraw,
            }
        })
        .collect();
    let composition = std::iter::once(text(
        lang,
        "instance-version",
        &[("version", instance.workflow_version.into())],
    ))
    .chain(instance.overlays.iter().map(|p| {
        let unit = name_of(&names, &p.unit, lang);
        text(
            lang,
            "instance-overlay",
            &[("unit", unit.into()), ("version", p.version.into())],
        )
    }))
    .collect();
    let page = InstancePage {
        title: localize(&wf.def.title, lang).to_string(),
        brief: brief(&wf, &instance.data, lang),
        number: number_text(&wf, &instance, lang),
        status: text(lang, &format!("instance-status-{}", instance.status.as_str()), &[]),
        unit: name_of(&names, &instance.unit_id, lang),
        created_at: instance.created_at,
        id: instance.id,
        composition,
        open,
        timeline,
    };
    let frame = Frame {
        notice: filter.done.map(|_| text(lang, "task-done", &[])),
        ..viewer.frame("")
    };
    render(StatusCode::OK, lang, frame, &page)
}

#[derive(Deserialize)]
pub struct AttachmentOf {
    /// The instance whose page links the file.
    instance: Option<String>,
}

/// A file, to its uploader or to someone who may read the instance that refers to it.
pub async fn attachment(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(sha): Path<String>,
    Query(of): Query<AttachmentOf>,
) -> Response {
    let scope = state.runtime.scope(&viewer.actor);
    match state
        .runtime
        .store
        .attachment_for(&sha, &scope, of.instance.as_deref())
        .await
    {
        Ok(Some(a)) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "private, max-age=31536000, immutable".into()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'".into(),
                ),
            ],
            Body::from(a.content),
        )
            .into_response(),
        Ok(None) => Page::not_found(viewer.lang),
        Err(e) => error_page(e, viewer.lang),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_rounds_up_and_time_overdue_down() {
        let now = Utc::now();
        let just_started = now + chrono::Duration::days(3) - chrono::Duration::seconds(20);
        assert_eq!(due_text("zh-CN", Some(just_started), now).0, "剩余 3 天");
        assert_eq!(
            due_text("zh-CN", Some(now + chrono::Duration::minutes(90)), now).0,
            "剩余 2 小时"
        );
        let late = now - chrono::Duration::hours(36);
        assert!(
            due_text("zh-CN", Some(late), now).0.contains("1 天"),
            "{:?}",
            due_text("zh-CN", Some(late), now)
        );
    }
}
