//! Plots a soak run's CSV (`scripts/soak.sh`) as one SVG with three panels: resident memory,
//! lag, and throughput over time; prints the RSS drift after warm-up and the largest lag.
//!
//! `cargo run --release -p triage-eval --example soak_plot -- soak.csv soak.svg [warmup_s] [--check]`
//!
//! With `--check` it fails (exit status 1) unless the soak's goals hold after warm-up: resident
//! memory within ±10% of the middle of its range, and the lag bounded, i.e. the largest lag of the
//! second half of the run is at most twice that of the first half plus one second of messages
//! (a lag that keeps growing fails; a steady one with noise passes).

use std::error::Error;

use plotters::prelude::*;

/// One panel: title, y-axis unit, the value plotted and its colour.
type Panel = (&'static str, &'static str, fn(&Row) -> f64, RGBColor);

struct Row {
    t: f64,
    rss_mib: f64,
    lag: f64,
    rate: f64,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args: Vec<String> = std::env::args().collect();
    let check = args.iter().any(|a| a == "--check");
    args.retain(|a| a != "--check");
    if args.len() < 3 {
        return Err("usage: soak_plot SOAK.csv OUT.svg [WARMUP_SECONDS] [--check]".into());
    }
    let warmup: f64 = args.get(3).map_or(Ok(60.0), |w| w.parse())?;
    let text = std::fs::read_to_string(&args[1])?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<f64> = line
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<Result<_, _>>()?;
        if f.len() < 4 {
            return Err(format!("bad line {line:?}: want t,rss_kb,lag,rate").into());
        }
        rows.push(Row {
            t: f[0],
            rss_mib: f[1] / 1024.0,
            lag: f[2],
            rate: f[3],
        });
    }
    if rows.is_empty() {
        return Err("no samples".into());
    }
    let t_max = rows.last().map_or(1.0, |r| r.t).max(1.0);
    let root = SVGBackend::new(&args[2], (900, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let series: [Panel; 3] = [
        (
            "resident memory of triage",
            "RSS (MiB)",
            |r| r.rss_mib,
            BLUE,
        ),
        (
            "lag (messages produced - consumed)",
            "messages",
            |r| r.lag,
            RED,
        ),
        ("throughput", "messages/s", |r| r.rate, GREEN),
    ];
    for (panel, (title, unit, get, colour)) in panels.iter().zip(series) {
        let y_max = rows.iter().map(get).fold(0.0f64, f64::max).max(1.0) * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .draw()?;
        chart.draw_series(LineSeries::new(
            rows.iter().map(|r| (r.t, get(r))),
            colour.stroke_width(2),
        ))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(warmup, 0.0), (warmup, y_max)],
            BLACK.mix(0.3),
        )))?;
    }
    root.present()?;
    let after: Vec<&Row> = rows.iter().filter(|r| r.t >= warmup).collect();
    let mut drift = 0.0;
    if let (Some(min), Some(max)) = (
        after.iter().map(|r| r.rss_mib).reduce(f64::min),
        after.iter().map(|r| r.rss_mib).reduce(f64::max),
    ) {
        let mid = (min + max) / 2.0;
        drift = 100.0 * (max - min) / 2.0 / mid;
        println!(
            "RSS after {warmup:.0}s warm-up: {min:.1}–{max:.1} MiB (±{drift:.1}% around {mid:.1})"
        );
    }
    let max_lag = rows.iter().map(|r| r.lag).fold(0.0f64, f64::max);
    let mean_rate = after.iter().map(|r| r.rate).sum::<f64>() / after.len().max(1) as f64;
    println!(
        "largest lag {max_lag:.0} messages; mean throughput after warm-up {mean_rate:.0} msg/s"
    );
    let (first, second) = after.split_at(after.len() / 2);
    let peak = |rows: &[&Row]| rows.iter().map(|r| r.lag).fold(0.0f64, f64::max);
    let (lag1, lag2) = (peak(first), peak(second));
    println!("largest lag after warm-up: first half {lag1:.0}, second half {lag2:.0}");
    if check {
        if after.len() < 4 {
            return Err(format!("--check: only {} samples after warm-up", after.len()).into());
        }
        let mut failed = Vec::new();
        if drift > 10.0 {
            failed.push(format!("RSS moved ±{drift:.1}% after warm-up (goal ±10%)"));
        }
        if lag2 > 2.0 * lag1 + mean_rate {
            failed.push(format!(
                "lag grew: {lag2:.0} in the second half against {lag1:.0} in the first"
            ));
        }
        if !failed.is_empty() {
            return Err(format!("soak goals missed: {}", failed.join("; ")).into());
        }
        println!("soak goals met: RSS within ±10%, lag bounded");
    }
    Ok(())
}
