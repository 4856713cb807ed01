//! Guards, computed values and message templates are minijinja expressions over the
//! instance context (`data`, `form`, `actor`, `unit`, `now`). One process-wide environment
//! with no templates registered, so compiled expressions can be `'static` and cached in the
//! loaded workflow instead of being re-parsed on every transition.

use minijinja::{Environment, Expression, UndefinedBehavior};
use serde_json::Value;
use std::sync::LazyLock;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Reading a missing field gives `undefined` (falsy) but calling or iterating it fails.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(100_000));
    env.add_filter("after", after);
    env.add_filter("years_since", years_since);
    env
});

/// `data.birth_date | years_since(now)`: whole years from a date (or time) to a time, e.g.
/// an applicant's age on the day they apply.
fn years_since(from: String, to: String) -> Result<i64, minijinja::Error> {
    use chrono::Datelike;
    let day = |text: &str| {
        chrono::NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d").map_err(|e| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("years_since: \"{text}\" does not start with a date (YYYY-MM-DD): {e}"),
            )
        })
    };
    let (a, b) = (day(&from)?, day(&to)?);
    let before_birthday = (b.month(), b.day()) < (a.month(), a.day());
    Ok(i64::from(b.year() - a.year()) - i64::from(before_birthday))
}

/// `now | after("72h")`: the RFC 3339 time a duration after a given time.
fn after(time: String, duration: String) -> Result<String, minijinja::Error> {
    use minijinja::ErrorKind::InvalidOperation;
    let start = chrono::DateTime::parse_from_rfc3339(&time).map_err(|e| {
        minijinja::Error::new(
            InvalidOperation,
            format!("after: \"{time}\" is not an RFC 3339 time: {e}"),
        )
    })?;
    let span = crate::duration::Span::parse(&duration).map_err(|e| minijinja::Error::new(InvalidOperation, e.0))?;
    Ok(span.after(start.with_timezone(&chrono::Utc)).to_rfc3339())
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
        let compiled = ENV
            .compile_expression_owned(source.to_string())
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
        assert_eq!(
            Expr::compile("born | years_since(now)").unwrap().eval(&t).unwrap(),
            json!(18)
        );
        let eve = context(&json!({"now": "2026-01-29T23:00:00+00:00", "born": "2008-01-30"}));
        assert_eq!(
            Expr::compile("born | years_since(now)").unwrap().eval(&eve).unwrap(),
            json!(17)
        );
        assert_eq!(
            Expr::compile("now | after('3d')").unwrap().eval(&t).unwrap(),
            json!("2026-02-02T00:00:00+00:00")
        );
    }
}
