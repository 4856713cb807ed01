//! What each template is given: one struct per page and per row, so every key a template
//! names is a field the compiler knows. Rendering is strict (mod.rs): a template naming a
//! key its page does not have fails the page tests instead of rendering blank. Optional
//! values are `Option`s, which templates see as `none`, never as missing.

use super::forms::{Field, SummaryItem};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// A page: its template and what fills it.
pub trait View: Serialize {
    const TEMPLATE: &'static str;
}

/// What base.html shows around every page: who is signed in (nobody on the sign-in page
/// or a message), the session's CSRF token for its forms, the unread count, which menu
/// item is this page, and a notice after an action.
#[derive(Serialize, Default)]
pub struct Frame {
    pub viewer: Option<String>,
    pub csrf: Option<String>,
    pub unread: i64,
    /// The viewer administers a unit: the menu offers the admin pages.
    pub admin: bool,
    pub nav: &'static str,
    pub notice: Option<String>,
}

/// A page that only says something.
#[derive(Serialize)]
pub struct Message {
    pub message: String,
}

impl View for Message {
    const TEMPLATE: &'static str = "message.html";
}

#[derive(Serialize)]
pub struct SignIn<'a> {
    pub login: &'a str,
    pub next: &'a str,
    pub error: Option<String>,
    /// Offer sign-in by a code sent to the person (the demo logs the code).
    pub code_sign_in: bool,
}

impl View for SignIn<'_> {
    const TEMPLATE: &'static str = "login.html";
}

/// 待办: my tasks and the pool I may claim from, with the list's filters.
#[derive(Serialize)]
pub struct TaskList<'a> {
    pub mine: Vec<TaskRow>,
    pub pool: Vec<TaskRow>,
    /// Workflow id → title, and unit id → name: the filters' choices.
    pub workflows: BTreeMap<&'a str, String>,
    pub units: BTreeMap<&'a str, String>,
    pub total: i64,
    pub more: Option<String>,
    pub filter: TaskFilter,
}

impl View for TaskList<'_> {
    const TEMPLATE: &'static str = "tasks.html";
}

#[derive(Serialize)]
pub struct TaskFilter {
    pub workflow: Option<String>,
    pub unit: Option<String>,
}

#[derive(Serialize)]
pub struct TaskRow {
    pub id: String,
    pub instance: String,
    pub title: String,
    pub number: Option<String>,
    pub brief: String,
    pub workflow: String,
    pub unit: String,
    pub role: Option<String>,
    pub claimed_by: Option<String>,
    pub due: String,
    pub overdue: bool,
    pub due_at: Option<DateTime<Utc>>,
}

/// 发起: the workflows I may start.
#[derive(Serialize)]
pub struct StartList {
    pub startable: Vec<Startable>,
}

impl View for StartList {
    const TEMPLATE: &'static str = "tasks.html";
}

#[derive(Serialize)]
pub struct Startable {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
}

/// 我发起的 and 已办: instances, newest first.
#[derive(Serialize)]
pub struct InstanceList {
    pub started: Vec<InstanceRow>,
    pub more: Option<String>,
}

impl View for InstanceList {
    const TEMPLATE: &'static str = "tasks.html";
}

#[derive(Serialize)]
pub struct InstanceRow {
    pub id: String,
    pub workflow: String,
    pub number: Option<String>,
    pub brief: Option<String>,
    /// Where it stands: the titles of its active states.
    pub states: Vec<String>,
    pub status: String,
    pub finished: bool,
    pub unit: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Under 已办: what I did there, when, and what I entered.
    pub did: Option<String>,
    pub did_at: Option<DateTime<Utc>>,
    pub entered: Option<String>,
}

/// A start or task form.
#[derive(Serialize)]
pub struct Form {
    pub title: String,
    pub action: String,
    pub fields: Vec<Field>,
    pub summary: Vec<SummaryItem>,
    /// Units to start in (start forms only) as (id, name), with the chosen one.
    pub units: Vec<(String, String)>,
    pub unit: String,
    /// The idempotency key the form posts back, so a resubmission is one action.
    pub key: String,
    pub instance: Option<String>,
    /// What the task is about: the start form as filled in (tasks only).
    pub context: Vec<Field>,
    pub needs_code: bool,
    pub code: Option<String>,
    pub max_mb: usize,
}

impl View for Form {
    const TEMPLATE: &'static str = "form.html";
}

/// One instance: where it stands, its open tasks and its timeline.
#[derive(Serialize)]
pub struct InstancePage {
    pub title: String,
    pub brief: String,
    pub number: Option<String>,
    pub id: String,
    pub status: String,
    pub unit: String,
    pub created_at: DateTime<Utc>,
    /// The version it started with and each locality's changes it runs with.
    pub composition: Vec<String>,
    pub open: Vec<OpenTask>,
    pub timeline: Vec<TimelineLine>,
}

impl View for InstancePage {
    const TEMPLATE: &'static str = "instance.html";
}

#[derive(Serialize)]
pub struct OpenTask {
    pub id: String,
    pub state: String,
    pub title: String,
    pub who: String,
    pub due: String,
    pub overdue: bool,
    /// The viewer may act on it (and has not entered it already).
    pub mine: bool,
    pub claim: bool,
    pub shows_code: bool,
    pub places: Option<String>,
    pub withdraw: bool,
}

/// One thing someone did, the form it carried, and what it caused beneath it.
#[derive(Serialize)]
pub struct TimelineLine {
    pub at: DateTime<Utc>,
    pub text: String,
    pub details: Vec<Field>,
    pub then: Vec<String>,
}

/// 消息: notifications, newest first.
#[derive(Serialize)]
pub struct Inbox {
    pub items: Vec<InboxRow>,
    pub more: Option<String>,
}

impl View for Inbox {
    const TEMPLATE: &'static str = "inbox.html";
}

#[derive(Serialize)]
pub struct InboxRow {
    pub id: String,
    pub text: String,
    pub workflow: String,
    pub at: DateTime<Utc>,
    pub read: bool,
}

/// The organiser's check-in code, redrawn before it expires.
#[derive(Serialize)]
pub struct CheckInCode {
    pub title: String,
    pub state: Option<String>,
    /// The QR code as SVG markup.
    pub qr: String,
    pub link: String,
    pub instance: String,
    pub expires: String,
    /// Seconds until the page reloads with a fresh code.
    pub refresh: i64,
    pub minutes: String,
}

impl View for CheckInCode {
    const TEMPLATE: &'static str = "code.html";
}

/// A choice of a filter: what is sent, and what people read.
#[derive(Serialize)]
pub struct Choice {
    pub id: String,
    pub name: String,
}

/// 事件日志: events of the admin's subtrees, newest first, with the filters in force.
#[derive(Serialize)]
pub struct AuditPage {
    pub rows: Vec<AuditRow>,
    /// What admins changed there (first page only: the newest of the filter's window).
    pub changes: Vec<AdminRow>,
    pub more: Option<String>,
    /// Why the filters could not be used (a day that is not one, nobody of that name).
    pub problems: Vec<String>,
    pub units: Vec<Choice>,
    pub workflows: Vec<Choice>,
    pub unit: Option<String>,
    pub person: Option<String>,
    pub workflow: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl View for AuditPage {
    const TEMPLATE: &'static str = "audit.html";
}

#[derive(Serialize)]
pub struct AuditRow {
    pub at: DateTime<Utc>,
    pub who: String,
    pub text: String,
    pub workflow: String,
    pub unit: String,
    /// The instance's number: the log is read here, not by opening instances (an admin
    /// reads a unit's log, not its residents' cases; Scope grants no more).
    pub number: Option<String>,
}

/// An admin's change: publishing, rolling back, binding, uploading.
#[derive(Serialize)]
pub struct AdminRow {
    pub at: DateTime<Utc>,
    pub who: String,
    pub text: String,
    pub unit: String,
}

/// One line of a table of figures: what, and how many as people read it; `number` is the
/// figure itself for a spreadsheet (a count, or a rate as a fraction when `rate`).
#[derive(Serialize)]
pub struct Row {
    pub label: String,
    pub value: String,
    pub number: Option<f64>,
    pub rate: bool,
}

/// 统计: one workflow's figures over the admin's units and a span of days.
#[derive(Serialize)]
pub struct Dashboard {
    pub headline: Vec<Row>,
    /// Started per category (when the workflow names one), most first.
    pub categories: Vec<Row>,
    pub categories_chart: Option<String>,
    pub weeks: Vec<Row>,
    pub overdue: Vec<Row>,
    /// The same figures drawn (SVG), none where there is nothing to draw.
    pub closure_chart: Option<String>,
    pub weeks_chart: Option<String>,
    pub overdue_chart: Option<String>,
    pub workflows: Vec<Choice>,
    pub units: Vec<Choice>,
    pub workflow: String,
    pub unit: Option<String>,
    pub from: String,
    pub to: String,
    /// The same figures as CSV and as a workbook.
    pub csv: String,
    pub xlsx: String,
}

impl View for Dashboard {
    const TEMPLATE: &'static str = "dashboard.html";
}
