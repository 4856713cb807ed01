//! Charts for the dashboards, drawn as SVG on the server by `charts-rs` (no script in the
//! page, the same picture in every browser and in a saved page). Each chart sits beside
//! the table of the same figures, which is what screen readers and exports use.

use charts_rs::{HorizontalBarChart, LineChart, PieChart, Series};

const WIDTH: f32 = 600.0;
/// Text in the readers' fonts: CJK names fall back from the first family to the system's.
const FONTS: &str = "Roboto, 'Noto Sans CJK SC', 'PingFang SC', 'Microsoft YaHei', sans-serif";

/// The SVG, or none when the library cannot draw it (the table still says the figures).
fn drawn(svg: charts_rs::Result<String>) -> Option<String> {
    svg.inspect_err(|e| tracing::warn!(error = %e, "chart not drawn")).ok()
}

/// A line over `points` (label, value), e.g. starts per week.
pub fn line(title: &str, series: &str, points: &[(String, f32)]) -> Option<String> {
    let values: Vec<f32> = points.iter().map(|(_, v)| *v).collect();
    let labels = points.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = LineChart::new(vec![Series::from((series, values))], labels);
    chart.width = WIDTH;
    chart.height = 300.0;
    chart.font_family = FONTS.into();
    chart.title.text = title.into();
    drawn(chart.svg())
}

/// Horizontal bars, largest first, e.g. overdue tasks by unit.
pub fn bars(title: &str, series: &str, bars: &[(String, f32)]) -> Option<String> {
    let values: Vec<f32> = bars.iter().rev().map(|(_, v)| *v).collect();
    let labels = bars.iter().rev().map(|(l, _)| l.clone()).collect();
    let mut chart = HorizontalBarChart::new(vec![Series::from((series, values))], labels);
    chart.width = WIDTH;
    chart.height = (80.0 + 36.0 * bars.len() as f32).max(160.0);
    chart.font_family = FONTS.into();
    chart.title.text = title.into();
    drawn(chart.svg())
}

/// Slices of a whole, e.g. closed on time, closed late, still open.
pub fn pie(title: &str, slices: &[(String, f32)]) -> Option<String> {
    let series = slices
        .iter()
        .map(|(l, v)| Series::from((l.as_str(), vec![*v])))
        .collect();
    let mut chart = PieChart::new(series);
    // A plain pie, slices by share: the default is a rose whose radius follows the value.
    chart.rose_type = Some(false);
    chart.inner_radius = 0.0;
    chart.width = WIDTH;
    chart.height = 320.0;
    chart.font_family = FONTS.into();
    chart.title.text = title.into();
    drawn(chart.svg())
}
