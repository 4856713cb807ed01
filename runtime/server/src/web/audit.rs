//! 事件日志: an admin searches the event log of the subtrees they administer by unit,
//! person, workflow and day, newest first, each event said as the timeline says it; and
//! verifies the hash chains of the instances there. Anyone else is answered as for a page
//! that does not exist.

use super::admin_filters::{day_given, day_start, given, reach, unit_choices, workflow_choices};
use super::pages::{PAGE_ROWS, more_link, name_of, number_text};
use super::session::{CsrfOnly, Viewer};
use super::timeline::Presenter;
use super::views::{AdminRow, AuditPage, AuditRow, Frame};
use super::{Page, PagePost, error_page, render};
use crate::AppState;
use crate::i18n::text;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicflow_engine::definition::localize;
use civicflow_store::admin_log::{AdminAction, AdminEntry};
use civicflow_store::{EventCursor, EventSearch};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    unit: Option<String>,
    /// A person's login id or name.
    #[serde(default)]
    person: Option<String>,
    #[serde(default)]
    workflow: Option<String>,
    /// Days (China time) from and to, both included, as `2026-12-01`.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

pub async fn audit_page(State(state): State<AppState>, viewer: Viewer, Query(q): Query<AuditQuery>) -> Response {
    show(&state, &viewer, &q, None).await
}

/// Verify the hash chains of the instances under the filter's unit (or all the viewer's).
pub async fn verify(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
    PagePost(Form(form)): PagePost<Form<CsrfOnly>>,
) -> Response {
    if let Err(r) = viewer.check_csrf(form.csrf.as_deref()) {
        return r;
    }
    let lang = viewer.lang;
    let units = match reach(&state, &viewer, given(&q.unit)).await {
        Ok(Some(u)) => u,
        Ok(None) => return Page::not_found(lang),
        Err(e) => return error_page(e, lang),
    };
    let said = match state.runtime.store.verify_chains_under(&units).await {
        Ok((checked, broken)) if broken.is_empty() => text(lang, "audit-chains-intact", &[("count", checked.into())]),
        Ok((checked, broken)) => text(
            lang,
            "audit-chains-broken",
            &[("count", checked.into()), ("broken", broken.len().into())],
        ),
        Err(e) => return error_page(e, lang),
    };
    show(&state, &viewer, &q, Some(said)).await
}

async fn show(state: &AppState, viewer: &Viewer, q: &AuditQuery, notice: Option<String>) -> Response {
    let lang = viewer.lang;
    let store = &state.runtime.store;
    let units = match reach(state, viewer, given(&q.unit)).await {
        Ok(Some(u)) => u,
        Ok(None) => return Page::not_found(lang),
        Err(e) => return error_page(e, lang),
    };
    let mut problems = Vec::new();
    let mut day = |v: &Option<String>| match day_given(v) {
        Ok(d) => d.and_then(day_start),
        Err(bad) => {
            problems.push(text(lang, "audit-bad-day", &[("day", bad.into())]));
            None
        }
    };
    let (from, to) = (day(&q.from), day(&q.to).map(|t| t + chrono::Duration::days(1)));
    let people = match given(&q.person) {
        None => Vec::new(),
        Some(p) => match store.people_called(p).await {
            Ok(found) => {
                match found.len() {
                    0 => problems.push(text(lang, "audit-no-person", &[("person", p.to_string().into())])),
                    1 => {}
                    _ => problems.push(text(lang, "audit-many-people", &[("person", p.to_string().into())])),
                }
                found
            }
            Err(e) => return error_page(e, lang),
        },
    };
    let after = given(&q.after).and_then(EventCursor::parse);
    let mut found = if problems.is_empty() {
        let search = EventSearch {
            units: &units,
            actor: people.first().map(String::as_str),
            workflow: given(&q.workflow),
            from,
            to,
            after: after.as_ref(),
            limit: PAGE_ROWS as i64 + 1,
        };
        match store.search_events(&search).await {
            Ok(f) => f,
            Err(e) => return error_page(e, lang),
        }
    } else {
        Vec::new()
    };
    let more = (found.len() > PAGE_ROWS).then(|| {
        found.truncate(PAGE_ROWS);
        let last = EventCursor::after(&found[PAGE_ROWS - 1]).to_string();
        let keep = |v: &Option<String>| given(v).map(str::to_string);
        let (unit, person, workflow, from, to) = (
            keep(&q.unit),
            keep(&q.person),
            keep(&q.workflow),
            keep(&q.from),
            keep(&q.to),
        );
        more_link(
            "/admin/audit",
            &[
                ("unit", unit.as_deref()),
                ("person", person.as_deref()),
                ("workflow", workflow.as_deref()),
                ("from", from.as_deref()),
                ("to", to.as_deref()),
                ("after", Some(&last)),
            ],
        )
    });

    let changes = if problems.is_empty() && after.is_none() {
        let actor = people.first().map(String::as_str);
        match store.admin_actions(&units, actor, from, to, PAGE_ROWS as i64).await {
            Ok(c) => c,
            Err(e) => return error_page(e, lang),
        }
    } else {
        Vec::new()
    };
    let ids: Vec<&str> = found.iter().map(|f| f.instance_id.as_str()).collect();
    let instances = match store.instances(&ids).await {
        Ok(list) => list,
        Err(e) => return error_page(e, lang),
    };
    let by_id: HashMap<&str, _> = instances.iter().map(|i| (i.id.as_str(), i)).collect();
    let units = match unit_choices(state, viewer).await {
        Ok(u) => u,
        Err(e) => return error_page(e, lang),
    };
    let mentioned = super::timeline::mentioned(found.iter().map(|f| &f.row));
    let mut unit_ids: Vec<&str> = found.iter().map(|f| f.unit_id.as_str()).collect();
    unit_ids.extend(mentioned.units);
    unit_ids.extend(changes.iter().map(|c| c.unit_id.as_str()));
    let mut people_ids = mentioned.people;
    people_ids.extend(changes.iter().map(|c| c.actor.as_str()));
    let names = match store.names(&unit_ids, &people_ids).await {
        Ok(n) => n,
        Err(e) => return error_page(e, lang),
    };
    let acting = HashMap::new();
    let now = state.runtime.now();
    let rows: Vec<AuditRow> = found
        .iter()
        .filter_map(|f| {
            let instance = by_id.get(f.instance_id.as_str())?;
            let wf = state.runtime.registry.for_instance(instance).ok()?;
            let presenter = Presenter {
                wf: &wf,
                names: &names,
                acting: &acting,
                lang,
                admin: true,
                now,
            };
            Some(AuditRow {
                at: f.row.at,
                who: name_of(&names, &f.row.actor, lang),
                text: presenter.said(&f.row),
                workflow: localize(&wf.def.title, lang).to_string(),
                unit: name_of(&names, &f.unit_id, lang),
                number: number_text(&wf, instance, lang),
            })
        })
        .collect();
    let changes = changes
        .iter()
        .filter(|c| given(&q.workflow).is_none_or(|w| change_of(c).is_some_and(|cw| cw == w)))
        .map(|c| AdminRow {
            at: c.at,
            who: name_of(&names, &c.actor, lang),
            text: said(state, c, &name_of(&names, &c.actor, lang), lang),
            unit: if c.unit_id.is_empty() {
                text(lang, "audit-everywhere", &[])
            } else {
                name_of(&names, &c.unit_id, lang)
            },
        })
        .collect();
    let workflows = workflow_choices(state, lang);
    let keep = |v: &Option<String>| given(v).map(str::to_string);
    let page = AuditPage {
        rows,
        changes,
        more,
        problems,
        units,
        workflows,
        unit: keep(&q.unit),
        person: keep(&q.person),
        workflow: keep(&q.workflow),
        from: keep(&q.from),
        to: keep(&q.to),
    };
    let status = if page.problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        status,
        lang,
        Frame {
            notice,
            ..viewer.frame("audit")
        },
        &page,
    )
}

/// The workflow an admin's change concerns, if any.
fn change_of(c: &AdminEntry) -> Option<&str> {
    match c.action.as_ref()? {
        AdminAction::PluginBound { workflow, .. } => Some(workflow),
        a => a.workflow_version().map(|(w, _)| w),
    }
}

/// An admin's change in words: who did what, naming workflows and rules by their titles.
fn said(state: &AppState, c: &AdminEntry, who: &str, lang: &str) -> String {
    let registry = &state.runtime.registry;
    let title = |w: &str| {
        registry
            .latest(w)
            .map_or_else(|| w.to_string(), |wf| localize(&wf.def.title, lang).to_string())
    };
    let who = || ("who", who.to_string().into());
    let Some(action) = &c.action else {
        return text(lang, "admin-other", &[who(), ("kind", c.kind.clone().into())]);
    };
    let id = format!("admin-{}", action.kind());
    let args: Vec<(&str, fluent_bundle::FluentValue)> = match action {
        AdminAction::WorkflowPublished { workflow, version }
        | AdminAction::OverlayPublished { workflow, version }
        | AdminAction::OverlayLive { workflow, version }
        | AdminAction::BaseHeld { workflow, version } => {
            vec![
                who(),
                ("workflow", title(workflow).into()),
                ("version", (*version).into()),
            ]
        }
        AdminAction::PluginPublished { plugin, version } => {
            vec![
                who(),
                ("plugin", plugin.clone().into()),
                ("version", version.clone().into()),
            ]
        }
        AdminAction::PluginBound {
            workflow,
            hook,
            plugin,
            version,
        } => {
            let rule = registry
                .latest(workflow)
                .and_then(|wf| {
                    wf.def
                        .rules
                        .get(hook)
                        .and_then(|r| r.description.as_ref())
                        .map(|d| localize(d, lang).to_string())
                })
                .unwrap_or_else(|| hook.clone());
            vec![
                who(),
                ("workflow", title(workflow).into()),
                ("rule", rule.into()),
                ("plugin", plugin.clone().into()),
                ("version", version.clone().into()),
            ]
        }
        AdminAction::CalendarUploaded { year } => vec![who(), ("year", year.to_string().into())],
    };
    text(lang, &id, &args)
}
