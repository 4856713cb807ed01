//! On-site check-in: the organiser's screen shows a QR code that opens the check-in task on
//! a volunteer's phone (its own camera is the scanner), redrawn before the code expires; and
//! withdrawing one's own sign-up.

use super::session::Viewer;
use super::views::CheckInCode;
use super::{Page, error_page, render, see_other};
use crate::AppState;
use crate::error::AppError;
use crate::i18n::text;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use civicflow_engine::definition::localize;
use civicflow_engine::{EngineError, TaskStatus};
use civicflow_store::StoreError;

/// Redraw this long before the code expires, so a phone never scans a code about to lapse.
const REDRAW_BEFORE_SECS: i64 = 20;

pub async fn code_screen(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((id, at)): Path<(String, String)>,
) -> Response {
    let lang = viewer.lang;
    let runtime = &state.runtime;
    let (code, expires) = match runtime.check_in_code(&viewer.profile.id, &id, &at).await {
        Ok(c) => c,
        // Not theirs to show, or no such state: as for any page out of scope.
        Err(StoreError::Engine(EngineError::Forbidden(_)) | StoreError::Invalid(_) | StoreError::NotFound(_)) => {
            return Page::not_found(lang);
        }
        Err(StoreError::Engine(EngineError::Gone(_))) => {
            return Page::message(StatusCode::CONFLICT, lang, "checkin-not-now");
        }
        Err(e) => return error_page(e, lang),
    };
    let (instance, tasks) = match (
        runtime.store.instance(&id).await,
        runtime.store.instance_tasks(&id).await,
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => return error_page(e, lang),
    };
    let Some(task) = tasks
        .iter()
        .find(|t| t.status == TaskStatus::Open && t.task.state == at)
    else {
        return Page::message(StatusCode::CONFLICT, lang, "checkin-not-now");
    };
    let wf = match runtime.registry.for_instance(&instance) {
        Ok(wf) => wf,
        Err(e) => return error_page(e, lang),
    };
    // The link the phone opens: this server as the organiser's browser reached it.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.secure_cookies && !host.starts_with("localhost") && !host.starts_with("127.") {
        "https"
    } else {
        "http"
    };
    let link = format!("{scheme}://{host}/tasks/{}?code={code}", task.task.id);
    let svg = match qrcode::QrCode::new(link.as_bytes()) {
        Ok(qr) => qr
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(280, 280)
            .quiet_zone(true)
            .build(),
        Err(e) => return AppError::internal(e).page(lang),
    };
    let left = (expires - runtime.now()).num_seconds();
    let page = CheckInCode {
        title: super::pages::brief(&wf, &instance.data, lang),
        state: wf
            .state(&at)
            .and_then(|s| s.title.as_ref())
            .map(|t| localize(t, lang).to_string()),
        qr: svg,
        link,
        instance: id,
        expires: civicflow_engine::time::canonical(expires),
        refresh: (left - REDRAW_BEFORE_SECS).max(5),
        minutes: text(lang, "checkin-valid-for", &[("seconds", left.max(0).into())]),
    };
    render(StatusCode::OK, lang, viewer.frame(""), &page)
}

/// Take back my entry (a sign-up) while the state still allows it.
pub async fn withdraw(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(task): Path<String>,
    super::PagePost(axum::Form(form)): super::PagePost<axum::Form<super::session::CsrfOnly>>,
) -> Response {
    if let Err(r) = viewer.check_csrf(form.csrf.as_deref()) {
        return r;
    }
    match state.runtime.withdraw(&viewer.profile.id, &task).await {
        Ok(applied) => see_other(&format!("/instances/{}?done=1", applied.instance.id)),
        Err(e) => error_page(e, viewer.lang),
    }
}
