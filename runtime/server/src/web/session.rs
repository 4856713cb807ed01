//! Browser sign-in: password (argon2id) or a one-time code, a session cookie (HttpOnly,
//! Secure, SameSite=Lax), a CSRF token in every form, and a cap on failed attempts per
//! account and per address.

use super::views::{Frame, SignIn};
use super::{Page, render, see_other};
use crate::AppState;
use crate::i18n::{self, text};
use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use chrono::Duration;
use civicflow_engine::Actor;
use civicflow_store::accounts::Profile;
use serde::Deserialize;
use std::net::SocketAddr;

pub const SESSION_COOKIE: &str = "cf_session";
pub const LANG_COOKIE: &str = "cf_lang";
const SESSION_HOURS: i64 = 12;
const CODE_MINUTES: i64 = 10;
/// Sign-in attempts allowed per window, per account and per client address (a successful
/// sign-in gives its account's back, and its address's one).
const WINDOW_MINUTES: i64 = 15;
const ATTEMPTS_PER_ACCOUNT: i64 = 5;
const ATTEMPTS_PER_ADDRESS: i64 = 30;
/// The most of a sign-in name shown back on the page.
const MAX_LOGIN_CHARS: usize = 64;

/// The signed-in person behind a page request, with the language to answer in.
pub struct Viewer {
    pub actor: Actor,
    pub profile: Profile,
    pub csrf: String,
    pub lang: &'static str,
    /// Notifications not yet opened, shown in the header of every page.
    pub unread: i64,
}

/// The language for a request: `?lang=`, then the person's setting (signed in), then the
/// `cf_lang` cookie (chosen before signing in), then `Accept-Language`, then zh-CN.
pub fn language(parts: &Parts, jar: &CookieJar, setting: Option<&str>) -> &'static str {
    asked_language(parts)
        .or_else(|| setting.and_then(i18n::supported))
        .or_else(|| jar.get(LANG_COOKIE).and_then(|c| i18n::supported(c.value())))
        .or_else(|| {
            parts
                .headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(i18n::from_accept_language)
        })
        .unwrap_or(i18n::DEFAULT_LOCALE)
}

/// A supported language asked for with `?lang=`.
fn asked_language(parts: &Parts) -> Option<&'static str> {
    let query = parts.uri.query()?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("lang="))
        .and_then(i18n::supported)
}

/// Where a page request without a session is sent: the sign-in page, then back.
pub struct SignInFirst(String);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        let next: String = form_urlencoded::byte_serialize(self.0.as_bytes()).collect();
        Redirect::to(&format!("/login?next={next}")).into_response()
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let here = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
        let store = &state.runtime.store;
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Err(SignInFirst(here).into_response());
        };
        let session = match store.session(cookie.value(), state.runtime.now()).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(SignInFirst(here).into_response()),
            Err(e) => return Err(super::error_page(e, i18n::DEFAULT_LOCALE)),
        };
        let loaded = async {
            Ok::<_, civicflow_store::StoreError>((
                store.profile(&session.person).await?,
                store.actor(&session.person).await?,
                store.unread_count(&session.person).await?,
            ))
        };
        let (profile, actor, unread) = match loaded.await {
            Ok(found) => found,
            // The session's person is gone from the register: sign in again.
            Err(civicflow_store::StoreError::NotFound(_)) => return Err(SignInFirst(here).into_response()),
            Err(e) => return Err(super::error_page(e, i18n::DEFAULT_LOCALE)),
        };
        let lang = language(parts, &jar, profile.locale.as_deref());
        // A language chosen on a page becomes the person's setting (notifications use it).
        if asked_language(parts).is_some() && profile.locale.as_deref() != Some(lang) {
            // Only a preference: the page still shows in the chosen language if this fails.
            if let Err(e) = store.set_locale(&profile.id, lang).await {
                tracing::warn!(error = %e, "language setting not saved");
            }
        }
        Ok(Viewer {
            actor,
            profile,
            csrf: session.csrf,
            lang,
            unread,
        })
    }
}

impl Viewer {
    /// What every signed-in page shows around it, `nav` being its menu item: who is
    /// signed in, the session's CSRF token for its forms, and the unread count.
    pub fn frame(&self, nav: &'static str) -> Frame {
        Frame {
            viewer: Some(self.profile.name.clone()),
            csrf: Some(self.csrf.clone()),
            unread: self.unread,
            admin: crate::admin::is_admin(&self.actor),
            nav,
            notice: None,
        }
    }

    /// Refuse a form whose CSRF token is not this session's.
    #[allow(clippy::result_large_err)] // a page is the error; it goes straight back to the browser
    pub fn check_csrf(&self, posted: Option<&str>) -> Result<(), Response> {
        let ok = posted.is_some_and(|p| constant_time_eq(p.as_bytes(), self.csrf.as_bytes()));
        if ok {
            Ok(())
        } else {
            Err(Page::message(StatusCode::FORBIDDEN, self.lang, "csrf-failed"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The language of a page nobody is signed in to.
pub struct Lang(pub &'static str);

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        Ok(Lang(language(parts, &jar, None)))
    }
}

#[derive(Deserialize, Default)]
pub struct SignInQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Deserialize)]
pub struct SignInForm {
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    /// `password`, `send_code` or `code`.
    action: String,
    #[serde(default)]
    next: String,
}

/// Only same-site paths are followed after sign-in: a path of visible ASCII (browsers drop
/// tabs and newlines from a `Location` and read `\` as `/`, so `/\t/evil.example` would
/// leave the site) that does not start with two slashes.
fn safe_next(next: &str) -> &str {
    let visible = next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if visible && next.starts_with('/') && !next.starts_with("//") {
        next
    } else {
        "/tasks"
    }
}

struct SignInPage<'a> {
    lang: &'a str,
    login: &'a str,
    next: &'a str,
    codes: bool,
}

impl SignInPage<'_> {
    fn show(&self, status: StatusCode, error: Option<String>, notice: Option<String>) -> Response {
        let frame = Frame {
            notice,
            ..Frame::default()
        };
        let page = SignIn {
            login: self.login,
            next: self.next,
            error,
            code_sign_in: self.codes,
        };
        render(status, self.lang, frame, &page)
    }
}

pub async fn sign_in_form(
    State(state): State<AppState>,
    Lang(lang): Lang,
    Query(q): Query<SignInQuery>,
    jar: CookieJar,
) -> Response {
    let jar = remember_language(jar, q.lang.as_deref());
    let page = SignInPage {
        lang,
        login: "",
        next: safe_next(q.next.as_deref().unwrap_or("")),
        codes: state.log_sign_in_codes,
    };
    (jar, page.show(StatusCode::OK, None, None)).into_response()
}

/// A `?lang=` choice kept in a cookie for pages before sign-in.
fn remember_language(jar: CookieJar, lang: Option<&str>) -> CookieJar {
    match lang.and_then(i18n::supported) {
        Some(l) => jar.add(
            Cookie::build((LANG_COOKIE, l))
                .path("/")
                .same_site(SameSite::Lax)
                .max_age(time::Duration::days(365))
                .build(),
        ),
        None => jar,
    }
}

pub async fn sign_in(
    State(state): State<AppState>,
    Lang(lang): Lang,
    jar: CookieJar,
    headers: HeaderMap,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    super::PagePost(Form(form)): super::PagePost<Form<SignInForm>>,
) -> Response {
    // What is shown back in the form: a sign-in name is short.
    let shown: String = form.login.chars().take(MAX_LOGIN_CHARS).collect();
    let page = SignInPage {
        lang,
        login: &shown,
        next: safe_next(&form.next),
        codes: state.log_sign_in_codes,
    };
    if !same_origin(&headers) {
        return Page::message(StatusCode::FORBIDDEN, lang, "csrf-failed");
    }
    let store = &state.runtime.store;
    let now = state.runtime.now();
    // Behind a proxy every client shares its address; the per-account cap still holds.
    let address = format!(
        "ip:{}",
        connect
            .map(|c| c.0.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into())
    );
    let person = match store.find_login(&form.login).await {
        Ok(p) => p,
        Err(e) => return super::error_page(e, lang),
    };
    // Unknown accounts are counted under a digest of the name (never the text itself, which
    // a stranger chooses), so probing names is throttled too.
    let account = match &person {
        Some(p) => format!("person:{p}"),
        None => format!("login:{}", &civicflow_store::accounts::digest(form.login.trim())[..32]),
    };
    // Every attempt takes one of its account's and its address's before anything is checked,
    // so sixty simultaneous guesses are not all checked against a cap of five.
    let window = Duration::minutes(WINDOW_MINUTES);
    for (subject, cap) in [(&account, ATTEMPTS_PER_ACCOUNT), (&address, ATTEMPTS_PER_ADDRESS)] {
        match store.take_sign_in_attempt(subject, cap, window, now).await {
            Ok(Some(until)) => {
                let wait = (until - now).num_minutes().max(0) + 1;
                tracing::warn!(subject = %subject, "sign-in throttled");
                let message = text(lang, "sign-in-throttled", &[("minutes", wait.into())]);
                let mut page = page.show(StatusCode::TOO_MANY_REQUESTS, Some(message), None);
                page.headers_mut().insert(header::RETRY_AFTER, (wait * 60).into());
                return page;
            }
            Ok(None) => {}
            Err(e) => return super::error_page(e, lang),
        }
    }
    let verdict = match (form.action.as_str(), &person) {
        ("send_code" | "code", _) if !page.codes => Ok((false, "sign-in-failed")),
        ("send_code", _) => {
            // Each code asked for took an attempt of the account and the address above, so
            // nobody can flood a phone; unknown accounts count alike and get the same answer.
            if let Some(p) = &person {
                match store.issue_sign_in_code(p, now, Duration::minutes(CODE_MINUTES)).await {
                    // Demo mode's delivery: the server log. A deployment wires an SMS gateway here.
                    Ok(code) => tracing::info!(person = %p, code = %code, "one-time sign-in code"),
                    Err(e) => return super::error_page(e, lang),
                }
            }
            return page.show(StatusCode::OK, None, Some(text(lang, "sign-in-code-sent", &[])));
        }
        ("code", Some(p)) => store
            .redeem_sign_in_code(p, &form.code, now)
            .await
            .map(|ok| (ok, "sign-in-code-failed")),
        ("password", _) => store
            .check_password(person.as_deref(), &form.password)
            .await
            .map(|ok| (ok, "sign-in-failed")),
        ("code", None) => Ok((false, "sign-in-code-failed")),
        _ => Ok((false, "sign-in-failed")),
    };
    let (ok, failure) = match verdict {
        Ok(v) => v,
        Err(e) => return super::error_page(e, lang),
    };
    let person = match (ok, person) {
        (true, Some(p)) => p,
        _ => {
            tracing::info!(account = %account, "sign-in refused");
            let message = text(lang, failure, &[]);
            return page.show(StatusCode::UNAUTHORIZED, Some(message), None);
        }
    };
    if let Err(e) = store.signed_in(&account, &address, now - window).await {
        return super::error_page(e, lang);
    }
    let (cookie, _) = match store.create_session(&person, now, Duration::hours(SESSION_HOURS)).await {
        Ok(s) => s,
        Err(e) => return super::error_page(e, lang),
    };
    // A language picked on the sign-in page becomes the person's setting.
    if let Some(chosen) = jar.get(LANG_COOKIE).and_then(|c| i18n::supported(c.value()))
        && let Err(e) = store.set_locale(&person, chosen).await
    {
        return super::error_page(e, lang);
    }
    tracing::info!(person = %person, "signed in");
    let jar = jar.add(
        Cookie::build((SESSION_COOKIE, cookie))
            .path("/")
            .http_only(true)
            .secure(state.secure_cookies)
            .same_site(SameSite::Lax)
            .max_age(time::Duration::hours(SESSION_HOURS))
            .build(),
    );
    (jar, see_other(page.next)).into_response()
}

/// A form that posts nothing but the session's CSRF token (sign out, claim, withdraw,
/// mark read).
#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(rename = "_csrf", default)]
    pub csrf: Option<String>,
}

pub async fn sign_out(
    State(state): State<AppState>,
    viewer: Viewer,
    jar: CookieJar,
    super::PagePost(Form(form)): super::PagePost<Form<CsrfOnly>>,
) -> Response {
    if let Err(refused) = viewer.check_csrf(form.csrf.as_deref()) {
        return refused;
    }
    if let Some(c) = jar.get(SESSION_COOKIE)
        && let Err(e) = state.runtime.store.end_session(c.value()).await
    {
        return super::error_page(e, viewer.lang);
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    (jar, see_other("/login")).into_response()
}

/// A form post from another site (login CSRF) is refused: browsers send `Origin` on POST.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_same_site_paths_are_followed_after_sign_in() {
        for ok in ["/tasks", "/i/0190?tab=log", "/done?after=1%2C2"] {
            assert_eq!(safe_next(ok), ok);
        }
        for off_site in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "https://evil.example",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_next(off_site), "/tasks", "{off_site:?}");
        }
    }
}
