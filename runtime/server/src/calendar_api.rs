//! `POST /api/calendars`: a locality admin uploads a year's working-day table for a unit and
//! everything below it. The same role as for plugins (`plugin_admin` over the unit): both
//! are the locality's own rules.

use crate::AppState;
use crate::api::{ApiJson, Caller};
use crate::error::{AppError, ErrorBody};
use crate::plugin_api::require_admin;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use civicflow_engine::calendar::YearTable;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarUpload {
    pub unit_id: String,
    /// `yaml` (the shipped files' shape) or `csv` (`date,kind,name`).
    #[serde(default = "yaml")]
    pub format: String,
    /// The table's text.
    pub text: String,
}

fn yaml() -> String {
    "yaml".into()
}

/// Upload a year's table of holidays and make-up working days (replaces that year's earlier one).
#[utoipa::path(post, path = "/api/calendars", tag = "calendars", request_body = CalendarUpload,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<CalendarUpload>,
) -> Result<Json<Value>, AppError> {
    require_admin(&state, &actor, &body.unit_id, "uploading a calendar").await?;
    let name = match body.format.as_str() {
        "yaml" => "calendar.yaml",
        "csv" => "calendar.csv",
        other => {
            return Err(
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "the format is yaml or csv")
                    .with_field("/format", format!("\"{other}\" is neither yaml nor csv")),
            );
        }
    };
    let table = YearTable::parse(name, &body.text).map_err(|problems| {
        let text = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "the calendar is not valid")
            .with_field("/text", text)
    })?;
    let runtime = &state.runtime;
    runtime
        .store
        .upload_calendar(&body.unit_id, &table, &actor.person, runtime.now())
        .await?;
    runtime.sync_places().await?;
    Ok(Json(json!({
        "unit": body.unit_id,
        "year": table.year,
        "holidays": table.holidays.len(),
        "workdays": table.workdays.len(),
        "time_zone": table.time_zone.name(),
    })))
}
