//! The latency chart of a report (SVG, plotters): on top the percentile curve
//! of both paths (the tail stretched out: p0 … p99.99 and the max), below the
//! p99 of every 100 ms window over the measured period, with the scenario's
//! fault and the breaker opening marked. Drawn from the report alone, so a chart
//! can be redrawn from a JSON report.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Report, ReportError};

/// Where the max sits on the percentile axis (after p99.99 at 4).
const MAX_X: f64 = 4.4;

/// `-log10(1 - q)`: p90 → 1, p99 → 2, p99.9 → 3; the max at [`MAX_X`].
fn tail_x(q: f64) -> f64 {
    if q >= 1.0 { MAX_X } else { -(1.0 - q).log10() }
}

fn x_label(x: &f64) -> String {
    match (x * 10.0).round() as i64 {
        0 => "p0".into(),
        10 => "p90".into(),
        20 => "p99".into(),
        30 => "p99.9".into(),
        40 => "p99.99".into(),
        44 => "max".into(),
        _ => String::new(),
    }
}

pub fn draw(report: &Report, path: &Path) -> Result<(), ReportError> {
    draw_inner(report, path).map_err(|e| ReportError::Chart {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn draw_inner(report: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "{}: {} lookups/s, direct vs broker (latency from the scheduled send)",
        report.scenario, report.rate_per_s
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    let (top, bottom) = root.split_vertically(450);
    let paths = [
        ("direct", &report.direct, BLUE.to_rgba()),
        ("broker", &report.broker, RED.to_rgba()),
    ];

    // Percentile curves.
    let y_max = paths
        .iter()
        .flat_map(|(_, p, _)| p.percentile_curve.iter().map(|c| c.1 as f64 / 1000.0))
        .fold(0.0_f64, f64::max)
        .max(0.001)
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "latency by percentile (the last point is the max)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..MAX_X + 0.1, 0.0..y_max)?;
    chart
        .configure_mesh()
        // 45 label slots put one on every 0.1, so the named percentiles land
        // on a slot; the grid lines of the unnamed ones would only be clutter.
        .x_labels(45)
        .x_label_formatter(&x_label)
        .disable_x_mesh()
        .y_desc("ms")
        .draw()?;
    for (name, p, color) in paths {
        let points: Vec<(f64, f64)> = p
            .percentile_curve
            .iter()
            .map(|&(q, us)| (tail_x(q), us as f64 / 1000.0))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;

    // Per-window p99 timeline.
    let x_end = report.duration_s.max(0.1);
    let y_max = paths
        .iter()
        .flat_map(|(_, p, _)| p.windows.iter().map(|w| w.p99_us as f64 / 1000.0))
        .fold(0.0_f64, f64::max)
        .max(0.001)
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "p99 per 100 ms window (dashed: fault; dotted: breaker open)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the measured period")
        .y_desc("ms")
        .draw()?;
    if let Some(f) = &report.fault {
        chart.draw_series(DashedLineSeries::new(
            vec![(f.broker.fault_at_s, 0.0), (f.broker.fault_at_s, y_max)],
            6,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))?;
        if let Some(t) = f.broker.breaker_opened_at_s {
            chart.draw_series(DashedLineSeries::new(
                vec![(t, 0.0), (t, y_max)],
                2,
                3,
                RED.mix(0.6).stroke_width(1),
            ))?;
        }
    }
    for (name, p, color) in paths {
        // Windows with no answers (all failed) are left out, not drawn as 0.
        let points: Vec<(f64, f64)> = p
            .windows
            .iter()
            .filter(|w| w.answered > 0)
            .map(|w| (w.t_s, w.p99_us as f64 / 1000.0))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_axis_stretches_the_high_percentiles() {
        assert!(tail_x(0.0).abs() < 1e-12);
        assert!((tail_x(0.99) - 2.0).abs() < 1e-9);
        assert!((tail_x(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(tail_x(1.0), MAX_X);
        assert_eq!(x_label(&2.0), "p99");
        assert_eq!(x_label(&MAX_X), "max");
        assert_eq!(x_label(&1.5), "");
    }

    #[test]
    fn a_report_draws_as_an_svg_with_both_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fanout-4.svg");
        let report = crate::report::tests::sample_report();
        draw(&report, &path).expect("chart");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("direct") && svg.contains("broker"));
        assert!(svg.contains("latency by percentile"));
        assert!(svg.contains("<polyline"), "no lines drawn");
    }
}
