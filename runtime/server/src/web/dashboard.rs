//! 统计: an admin's figures for one workflow over the units they administer (or one of
//! them) and a span of days: started, closed and the closure rate, the on-time rate, the
//! median time to close, starts per week, and overdue tasks by the unit holding them. The
//! store computes each in SQL (`Store::figures`); this renders them as tables and as CSV.

use super::admin_filters::{day_given, day_start, given, reach, unit_choices, workflow_choices};
use super::pages::{name_of, span_text};
use super::session::Viewer;
use super::views::{Dashboard, Row};
use super::{Page, error_page, render};
use super::{charts, forms};
use crate::AppState;
use crate::error::AppError;
use crate::i18n::text;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, Duration, NaiveDate, Utc};
use civicflow_engine::time::DEFAULT_TIME_ZONE;
use civicflow_store::dashboard::{Figures, Period};
use serde::Deserialize;
use std::collections::HashMap;

/// Days shown when none are chosen: the last four weeks, today included.
const DEFAULT_DAYS: i64 = 28;

#[derive(Deserialize, Default)]
pub struct DashboardQuery {
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    /// Days (China time), both included, as `2026-12-01`.
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// The figures as rows a person reads: (what, how many), in `lang`.
struct Said {
    headline: Vec<Row>,
    /// Started per category, most first: the high-frequency issues.
    categories: Vec<Row>,
    weeks: Vec<Row>,
    overdue: Vec<Row>,
    /// Closed on time, closed late, still open: a pie beside the headline figures.
    closure_chart: Option<String>,
    categories_chart: Option<String>,
    weeks_chart: Option<String>,
    overdue_chart: Option<String>,
}

impl Row {
    fn count(label: String, n: i64) -> Self {
        Row {
            label,
            value: n.to_string(),
            number: Some(n as f64),
            rate: false,
        }
    }

    /// `part` of `whole` as a percentage; "—" when there is no whole.
    fn rate(label: String, part: i64, whole: i64) -> Self {
        let share = (whole > 0).then(|| part as f64 / whole as f64);
        let value = share.map_or_else(|| "—".into(), |s| format!("{:.1}%", s * 100.0));
        Row {
            label,
            value,
            number: share,
            rate: true,
        }
    }

    fn words(label: String, value: String) -> Self {
        Row {
            label,
            value,
            number: None,
            rate: false,
        }
    }
}

/// What the category field's values are called in `lang`: the start form's choices.
fn category_labels(state: &AppState, workflow: &str, lang: &str) -> HashMap<String, String> {
    let Some(wf) = state.runtime.registry.latest(workflow) else {
        return HashMap::new();
    };
    let Some(field) = wf.def.statistics.category.as_deref() else {
        return HashMap::new();
    };
    let form = wf.def.start.form.as_deref().and_then(|f| wf.def.forms.get(f));
    let Some(form) = form else {
        return HashMap::new();
    };
    let ui = form.ui.clone().unwrap_or(serde_json::Value::Null);
    forms::fields(&form.schema, &ui, &serde_json::Value::Null, "", lang)
        .into_iter()
        .find(|f| f.name.trim_start_matches('/') == field)
        .map(|f| f.options.into_iter().map(|o| (o.value, o.label)).collect())
        .unwrap_or_default()
}

async fn say(state: &AppState, workflow: &str, f: &Figures, lang: &str) -> Result<Said, civicflow_store::StoreError> {
    let label = |id: &str| text(lang, id, &[]);
    let median = f
        .median_seconds
        .map_or_else(|| "—".into(), |s| span_text(lang, (s / 60).max(1), false));
    let headline = vec![
        Row::count(label("dashboard-started"), f.started),
        Row::count(label("dashboard-closed"), f.closed),
        Row::rate(label("dashboard-closure-rate"), f.closed, f.started),
        Row::rate(label("dashboard-on-time-rate"), f.closed_on_time, f.closed),
        Row::words(label("dashboard-median"), median),
    ];
    let mut headline = headline;
    if let Some((mean, n)) = f.rating {
        let value = text(
            lang,
            "dashboard-rating-value",
            &[("mean", format!("{mean:.2}").into()), ("count", n.into())],
        );
        headline.push(Row {
            label: label("dashboard-rating"),
            value,
            number: Some(mean),
            rate: false,
        });
    }
    let labels = category_labels(state, workflow, lang);
    let categories: Vec<Row> = f
        .by_category
        .iter()
        .map(|(value, n)| {
            let name = match labels.get(value) {
                Some(l) => l.clone(),
                None if value.is_empty() => label("dashboard-category-none"),
                None => value.clone(),
            };
            Row::count(name, *n)
        })
        .collect();
    let weeks = f
        .by_week
        .iter()
        .map(|(start, n)| {
            let day = start.with_timezone(&DEFAULT_TIME_ZONE).date_naive();
            Row::count(text(lang, "dashboard-week-of", &[("day", day.to_string().into())]), *n)
        })
        .collect();
    let ids: Vec<&str> = f.overdue_by_unit.iter().map(|(u, _)| u.as_str()).collect();
    let names = state.runtime.store.names(&ids, &[]).await?;
    let overdue: Vec<Row> = f
        .overdue_by_unit
        .iter()
        .map(|(u, n)| Row::count(name_of(&names, u, lang), *n))
        .collect();
    let slices: Vec<(String, f32)> = categories
        .iter()
        .zip(&f.by_category)
        .map(|(r, (_, n))| (r.label.clone(), *n as f32))
        .collect();
    let categories_chart = if slices.is_empty() {
        None
    } else {
        charts::pie(&label("dashboard-categories"), &slices)
    };
    Ok(Said {
        categories,
        categories_chart,
        closure_chart: closure_chart(f, lang),
        weeks_chart: weeks_chart(f, lang),
        overdue_chart: overdue_chart(f, &overdue, lang),
        headline,
        weeks,
        overdue,
    })
}

/// Of those started: closed on time, closed late, still open.
fn closure_chart(f: &Figures, lang: &str) -> Option<String> {
    let slices: Vec<(String, f32)> = [
        ("dashboard-slice-on-time", f.closed_on_time),
        ("dashboard-slice-late", f.closed - f.closed_on_time),
        ("dashboard-slice-open", f.started - f.closed),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(id, n)| (text(lang, id, &[]), *n as f32))
    .collect();
    if slices.is_empty() {
        return None;
    }
    charts::pie(&text(lang, "dashboard-figures", &[]), &slices)
}

fn weeks_chart(f: &Figures, lang: &str) -> Option<String> {
    let points: Vec<(String, f32)> = f
        .by_week
        .iter()
        .map(|(start, n)| {
            (
                start.with_timezone(&DEFAULT_TIME_ZONE).format("%m-%d").to_string(),
                *n as f32,
            )
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    let started = text(lang, "dashboard-started", &[]);
    charts::line(&text(lang, "dashboard-weeks", &[]), &started, &points)
}

/// `rows` are the overdue units by name, in the order of `f.overdue_by_unit`.
fn overdue_chart(f: &Figures, rows: &[Row], lang: &str) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let bars: Vec<(String, f32)> = rows
        .iter()
        .zip(&f.overdue_by_unit)
        .map(|(r, (_, n))| (r.label.clone(), *n as f32))
        .collect();
    let series = text(lang, "dashboard-overdue-count", &[]);
    charts::bars(&text(lang, "dashboard-overdue", &[]), &series, &bars)
}

/// The query read: the workflow, the subtrees, the days; `Err` is the answer to give.
async fn read(
    state: &AppState,
    viewer: &Viewer,
    q: &DashboardQuery,
) -> Result<(String, Vec<String>, NaiveDate, NaiveDate), Response> {
    let lang = viewer.lang;
    let units = match reach(state, viewer, given(&q.unit)).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(Page::not_found(lang)),
        Err(e) => return Err(error_page(e, lang)),
    };
    let workflows = workflow_choices(state, lang);
    let workflow = match given(&q.workflow) {
        Some(w) if workflows.iter().any(|c| c.id == w) => w.to_string(),
        Some(_) => return Err(Page::not_found(lang)),
        None => match workflows.first() {
            Some(c) => c.id.clone(),
            None => return Err(Page::not_found(lang)),
        },
    };
    let today = Utc::now().with_timezone(&DEFAULT_TIME_ZONE).date_naive();
    let day = |v: &Option<String>, default: NaiveDate| day_given(v).map(|d| d.unwrap_or(default));
    let days = day(&q.to, today).and_then(|to| Ok((day(&q.from, to - Duration::days(DEFAULT_DAYS - 1))?, to)));
    match days {
        Ok((from, to)) if from <= to => Ok((workflow, units, from, to)),
        Ok(_) => Err(Page::saying(
            StatusCode::UNPROCESSABLE_ENTITY,
            lang,
            text(lang, "dashboard-days-reversed", &[]),
        )),
        Err(bad) => Err(Page::saying(
            StatusCode::UNPROCESSABLE_ENTITY,
            lang,
            text(lang, "audit-bad-day", &[("day", bad.into())]),
        )),
    }
}

async fn figures(
    state: &AppState,
    workflow: &str,
    units: &[String],
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Figures, civicflow_store::StoreError> {
    let start = |d: NaiveDate| day_start(d).unwrap_or_default();
    // Weeks run Monday to Sunday, from the Monday of the first day's week.
    let monday = from - Duration::days(i64::from(from.weekday().num_days_from_monday()));
    let statistics = state
        .runtime
        .registry
        .latest(workflow)
        .map(|wf| wf.def.statistics.clone())
        .unwrap_or_default();
    let period = Period {
        workflow,
        units,
        from: start(from),
        to: start(to + Duration::days(1)),
        weeks_from: start(monday),
        category: statistics.category.as_deref(),
        rating: statistics.rating.as_deref(),
    };
    state.runtime.store.figures(&period, state.runtime.now()).await
}

/// The query read and its figures said: what every rendering of a dashboard starts from.
struct Loaded {
    workflow: String,
    from: NaiveDate,
    to: NaiveDate,
    said: Said,
}

async fn load(state: &AppState, viewer: &Viewer, q: &DashboardQuery) -> Result<Loaded, Response> {
    let lang = viewer.lang;
    let (workflow, units, from, to) = read(state, viewer, q).await?;
    let said = match figures(state, &workflow, &units, from, to).await {
        Ok(f) => say(state, &workflow, &f, lang).await,
        Err(e) => Err(e),
    };
    match said {
        Ok(said) => Ok(Loaded {
            workflow,
            from,
            to,
            said,
        }),
        Err(e) => Err(error_page(e, lang)),
    }
}

/// A file to download, named after the dashboard it holds.
fn download(l: &Loaded, extension: &str, content_type: &str, bytes: Vec<u8>) -> Response {
    let file = format!(
        "attachment; filename=\"{}-{}-{}.{extension}\"",
        l.workflow, l.from, l.to
    );
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, file),
        ],
        bytes,
    )
        .into_response()
}

/// The sections of a dashboard's figures: their title's message id and their rows.
fn sections(said: &Said) -> [(&'static str, &[Row]); 4] {
    [
        ("dashboard-figures", &said.headline),
        ("dashboard-categories", &said.categories),
        ("dashboard-weeks", &said.weeks),
        ("dashboard-overdue", &said.overdue),
    ]
}

pub async fn dashboard(State(state): State<AppState>, viewer: Viewer, Query(q): Query<DashboardQuery>) -> Response {
    let lang = viewer.lang;
    let Loaded {
        workflow,
        from,
        to,
        said,
    } = match load(&state, &viewer, &q).await {
        Ok(l) => l,
        Err(answer) => return answer,
    };
    let unit_list = match unit_choices(&state, &viewer).await {
        Ok(u) => u,
        Err(e) => return error_page(e, lang),
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("workflow", &workflow)
        .append_pair("unit", given(&q.unit).unwrap_or(""))
        .append_pair("from", &from.to_string())
        .append_pair("to", &to.to_string())
        .finish();
    let page = Dashboard {
        headline: said.headline,
        weeks: said.weeks,
        overdue: said.overdue,
        categories: said.categories,
        categories_chart: said.categories_chart,
        closure_chart: said.closure_chart,
        weeks_chart: said.weeks_chart,
        overdue_chart: said.overdue_chart,
        workflows: workflow_choices(&state, lang),
        units: unit_list,
        workflow,
        unit: given(&q.unit).map(str::to_string),
        from: from.to_string(),
        to: to.to_string(),
        csv: format!("/admin/dashboard.csv?{query}"),
        xlsx: format!("/admin/dashboard.xlsx?{query}"),
    };
    render(StatusCode::OK, lang, viewer.frame("dashboard"), &page)
}

/// The same figures as CSV (UTF-8 with a byte-order mark, so spreadsheet programs read the
/// Chinese right): `section,label,value` rows.
pub async fn dashboard_csv(State(state): State<AppState>, viewer: Viewer, Query(q): Query<DashboardQuery>) -> Response {
    let lang = viewer.lang;
    let loaded = match load(&state, &viewer, &q).await {
        Ok(l) => l,
        Err(answer) => return answer,
    };
    let mut out = csv::Writer::from_writer(vec![0xEF, 0xBB, 0xBF]);
    let header = ["dashboard-section", "dashboard-label", "dashboard-value"].map(|id| text(lang, id, &[]));
    let written = out.write_record(&header).and_then(|()| {
        for (id, rows) in sections(&loaded.said) {
            let section = text(lang, id, &[]);
            for r in rows {
                out.write_record([section.as_str(), r.label.as_str(), r.value.as_str()])?;
            }
        }
        Ok(())
    });
    match written
        .map_err(|e| e.to_string())
        .and_then(|()| out.into_inner().map_err(|e| e.to_string()))
    {
        Ok(bytes) => download(&loaded, "csv", "text/csv; charset=utf-8", bytes),
        Err(e) => AppError::internal(e).page(lang),
    }
}

/// The same figures as a workbook: a sheet per section, counts and rates as numbers (rates
/// shown as percentages), so they can be summed and charted again.
pub async fn dashboard_xlsx(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<DashboardQuery>,
) -> Response {
    let lang = viewer.lang;
    let loaded = match load(&state, &viewer, &q).await {
        Ok(l) => l,
        Err(answer) => return answer,
    };
    match workbook(&loaded.said, lang) {
        Ok(bytes) => download(
            &loaded,
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            bytes,
        ),
        Err(e) => AppError::internal(e).page(lang),
    }
}

fn workbook(said: &Said, lang: &str) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let percent = Format::new().set_num_format("0.0%");
    for (id, rows) in sections(said) {
        let sheet = book.add_worksheet();
        sheet.set_name(text(lang, id, &[]))?;
        sheet.write_string_with_format(0, 0, text(lang, "dashboard-label", &[]), &bold)?;
        sheet.write_string_with_format(0, 1, text(lang, "dashboard-value", &[]), &bold)?;
        sheet.set_column_width(0, 40)?;
        sheet.set_column_width(1, 14)?;
        for (i, r) in rows.iter().enumerate() {
            let at = u32::try_from(i + 1).unwrap_or(u32::MAX);
            sheet.write_string(at, 0, &r.label)?;
            match r.number {
                Some(n) if r.rate => sheet.write_number_with_format(at, 1, n, &percent)?,
                Some(n) => sheet.write_number(at, 1, n)?,
                None => sheet.write_string(at, 1, &r.value)?,
            };
        }
    }
    book.save_to_buffer()
}
