//! The inbox: notifications the workflows sent to me (voting open, overdue, sent back), in
//! my language, newest first; opening one marks it read and shows its instance.

use super::pages::{MoreOf, PAGE_ROWS, next_page};
use super::session::Viewer;
use super::views::{Inbox, InboxRow};
use super::{Page, error_page, render, see_other};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicflow_engine::definition::{DEFAULT_LANG, localize};
use civicflow_store::Cursor;
use serde_json::Value;

pub async fn inbox(State(state): State<AppState>, viewer: Viewer, Query(more): Query<MoreOf>) -> Response {
    let lang = viewer.lang;
    let rows = PAGE_ROWS as i64 + 1;
    let mut items = match state
        .runtime
        .store
        .inbox(&viewer.actor.person, more.cursor().as_ref(), rows)
        .await
    {
        Ok(items) => items,
        Err(e) => return error_page(e, lang),
    };
    let next = next_page(&mut items, "/inbox", |i| Cursor::after_event(i.notice.at, &i.notice.id));
    let items: Vec<InboxRow> = items
        .iter()
        .map(|item| {
            let n = &item.notice;
            let text = n
                .text
                .get(lang)
                .or_else(|| n.text.get(DEFAULT_LANG))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let workflow = state
                .runtime
                .registry
                .latest(&n.workflow)
                .map(|w| localize(&w.def.title, lang).to_string())
                .unwrap_or_else(|| n.workflow.clone());
            InboxRow {
                id: n.id.clone(),
                text: text.to_string(),
                workflow,
                at: n.at,
                read: item.read,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        lang,
        viewer.frame("inbox"),
        &Inbox { items, more: next },
    )
}

/// Open one notification: it is read now, and its instance is what it is about.
pub async fn open(State(state): State<AppState>, viewer: Viewer, Path(id): Path<String>) -> Response {
    let now = state.runtime.now();
    match state
        .runtime
        .store
        .open_notification(&viewer.actor.person, &id, now)
        .await
    {
        Ok(Some(instance)) => see_other(&format!("/instances/{instance}")),
        Ok(None) => Page::not_found(viewer.lang),
        Err(e) => error_page(e, viewer.lang),
    }
}

pub async fn read_all(
    State(state): State<AppState>,
    viewer: Viewer,
    super::PagePost(axum::Form(form)): super::PagePost<axum::Form<super::session::CsrfOnly>>,
) -> Response {
    if let Err(refused) = viewer.check_csrf(form.csrf.as_deref()) {
        return refused;
    }
    match state
        .runtime
        .store
        .mark_all_read(&viewer.actor.person, state.runtime.now())
        .await
    {
        Ok(_) => see_other("/inbox"),
        Err(e) => error_page(e, viewer.lang),
    }
}
