//! `--plot FILE.svg`: CPU µs/request and p99 per server, one small bar chart per scenario and
//! metric (each with its own scale: pipelined and 1000-connection numbers differ by 10×), bars
//! at the median with a min–max whisker over rounds.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{Report, Row, Stat};

/// One colour per server, in the table's order.
const COLOURS: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

type Metric = (&'static str, fn(&Row) -> Option<Stat>);

const METRICS: &[Metric] = &[
    ("CPU µs/request", |r| r.cpu_us_per_req),
    ("p99 latency µs", |r| r.p99_us),
];

/// Draws the report's rows into an SVG file at `path`.
pub fn svg(report: &Report, path: &Path) -> Result<(), String> {
    let mut scenarios: Vec<&'static str> = Vec::new();
    let mut servers: Vec<&str> = Vec::new();
    for r in &report.rows {
        if !scenarios.contains(&r.scenario) {
            scenarios.push(r.scenario);
        }
        if !servers.contains(&r.server.as_str()) {
            servers.push(&r.server);
        }
    }
    let columns = scenarios.len().max(1);
    let size = (
        (330 * columns).max(660) as u32,
        80 + 300 * METRICS.len() as u32,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(err)?;
    let (top, body) = root.split_vertically(80);
    let title = format!(
        "netpoll-bench: echo on loopback, {} round(s) x {} (median bar, min–max whisker)",
        report.meta.rounds,
        crate::report::show_duration(report.meta.duration)
    );
    top.draw(&Text::new(
        title,
        (10, 8),
        ("sans-serif", 18).into_font().color(&BLACK),
    ))
    .map_err(err)?;
    // The legend: a swatch and a name per server.
    let mut x = 10;
    for (k, server) in servers.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        top.draw(&Rectangle::new([(x, 44), (x + 14, 58)], colour.filled()))
            .map_err(err)?;
        top.draw(&Text::new(
            server.to_string(),
            (x + 18, 44),
            ("sans-serif", 14).into_font().color(&BLACK),
        ))
        .map_err(err)?;
        x += 30 + 8 * server.len() as i32;
    }
    let cells = body.split_evenly((METRICS.len(), columns));
    for (m, &(metric, value)) in METRICS.iter().enumerate() {
        for (s, scenario) in scenarios.iter().enumerate() {
            let area = &cells[m * columns + s];
            let rows: Vec<&Row> = report
                .rows
                .iter()
                .filter(|r| r.scenario == *scenario)
                .collect();
            let top_value = rows
                .iter()
                .filter_map(|r| value(r).map(|v| v.max))
                .fold(0.0f64, f64::max);
            let y_max = if top_value > 0.0 {
                top_value * 1.18
            } else {
                1.0
            };
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("{scenario}: {metric}"),
                    ("sans-serif", 14).into_font(),
                )
                .margin(8)
                .x_label_area_size(8)
                .y_label_area_size(48)
                .build_cartesian_2d(0f64..servers.len().max(1) as f64, 0f64..y_max)
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .y_labels(6)
                .y_label_formatter(&|v| {
                    if y_max >= 20.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.1}")
                    }
                })
                .label_style(("sans-serif", 11).into_font())
                .draw()
                .map_err(err)?;
            for row in &rows {
                let Some(k) = servers.iter().position(|s| *s == row.server) else {
                    continue;
                };
                let colour = COLOURS[k % COLOURS.len()];
                let x0 = k as f64;
                let label_style = ("sans-serif", 10)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom));
                match value(row) {
                    Some(v) => {
                        chart
                            .draw_series([Rectangle::new(
                                [(x0 + 0.15, 0.0), (x0 + 0.85, v.median)],
                                colour.filled(),
                            )])
                            .map_err(err)?;
                        if v.max > v.min {
                            let whisker = BLACK.stroke_width(1);
                            let mid = x0 + 0.5;
                            chart
                                .draw_series([
                                    PathElement::new(vec![(mid, v.min), (mid, v.max)], whisker),
                                    PathElement::new(
                                        vec![(mid - 0.12, v.min), (mid + 0.12, v.min)],
                                        whisker,
                                    ),
                                    PathElement::new(
                                        vec![(mid - 0.12, v.max), (mid + 0.12, v.max)],
                                        whisker,
                                    ),
                                ])
                                .map_err(err)?;
                        }
                        let digits = if v.median < 10.0 { 2 } else { 0 };
                        chart
                            .draw_series([Text::new(
                                format!("{:.*}", digits, v.median),
                                (x0 + 0.5, v.max.max(v.median) + y_max * 0.01),
                                label_style,
                            )])
                            .map_err(err)?;
                    }
                    None => {
                        chart
                            .draw_series([Text::new(
                                "failed".to_string(),
                                (x0 + 0.5, y_max * 0.05),
                                label_style,
                            )])
                            .map_err(err)?;
                    }
                }
            }
        }
    }
    root.present().map_err(err)?;
    Ok(())
}
