//! Server-rendered pages for end users: sign-in, task lists, generated forms, instance
//! timelines. Templates, catalogues and the stylesheet come from `admin-ui/`, embedded in
//! the binary, so `cargo run` is the whole install.

mod admin_filters;
mod audit;
mod charts;
mod checkin;
mod dashboard;
pub mod forms;
mod inbox;
mod pages;
pub mod session;
mod timeline;
mod views;

use crate::error::AppError;
use crate::i18n::text;
use crate::{AppState, body_limits};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{Environment, State as JState};
use serde::Serialize;
use std::sync::LazyLock;
use views::{Frame, Message, View};

const TEMPLATES: [(&str, &str); 11] = [
    ("base.html", include_str!("../../../../admin-ui/templates/base.html")),
    (
        "fields.html",
        include_str!("../../../../admin-ui/templates/fields.html"),
    ),
    ("login.html", include_str!("../../../../admin-ui/templates/login.html")),
    ("tasks.html", include_str!("../../../../admin-ui/templates/tasks.html")),
    ("form.html", include_str!("../../../../admin-ui/templates/form.html")),
    (
        "instance.html",
        include_str!("../../../../admin-ui/templates/instance.html"),
    ),
    ("inbox.html", include_str!("../../../../admin-ui/templates/inbox.html")),
    ("code.html", include_str!("../../../../admin-ui/templates/code.html")),
    (
        "message.html",
        include_str!("../../../../admin-ui/templates/message.html"),
    ),
    ("audit.html", include_str!("../../../../admin-ui/templates/audit.html")),
    (
        "dashboard.html",
        include_str!("../../../../admin-ui/templates/dashboard.html"),
    ),
];
const STYLESHEET: &str = include_str!("../../../../admin-ui/static/app.css");
const SCRIPT: &str = include_str!("../../../../admin-ui/static/app.js");
const ICON: &str = include_str!("../../../../admin-ui/static/icon.svg");

pub use crate::body_limits::UPLOAD as MAX_UPLOAD_BYTES;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A key a template names that its page does not give is an error (a 500 and a failing
    // test), not a blank: every page context is a typed struct that always has its keys.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("admin-ui/templates/{name}: {e}"));
    }
    env.add_function("t", translate);
    env.add_filter("when", when);
    env
});

/// `{{ t("message-id", name=value) }}` in the page's language (`lang` in the context).
fn translate(state: &JState, id: &str, args: Kwargs) -> String {
    let lang = state.lookup("lang").map(|l| l.to_string()).unwrap_or_default();
    let values: Vec<(String, fluent_bundle::FluentValue)> = args
        .args()
        .map(|k| {
            let v: JValue = args.peek(k).unwrap_or_default();
            let fv = match v.as_i64() {
                Some(n) => fluent_bundle::FluentValue::from(n),
                None => fluent_bundle::FluentValue::from(v.to_string()),
            };
            (k.to_string(), fv)
        })
        .collect();
    let refs: Vec<(&str, fluent_bundle::FluentValue)> = values.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    text(&lang, id, &refs)
}

/// `{{ time|when }}` in the page's language.
fn when(state: &JState, value: &str) -> String {
    let lang = state.lookup("lang").map(|l| l.to_string()).unwrap_or_default();
    people_time(value, &lang, chrono::Utc::now())
}

/// A stored time (RFC 3339, UTC) as people read it, in China Standard Time (the one time
/// zone of the people these pages serve): `12月3日 14:00` this year, `2025年12月3日 14:00`
/// another; `3 Dec 14:00` / `3 Dec 2025 14:00` in English. Short enough not to wrap on a
/// phone; the full instant stays in the `<time datetime>` attribute.
pub(crate) fn people_time(value: &str, lang: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Datelike;
    let zone = civicflow_engine::time::DEFAULT_TIME_ZONE;
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) else {
        return value.to_string();
    };
    let t = t.with_timezone(&zone);
    let this_year = t.year() == now.with_timezone(&zone).year();
    let format = match (lang, this_year) {
        ("en", true) => "%-d %b %H:%M",
        ("en", false) => "%-d %b %Y %H:%M",
        (_, true) => "%-m月%-d日 %H:%M",
        (_, false) => "%Y年%-m月%-d日 %H:%M",
    };
    t.format(format).to_string()
}

/// Render `view` in its template inside `frame`, in `lang`.
pub fn render<V: View>(status: StatusCode, lang: &str, frame: Frame, view: &V) -> Response {
    #[derive(Serialize)]
    struct Whole<'a, V> {
        lang: &'a str,
        #[serde(flatten)]
        frame: Frame,
        #[serde(flatten)]
        view: &'a V,
    }
    let ctx = JValue::from_serialize(Whole { lang, frame, view });
    match ENV.get_template(V::TEMPLATE).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            let e = AppError::internal(format!("{} failed to render: {e:#}", V::TEMPLATE));
            if V::TEMPLATE == Message::TEMPLATE {
                (StatusCode::INTERNAL_SERVER_ERROR, e.message).into_response()
            } else {
                e.page(lang)
            }
        }
    }
}

/// A page that only says something: not found, refused, failed.
pub struct Page;

impl Page {
    pub fn message(status: StatusCode, lang: &str, message_id: &str) -> Response {
        Self::saying(status, lang, text(lang, message_id, &[]))
    }

    /// A page with `message`, already in the reader's language.
    pub fn saying(status: StatusCode, lang: &str, message: String) -> Response {
        render(status, lang, Frame::default(), &Message { message })
    }

    pub fn not_found(lang: &str) -> Response {
        Self::message(StatusCode::NOT_FOUND, lang, "page-not-found")
    }

    /// A post the server would not read: over its route's limit, or not a form.
    pub fn refused_body(status: StatusCode, lang: &str) -> Response {
        let message_id = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "page-too-large"
        } else {
            "page-unreadable"
        };
        Self::message(status, lang, message_id)
    }
}

/// A page post's body (`Form`, `Multipart`) whose refusal is a page in the reader's
/// language (their `?lang=`, cookie or browser's), not the extractor's plain text.
pub struct PagePost<E>(pub E);

impl<S, E> axum::extract::FromRequest<S> for PagePost<E>
where
    S: Send + Sync,
    E: axum::extract::FromRequest<S>,
    E::Rejection: IntoResponse,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let jar = axum_extra::extract::CookieJar::from_headers(&parts.headers);
        let lang = session::language(&parts, &jar, None);
        let req = axum::extract::Request::from_parts(parts, body);
        E::from_request(req, state)
            .await
            .map(PagePost)
            .map_err(|r| Page::refused_body(r.into_response().status(), lang))
    }
}

/// A store or engine error as a page in `lang`, as `crate::error` classifies it.
pub fn error_page(e: impl Into<AppError>, lang: &str) -> Response {
    e.into().page(lang)
}

/// After a form post: go to `to` with a GET (303).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { see_other("/tasks") }))
        .route("/login", get(session::sign_in_form).post(session::sign_in))
        .route("/logout", post(session::sign_out))
        .route("/tasks", get(pages::task_list))
        .route(
            "/tasks/{id}",
            get(pages::task_form).post(pages::task_submit).layer(with_files()),
        )
        .route("/tasks/{id}/claim", post(pages::task_claim))
        .route("/tasks/{id}/withdraw", post(checkin::withdraw))
        .route("/instances/{id}/code/{state}", get(checkin::code_screen))
        .route("/start", get(pages::start_list))
        .route(
            "/start/{workflow}",
            get(pages::start_form).post(pages::start_submit).layer(with_files()),
        )
        .route("/mine", get(pages::mine))
        .route("/done", get(pages::done))
        .route("/admin/audit", get(audit::audit_page))
        .route("/admin/dashboard", get(dashboard::dashboard))
        .route("/admin/dashboard.csv", get(dashboard::dashboard_csv))
        .route("/admin/dashboard.xlsx", get(dashboard::dashboard_xlsx))
        .route("/admin/audit/verify", post(audit::verify))
        .route("/inbox", get(inbox::inbox))
        .route("/inbox/read-all", post(inbox::read_all))
        .route("/inbox/{id}", get(inbox::open))
        .route("/instances/{id}", get(pages::instance_page))
        .route("/attachments/{sha}", get(pages::attachment))
        .route(
            "/static/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET) }),
        )
        .route(
            "/static/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }),
        )
        // Browsers ask for /favicon.ico whatever the page links; both answer the one icon.
        .route("/static/icon.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .layer(DefaultBodyLimit::max(body_limits::SMALL_FORM))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The start and task forms carry files; every other page form is small.
fn with_files() -> DefaultBodyLimit {
    DefaultBodyLimit::max(body_limits::FORM_WITH_FILES)
}

/// What every page tells the browser: run only this site's own script and style, load
/// images from here (attachments, the QR code inline), never be framed (a framed 提交
/// button is clickjacking), do not guess content types, and send no path to other sites.
const PAGE_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
];

async fn security_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in PAGE_HEADERS {
        response
            .headers_mut()
            .entry(name)
            .or_insert(header::HeaderValue::from_static(value));
    }
    response
}

async fn icon() -> impl axum::response::IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        ICON,
    )
}

#[cfg(test)]
mod tests {
    use super::people_time;

    #[test]
    fn times_read_as_people_say_them_in_china_time() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
            .unwrap()
            .to_utc();
        let t = "2026-12-03T06:00:00.000Z";
        assert_eq!(people_time(t, "zh-CN", now), "12月3日 14:00");
        assert_eq!(people_time(t, "en", now), "3 Dec 14:00");
        // New Year's Eve in UTC is already 1 January in Beijing: the year is Beijing's.
        let last_year = "2025-12-31T17:30:00Z";
        assert_eq!(people_time(last_year, "zh-CN", now), "1月1日 01:30");
        assert_eq!(people_time("2025-05-01T02:00:00Z", "zh-CN", now), "2025年5月1日 10:00");
        assert_eq!(people_time("not a time", "zh-CN", now), "not a time");
    }
}

#[cfg(test)]
mod strict_rendering {
    use super::views::{Frame, Message, View};
    use super::{StatusCode, render};
    use serde::Serialize;

    /// `message.html`'s view with its key renamed, as a careless edit would leave it.
    #[derive(Serialize)]
    struct Renamed {
        text: String,
    }

    impl View for Renamed {
        const TEMPLATE: &'static str = "message.html";
    }

    #[test]
    fn a_key_the_template_names_and_the_page_lacks_fails_instead_of_rendering_blank() {
        let renamed = render(StatusCode::OK, "zh-CN", Frame::default(), &Renamed { text: "x".into() });
        assert_eq!(renamed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let right = render(
            StatusCode::OK,
            "zh-CN",
            Frame::default(),
            &Message { message: "x".into() },
        );
        assert_eq!(right.status(), StatusCode::OK);
    }
}
