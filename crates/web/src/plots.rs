//! Trend charts as SVG, drawn with plotters' SVG backend; each point gets a focusable overlay
//! with a `<title>`, so its value shows on hover and on keyboard focus.

use plotters::prelude::*;
use time::OffsetDateTime;

pub use ::chart::trends::{Point, ReferenceRange, Series};

/// What to draw.
pub struct Chart<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub series: &'a [Series],
    pub range: Option<&'a ReferenceRange>,
    pub width: u32,
    pub height: u32,
}

/// Why a chart was not drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("nothing to draw")]
    Empty,
    #[error("the chart could not be drawn: {0}")]
    Drawing(String),
}

const COLOURS: [RGBColor; 3] = [RGBColor(0x00, 0x72, 0xB2), RGBColor(0xD5, 0x5E, 0x00), RGBColor(0x00, 0x9E, 0x73)];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn day(seconds: f64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds as i64)
        .map(|at| format!("{:04}-{:02}-{:02}", at.year(), u8::from(at.month()), at.day()))
        .unwrap_or_default()
}

/// Draws the chart; returns the whole `<svg>` element.
pub fn draw(chart: &Chart<'_>) -> Result<String, ChartError> {
    let finite: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.value.is_finite())
        .map(|p| (p.at.unix_timestamp() as f64, p.value))
        .collect();
    if finite.is_empty() {
        return Err(ChartError::Empty);
    }
    let (mut x0, mut x1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    let (mut y0, mut y1) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    if let Some(range) = chart.range {
        for bound in [range.low, range.high].into_iter().flatten() {
            y0 = y0.min(bound);
            y1 = y1.max(bound);
        }
    }
    if x1 - x0 < 86_400.0 {
        x0 -= 86_400.0 * 15.0;
        x1 += 86_400.0 * 15.0;
    }
    let margin = ((y1 - y0) * 0.1).max(1.0);
    (y0, y1) = (y0 - margin, y1 + margin);
    let fail = |e: &dyn std::fmt::Display| ChartError::Drawing(e.to_string());
    let mut svg = String::new();
    let mut overlay = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (chart.width, chart.height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut plot = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| fail(&e))?;
        plot.configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|x| day(*x))
            .y_desc(escape(chart.unit))
            .draw()
            .map_err(|e| fail(&e))?;
        if let Some(range) = chart.range {
            let (low, high) = (range.low.unwrap_or(y0), range.high.unwrap_or(y1));
            plot.draw_series(std::iter::once(Rectangle::new(
                [(x0, low), (x1, high)],
                RGBColor(0xDC, 0xFC, 0xE7).filled(),
            )))
            .map_err(|e| fail(&e))?;
        }
        for (i, series) in chart.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter(|p| p.value.is_finite())
                .map(|p| (p.at.unix_timestamp() as f64, p.value))
                .collect();
            plot.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2))).map_err(|e| fail(&e))?;
            plot.draw_series(points.iter().map(|p| Circle::new(*p, 3, colour.filled()))).map_err(|e| fail(&e))?;
            for point in series.points.iter().filter(|p| p.value.is_finite()) {
                let (cx, cy) = plot.backend_coord(&(point.at.unix_timestamp() as f64, point.value));
                let title = format!("{} {} {}", series.name, day(point.at.unix_timestamp() as f64), point.label);
                overlay.push_str(&format!(
                    r#"<g tabindex="0" class="point"><circle cx="{cx}" cy="{cy}" r="6" fill="transparent"/><title>{}</title></g>"#,
                    escape(&title)
                ));
            }
        }
        root.present().map_err(|e| fail(&e))?;
    }
    let title = format!(r#"<title id="chart-title">{}</title>"#, escape(chart.title));
    let open_end = svg.find('>').ok_or(ChartError::Drawing("no svg element".into()))?;
    let mut out = String::with_capacity(svg.len() + overlay.len() + 200);
    out.push_str(&svg[..open_end]);
    // A group, not an image: its points are focusable, and an image's children are hidden from
    // assistive technology (the table below the chart carries the same values for them).
    out.push_str(r#" role="group" aria-labelledby="chart-title">"#);
    out.push_str(&title);
    let close = svg.rfind("</svg>").ok_or(ChartError::Drawing("no svg end".into()))?;
    out.push_str(&svg[open_end + 1..close]);
    out.push_str(&overlay);
    out.push_str("</svg>");
    Ok(out)
}
