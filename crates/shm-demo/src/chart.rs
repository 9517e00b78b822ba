//! The SVG chart of a benchmark run: throughput against message size, and round trips.

use std::path::Path;

use plotters::prelude::*;

use crate::bench::Measurement;

/// Eighteen distinguishable colours; each transport keeps its own in both panels.
const COLORS: [RGBColor; 18] = [
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
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
    RGBColor(0, 100, 0),
    RGBColor(255, 215, 0),
    RGBColor(0, 0, 0),
    RGBColor(255, 105, 180),
    RGBColor(0, 128, 128),
    RGBColor(154, 99, 36),
];

/// The series name of a measurement: the transport, and for MPSC the producer count.
fn key(m: &Measurement) -> String {
    if m.transport == "shm-mpsc" {
        format!("{} x{}", m.transport, m.producers)
    } else if let Some(n) = m.subscribers {
        format!("{} x{n}", m.transport)
    } else {
        m.transport.clone()
    }
}

/// Every series name of the run, in a fixed order (first seen), so that colours are stable.
fn names(all: &[Measurement]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for m in all {
        let k = key(m);
        if !names.contains(&k) {
            names.push(k);
        }
    }
    names
}

fn color_of(names: &[String], name: &str) -> RGBColor {
    let i = names.iter().position(|n| n == name).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

fn draw_err<E: std::fmt::Debug>(e: E) -> std::io::Error {
    std::io::Error::other(format!("chart: {e:?}"))
}

/// Write the chart to `path` (SVG).
pub fn write_svg(all: &[Measurement], path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (1360, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let (left, rest) = root.split_horizontally(640);
    let (legend, right) = rest.split_horizontally(170);
    let names = names(all);

    // Throughput: MB/s against message size, log-log, one line per transport.
    let thr: Vec<&Measurement> = all.iter().filter(|m| m.test == "throughput").collect();
    let max_mb = thr.iter().filter_map(|m| m.mb_per_s).fold(1.0, f64::max);
    let min_mb = thr.iter().filter_map(|m| m.mb_per_s).fold(max_mb, f64::min).max(0.01);
    let mut chart = ChartBuilder::on(&left)
        .caption("One-way throughput (MB/s)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d((4f64..131072f64).log_scale(), (min_mb / 2.0..max_mb * 2.0).log_scale())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("message size (bytes)")
        .y_desc("MB/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(draw_err)?;
    let mut drawn: Vec<String> = Vec::new();
    for name in &names {
        let color = color_of(&names, name);
        let pts: Vec<(f64, f64)> = thr
            .iter()
            .filter(|m| key(m) == *name)
            .filter_map(|m| m.mb_per_s.map(|v| (m.msg_size as f64, v)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        drawn.push(name.clone());
        chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2))).map_err(draw_err)?;
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(draw_err)?;
    }
    // The legend in its own column, beside the plot: it covers no data.
    for (i, name) in drawn.iter().enumerate() {
        let color = color_of(&names, name);
        let y = 50 + 20 * i as i32;
        legend.draw(&PathElement::new(vec![(5, y), (25, y)], color.stroke_width(3))).map_err(draw_err)?;
        legend.draw(&Text::new(name.as_str(), (32, y - 7), ("sans-serif", 14))).map_err(draw_err)?;
    }

    // Round trips: one bar per transport, log scale.
    let rtt: Vec<&Measurement> = all.iter().filter(|m| m.test == "rtt").collect();
    let max_ns = rtt.iter().filter_map(|m| m.median_ns).fold(100.0, f64::max);
    let mut chart = ChartBuilder::on(&right)
        .caption("Round trip, 8 B (median ns)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(130)
        .build_cartesian_2d((10f64..max_ns * 30.0).log_scale(), (0..rtt.len()).into_segmented())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rtt.len().max(1))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => rtt.get(*i).map(|m| m.transport.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ns")
        .draw()
        .map_err(draw_err)?;
    for (i, m) in rtt.iter().enumerate() {
        let Some(v) = m.median_ns else { continue };
        let color = color_of(&names, &key(m));
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(10.0, SegmentValue::Exact(i)), (v, SegmentValue::Exact(i + 1))],
                color.mix(0.8).filled(),
            )))
            .map_err(draw_err)?;
        // Every bar says its value, just past its end.
        let label = if v >= 1000.0 { format!("{:.1} µs", v / 1000.0) } else { format!("{v:.0} ns") };
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (v * 1.1, SegmentValue::CenterOf(i)),
                ("sans-serif", 13),
            )))
            .map_err(draw_err)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}
