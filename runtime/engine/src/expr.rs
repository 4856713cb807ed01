//! Guards, computed values and message templates are minijinja expressions over the
//! instance context (`data`, `form`, `actor`, `unit`, `now`). One process-wide environment
//! with no templates registered, so compiled expressions can be `'static` and cached in the
//! loaded workflow instead of being re-parsed on every transition.

use crate::calendar::Calendar;
use crate::time::{canonical, parse_instant};
use minijinja::{Environment, Error, ErrorKind::InvalidOperation, Expression, State, UndefinedBehavior};
use serde_json::Value;
use std::sync::{Arc, LazyLock};

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Reading a missing field gives `undefined` (falsy) but calling or iterating it fails.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(100_000));
    env.add_filter("after", after);
    env.add_filter("years_since", years_since);
    env.add_filter("working_days", working_days);
    env.add_filter("flatten", flatten);
    env.add_test("containing", containing);
    env
});

/// The calendar of the instance's unit, carried in the context for the time filters.
#[derive(Debug)]
struct CalendarHandle(Arc<Calendar>);

impl minijinja::value::Object for CalendarHandle {}

fn calendar(state: &State) -> Arc<Calendar> {
    state
        .lookup("calendar")
        .and_then(|v| v.downcast_object_ref::<CalendarHandle>().map(|h| h.0.clone()))
        .unwrap_or_else(|| Arc::new(Calendar::empty("")))
}

fn instant(filter: &str, text: &str) -> Result<chrono::DateTime<chrono::Utc>, Error> {
    parse_instant(text).ok_or_else(|| {
        Error::new(
            InvalidOperation,
            format!("{filter}: \"{text}\" is not an RFC 3339 time"),
        )
    })
}

/// The local day of a time (in the unit's zone), or a date as written.
fn local_day(state: &State, filter: &str, text: &str) -> Result<chrono::NaiveDate, Error> {
    if let Some(t) = parse_instant(text) {
        return Ok(calendar(state).local_date(t));
    }
    chrono::NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d").map_err(|e| {
        Error::new(
            InvalidOperation,
            format!("{filter}: \"{text}\" is neither a date (YYYY-MM-DD) nor an RFC 3339 time: {e}"),
        )
    })
}

/// `data.birth_date | years_since(now)`: whole years from a date (or time) to a time, on
/// local days, e.g. an applicant's age on the day they apply in Beijing.
fn years_since(state: &State, from: String, to: String) -> Result<i64, Error> {
    use chrono::Datelike;
    let (a, b) = (
        local_day(state, "years_since", &from)?,
        local_day(state, "years_since", &to)?,
    );
    let before_birthday = (b.month(), b.day()) < (a.month(), a.day());
    Ok(i64::from(b.year() - a.year()) - i64::from(before_birthday))
}

/// `now | after("72h")`: the time a duration after a given time; `5wd` counts working days
/// on the calendar of the instance's unit.
fn after(state: &State, time: String, duration: String) -> Result<String, Error> {
    let start = instant("after", &time)?;
    let span = crate::duration::Span::parse(&duration).map_err(|e| Error::new(InvalidOperation, e.0))?;
    let t = span
        .after(start, Some(&calendar(state)))
        .map_err(|e| Error::new(InvalidOperation, format!("after: {e}")))?;
    Ok(canonical(t))
}

/// `data.reported_at | working_days(now)`: working days from one time to another on the
/// unit's calendar (the day of the first not counted).
fn working_days(state: &State, from: String, to: String) -> Result<i64, Error> {
    let (a, b) = (instant("working_days", &from)?, instant("working_days", &to)?);
    calendar(state)
        .working_days_between(a, b)
        .map_err(|e| Error::new(InvalidOperation, format!("working_days: {e}")))
}

/// `data.roll | map(attribute='owners') | flatten`: the items of a list of lists, in order
/// (every owner of every household on a roll).
fn flatten(lists: minijinja::Value) -> Result<Vec<minijinja::Value>, Error> {
    let mut out = Vec::new();
    for item in lists.try_iter()? {
        match item.kind() {
            minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable => out.extend(item.try_iter()?),
            _ => out.push(item),
        }
    }
    Ok(out)
}

/// `data.roll | selectattr('owners', 'containing', actor.id)`: a list that has the item
/// (the households whose owners include me).
fn containing(list: minijinja::Value, item: minijinja::Value) -> bool {
    list.try_iter().is_ok_and(|mut items| items.any(|i| i == item))
}

/// A compiled expression with its source kept for messages.
pub struct Expr {
    source: String,
    compiled: Expression<'static, 'static>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    pub fn compile(source: &str) -> Result<Self, String> {
        // minijinja 2.24's lexer panics ("empty lexer stack") on an expression holding `}}`
        // (found by fuzzing workflow files): a panic in the compiler is a refused expression.
        let compiled = std::panic::catch_unwind(|| ENV.compile_expression_owned(source.to_string()))
            .map_err(|_| format!("`{source}` cannot be read as an expression"))?
            .map_err(|e| describe(&e))?;
        Ok(Self {
            source: source.to_string(),
            compiled,
        })
    }

    pub fn eval(&self, ctx: &minijinja::Value) -> Result<Value, String> {
        let v = self
            .compiled
            .eval(ctx)
            .map_err(|e| format!("expression `{}` failed: {}", self.source, describe(&e)))?;
        if v.is_undefined() {
            return Ok(Value::Null);
        }
        serde_json::to_value(&v).map_err(|e| format!("expression `{}` gave a value that is not JSON: {e}", self.source))
    }

    pub fn is_true(&self, ctx: &minijinja::Value) -> Result<bool, String> {
        self.compiled
            .eval(ctx)
            .map(|v| v.is_true())
            .map_err(|e| format!("guard `{}` failed: {}", self.source, describe(&e)))
    }
}

/// Build the expression context once per step; evaluations share it.
pub fn context(value: &Value) -> minijinja::Value {
    minijinja::Value::from_serialize(value)
}

/// The context with the unit's calendar, which `after`, `working_days` and `years_since` use.
pub fn context_with_calendar(value: &Value, cal: &Arc<Calendar>) -> minijinja::Value {
    minijinja::context! {
        calendar => minijinja::Value::from_object(CalendarHandle(cal.clone())),
        ..minijinja::Value::from_serialize(value)
    }
}

pub fn check_template(source: &str) -> Result<(), String> {
    ENV.template_from_str(source).map(|_| ()).map_err(|e| describe(&e))
}

pub fn render(source: &str, ctx: &minijinja::Value) -> Result<String, String> {
    ENV.render_str(source, ctx).map_err(|e| describe(&e))
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_expression_the_template_lexer_chokes_on_is_refused_not_a_panic() {
        let err = super::Expr::compile("signal.}} yuan for {{ data.month").unwrap_err();
        assert!(err.contains("cannot be read as an expression"), "{err}");
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates_over_context() {
        let ctx = context(&json!({"data": {"income": 4000}, "form": {"ok": true}}));
        assert!(
            Expr::compile("form.ok and data.income > 3000")
                .unwrap()
                .is_true(&ctx)
                .unwrap()
        );
        assert_eq!(
            Expr::compile("data.income * 0.01").unwrap().eval(&ctx).unwrap(),
            json!(40.0)
        );
        assert_eq!(Expr::compile("data.missing").unwrap().eval(&ctx).unwrap(), Value::Null);
        assert!(Expr::compile("data.income >").is_err());
        assert!(check_template("{{ data.x }").is_err());
        assert_eq!(render("{{ data.income }}元", &ctx).unwrap(), "4000元");
        let t = context(&json!({"now": "2026-01-30T00:00:00+00:00", "born": "2008-01-30"}));
        // 23:00 UTC on the 29th is already the 30th in Beijing: the birthday has come.
        let late = context(&json!({"now": "2026-01-29T23:00:00Z", "born": "2008-01-30"}));
        assert_eq!(
            Expr::compile("born | years_since(now)").unwrap().eval(&late).unwrap(),
            json!(18)
        );
        assert_eq!(
            Expr::compile("born | years_since(now)").unwrap().eval(&t).unwrap(),
            json!(18)
        );
        let eve = context(&json!({"now": "2026-01-29T15:00:00+00:00", "born": "2008-01-30"}));
        assert_eq!(
            Expr::compile("born | years_since(now)").unwrap().eval(&eve).unwrap(),
            json!(17)
        );
        assert_eq!(
            Expr::compile("now | after('3d')").unwrap().eval(&t).unwrap(),
            json!("2026-02-02T00:00:00.000Z")
        );
    }
}
