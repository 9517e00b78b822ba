//! The SVG chart of a benchmark run: throughput against message size, and round trips.

use std::path::Path;

use plotters::prelude::*;

use crate::bench::Measurement;

const COLORS: [RGBColor; 10] = [
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

fn draw_err<E: std::fmt::Debug>(e: E) -> std::io::Error {
    std::io::Error::other(format!("chart: {e:?}"))
}

/// Write the chart to `path` (SVG).
pub fn write_svg(all: &[Measurement], path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let (left, right) = root.split_horizontally(700);

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
    let key = |m: &Measurement| {
        if m.transport == "shm-mpsc" {
            format!("{} x{}", m.transport, m.producers)
        } else {
            m.transport.clone()
        }
    };
    let mut names: Vec<String> = thr.iter().map(|m| key(m)).collect();
    names.sort();
    names.dedup();
    for (i, name) in names.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = thr
            .iter()
            .filter(|m| key(m) == *name)
            .filter_map(|m| m.mb_per_s.map(|v| (m.msg_size as f64, v)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(draw_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(draw_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;

    // Round trips: one bar per transport, log scale.
    let rtt: Vec<&Measurement> = all.iter().filter(|m| m.test == "rtt").collect();
    let max_ns = rtt.iter().filter_map(|m| m.median_ns).fold(100.0, f64::max);
    let mut chart = ChartBuilder::on(&right)
        .caption("Round trip, 8 B (median ns)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(130)
        .build_cartesian_2d((10f64..max_ns * 3.0).log_scale(), 0..rtt.len())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rtt.len().max(1))
        .y_label_formatter(&|i| rtt.get(*i).map(|m| m.transport.clone()).unwrap_or_default())
        .x_desc("ns")
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(rtt.iter().enumerate().filter_map(|(i, m)| {
            let color = if m.transport.starts_with("shm") { COLORS[0] } else { COLORS[7] };
            m.median_ns.map(|v| Rectangle::new([(10.0, i), (v, i + 1)], color.mix(0.8).filled()))
        }))
        .map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    Ok(())
}
