//! `triage eval --report DIR`: an evaluation report people can look at.
//!
//! [`write_report`] writes into a directory:
//!
//! - `confusion.svg`: the confusion matrix as a heatmap (colour: share of the true label's row);
//! - `per_class.svg`: precision, recall and F1 per class (the worst 30 by F1 when there are more);
//! - `coverage.svg`: accuracy of the messages the fast classifier keeps, and of those it defers,
//!   against the share deferred to the small language model;
//! - `confidence.svg`: how confident the classifier is when it is right and when it is wrong;
//! - `cascade.svg`: fast / second-opinion / cascade compared, only when cascade rows are given;
//! - `report.html`: one self-contained page (the charts inline) with the headline figures, the
//!   per-class table, the most confused pairs, the coverage table and short explanations.
//!
//! The charts are drawn with `plotters`' SVG backend, which writes text as SVG `<text>` and leaves
//! fonts to the viewer: no font or system library is needed to draw them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use triage_classifier::EvalReport;

use crate::error::{EvalError, Result};

/// Above this many labels the confusion matrix shows colour only, no counts in the cells.
pub const MAX_CELL_TEXT_LABELS: usize = 30;

/// Above this many labels the per-class chart shows only this many classes, those with the
/// lowest F1.
pub const MAX_PER_CLASS_BARS: usize = 30;

/// An operating point to mark on the coverage and confidence charts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatingPoint {
    /// Defer the messages whose confidence is below this threshold (0-1).
    Threshold(f64),
    /// Defer at most this share of the messages (0-1), those with the lowest confidence.
    Budget(f64),
}

/// One way of running the cascade, for the comparison chart (`cascade.svg`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadeRow {
    /// What was run, e.g. "fast only", "second opinion only", "cascade".
    pub name: String,
    /// Share of messages labelled correctly (0-1).
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 (0-1).
    pub macro_f1: f64,
    /// Share of messages sent to the small language model (0-1).
    pub share_to_slm: f64,
}

/// Everything a report is drawn from.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The evaluation.
    pub report: EvalReport,
    /// The evaluated model's version (its short checksum).
    pub model_version: String,
    /// The labelled data's name (its file name or path), as shown in the report.
    pub data_name: String,
    /// Per message, the confidence of the predicted label (its probability), in data order.
    pub confidences: Vec<f32>,
    /// Per message, whether the predicted label was right; same order and length as
    /// `confidences`.
    pub correct: Vec<bool>,
    /// A threshold or budget to mark on the coverage and confidence charts.
    pub operating_point: Option<OperatingPoint>,
    /// Fast / second-opinion / cascade figures; `cascade.svg` is drawn only when given.
    pub cascade: Option<Vec<CascadeRow>>,
}

impl ReportInput {
    /// A report input without an operating point or cascade comparison.
    pub fn new(
        report: EvalReport,
        model_version: impl Into<String>,
        data_name: impl Into<String>,
        confidences: Vec<f32>,
        correct: Vec<bool>,
    ) -> Self {
        ReportInput {
            report,
            model_version: model_version.into(),
            data_name: data_name.into(),
            confidences,
            correct,
            operating_point: None,
            cascade: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let n = self.report.n;
        if self.confidences.len() != n || self.correct.len() != n {
            return Err(EvalError::Report(format!(
                "{} confidences and {} correctness flags for {n} evaluated messages",
                self.confidences.len(),
                self.correct.len()
            )));
        }
        let k = self.report.labels.len();
        if self.report.confusion.len() != k || self.report.confusion.iter().any(|r| r.len() != k) {
            return Err(EvalError::Report(format!(
                "the confusion matrix is not {k} x {k}"
            )));
        }
        match self.operating_point {
            Some(OperatingPoint::Threshold(v) | OperatingPoint::Budget(v))
                if !(0.0..=1.0).contains(&v) =>
            {
                return Err(EvalError::Report(format!(
                    "the marked threshold or budget {v} is not between 0 and 1"
                )));
            }
            _ => {}
        }
        for row in self.cascade.iter().flatten() {
            let figures = [row.accuracy, row.macro_f1, row.share_to_slm];
            if figures.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return Err(EvalError::Report(format!(
                    "cascade row {:?}: accuracy, macro-F1 and SLM share must be between 0 and 1",
                    row.name
                )));
            }
        }
        Ok(())
    }
}

/// Writes the report into `dir` (created if missing): `report.html` and the SVG charts beside
/// it. Returns the path of `report.html`.
pub fn write_report(dir: &Path, input: &ReportInput) -> Result<PathBuf> {
    input.validate()?;
    std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    let op = operating_stats(&input.confidences, &input.correct, input.operating_point);
    let mut charts = vec![
        Chart {
            file: "confusion.svg",
            svg: confusion_svg(&input.report)?,
        },
        Chart {
            file: "per_class.svg",
            svg: per_class_svg(&input.report)?,
        },
        Chart {
            file: "coverage.svg",
            svg: coverage_svg(input, op.as_ref())?,
        },
        Chart {
            file: "confidence.svg",
            svg: confidence_svg(input, op.as_ref())?,
        },
    ];
    if let Some(rows) = &input.cascade {
        charts.push(Chart {
            file: "cascade.svg",
            svg: cascade_svg(rows)?,
        });
    }
    for c in &charts {
        let path = dir.join(c.file);
        std::fs::write(&path, &c.svg).map_err(|e| EvalError::io(&path, e))?;
    }
    let html = dir.join("report.html");
    std::fs::write(&html, render_html(input, op.as_ref(), &charts))
        .map_err(|e| EvalError::io(&html, e))?;
    Ok(html)
}

/// A drawn chart and the file it goes to.
struct Chart {
    file: &'static str,
    svg: String,
}

// ---------------------------------------------------------------- the operating point

/// What an operating point means on this data.
#[derive(Debug, Clone, PartialEq)]
struct OpStats {
    /// How it was given, for captions.
    name: String,
    /// The confidence threshold (given, or implied by a budget).
    threshold: f64,
    /// Share of messages deferred.
    deferred: f64,
    /// Accuracy on the kept messages.
    kept_accuracy: f64,
    /// Accuracy (of the fast label) on the deferred messages.
    deferred_accuracy: f64,
}

fn operating_stats(conf: &[f32], correct: &[bool], op: Option<OperatingPoint>) -> Option<OpStats> {
    let op = op?;
    let n = conf.len();
    let (name, threshold, deferred_ok, deferred_n, kept_ok) = match op {
        OperatingPoint::Threshold(t) => {
            let (mut d, mut d_ok, mut k_ok) = (0, 0, 0);
            for (&c, &ok) in conf.iter().zip(correct) {
                if f64::from(c) < t {
                    d += 1;
                    d_ok += usize::from(ok);
                } else {
                    k_ok += usize::from(ok);
                }
            }
            (format!("threshold {t:.2}"), t, d_ok, d, k_ok)
        }
        OperatingPoint::Budget(b) => {
            let sorted = sorted_by_confidence(conf, correct);
            let d = ((b * n as f64).floor() as usize).min(n);
            let t = sorted.get(d).map_or(1.0, |p| f64::from(p.0));
            let d_ok = sorted[..d].iter().filter(|p| p.1).count();
            let k_ok = sorted[d..].iter().filter(|p| p.1).count();
            (format!("budget {:.0}%", 100.0 * b), t, d_ok, d, k_ok)
        }
    };
    Some(OpStats {
        name,
        threshold,
        deferred: ratio(deferred_n, n),
        kept_accuracy: ratio(kept_ok, n - deferred_n),
        deferred_accuracy: ratio(deferred_ok, deferred_n),
    })
}

fn sorted_by_confidence(conf: &[f32], correct: &[bool]) -> Vec<(f32, bool)> {
    let mut v: Vec<(f32, bool)> = conf.iter().copied().zip(correct.iter().copied()).collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

// ---------------------------------------------------------------- drawing helpers

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn<T> = std::result::Result<
    T,
    DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>,
>;
type DrawResult = Drawn<()>;

const FONT: &str = "sans-serif";
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
const C_BLUE: RGBColor = RGBColor(0x4e, 0x79, 0xa7);
const C_ORANGE: RGBColor = RGBColor(0xf2, 0x8e, 0x2b);
const C_GREEN: RGBColor = RGBColor(0x59, 0xa1, 0x4f);
const C_RED: RGBColor = RGBColor(0xe1, 0x57, 0x59);
const C_MARK: RGBColor = RGBColor(0x8e, 0x2c, 0x8e);
const C_GREY: RGBColor = RGBColor(0x9a, 0x9a, 0x9a);

/// Draws one chart into an SVG string.
fn render(
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present())
            .map_err(|e| EvalError::Report(format!("drawing {name}: {e}")))?;
    }
    Ok(svg)
}

/// A text style of `px` CSS pixels (plotters' SVG backend writes `size / 1.24`).
fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, px * 1.24).into_font()).color(&INK)
}

/// A bold text style of `px` CSS pixels.
fn bold(px: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, px * 1.24, FontStyle::Bold).into_font()).color(&INK)
}

/// A rough width of `s` in `px`-sized sans-serif text.
fn text_width(s: &str, px: f64) -> i32 {
    (s.chars().count() as f64 * px * 0.6).ceil() as i32
}

/// `s` cut to `n` characters, with an ellipsis when cut.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Title and subtitle at the top left.
fn header(area: &Area<'_>, title: &str, subtitle: &str) -> DrawResult {
    area.draw(&Text::new(
        title.to_string(),
        (16, 12),
        bold(17.0).pos(Pos::new(HPos::Left, VPos::Top)),
    ))?;
    area.draw(&Text::new(
        subtitle.to_string(),
        (16, 36),
        font(12.5)
            .color(&MUTED)
            .pos(Pos::new(HPos::Left, VPos::Top)),
    ))
}

/// Legend entries (swatch and text) in rows from `(16, y)`, wrapped before `max_x`. Returns the
/// y just below the last row.
fn legend(area: &Area<'_>, y: i32, max_x: i32, items: &[(String, Swatch)]) -> Drawn<i32> {
    let (mut x, mut y) = (16, y);
    for (label, swatch) in items {
        let w = 20 + (label.chars().count() as f64 * 12.5 * 0.55).ceil() as i32;
        if x > 16 && x + w > max_x {
            x = 16;
            y += 22;
        }
        match swatch {
            Swatch::Box(c) => {
                area.draw(&Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled()))?;
            }
            Swatch::Line(c) => {
                area.draw(&PathElement::new(
                    vec![(x - 2, y), (x + 14, y)],
                    c.stroke_width(3),
                ))?;
            }
            Swatch::Dashed(c) => {
                for dx in [-2, 6] {
                    area.draw(&PathElement::new(
                        vec![(x + dx, y), (x + dx + 6, y)],
                        c.stroke_width(3),
                    ))?;
                }
            }
            Swatch::Dot(c) => area.draw(&Circle::new((x + 6, y), 4, c.filled()))?,
        }
        area.draw(&Text::new(
            label.clone(),
            (x + 20, y),
            font(12.5).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x += w + 28;
    }
    Ok(y + 12)
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Swatch {
    Box(RGBColor),
    Line(RGBColor),
    Dashed(RGBColor),
    Dot(RGBColor),
}

/// The "Blues" sequential scale: white at 0, dark blue at 1.
fn blues(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (0xf7, 0xfb, 0xff),
        (0xde, 0xeb, 0xf7),
        (0xc6, 0xdb, 0xef),
        (0x9e, 0xca, 0xe1),
        (0x6b, 0xae, 0xd6),
        (0x42, 0x92, 0xc6),
        (0x21, 0x71, 0xb5),
        (0x08, 0x51, 0x9c),
        (0x08, 0x30, 0x6b),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn pct(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

/// A continuous axis `0..n` whose ticks are the centres `i + 0.5` of `n` categories, to label
/// with a formatter that maps a centre to its category's name.
#[derive(Clone)]
struct Categories(usize);

impl Ranged for Categories {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = value / self.0.max(1) as f64;
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            (0..self.0).map(|i| i as f64 + 0.5).collect()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.0 as f64
    }
}

impl ValueFormatter<f64> for Categories {
    fn format(value: &f64) -> String {
        format!("{value}")
    }
}

// ---------------------------------------------------------------- confusion.svg

fn confusion_svg(r: &EvalReport) -> Result<String> {
    let k = r.labels.len();
    let ki = k.max(1) as i32;
    let cell_text = k <= MAX_CELL_TEXT_LABELS;
    let cell = if cell_text {
        (760 / ki).clamp(24, 120)
    } else {
        (900 / ki).max(3)
    };
    let names = cell >= 10;
    let name_px = (f64::from(cell) * 0.8).min(13.0);
    let shown: Vec<String> = r.labels.iter().map(|l| short(l, 28)).collect();
    let longest = if names {
        shown
            .iter()
            .map(|l| text_width(l, name_px))
            .max()
            .unwrap_or(0)
    } else {
        text_width("000", 10.0)
    };
    let rotate = names && longest > cell - 8;
    let side = cell * ki;
    let left = 40 + longest + 10;
    let top = 72;
    let below = if rotate { longest } else { name_px as i32 } + 14;
    let note = !cell_text;
    let width = (left + side + 130).max(680);
    let height = top + side + below + 34 + if note { 24 } else { 0 } + 8;
    let total: usize = r.confusion.iter().flatten().sum();
    let subtitle = format!(
        "rows: true label · columns: predicted label · colour: share of the true label's \
         messages · {total} messages"
    );
    render("confusion.svg", (width as u32, height as u32), |root| {
        header(root, "Confusion matrix", &subtitle)?;
        for (t, row) in r.confusion.iter().enumerate() {
            let row_sum: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let x0 = left + p as i32 * cell;
                let y0 = top + t as i32 * cell;
                let share = ratio(count, row_sum);
                if count > 0 {
                    root.draw(&Rectangle::new(
                        [(x0, y0), (x0 + cell, y0 + cell)],
                        blues(share).filled(),
                    ))?;
                }
                if cell_text {
                    root.draw(&Rectangle::new(
                        [(x0, y0), (x0 + cell, y0 + cell)],
                        GRID.stroke_width(1),
                    ))?;
                    let ink = if share > 0.5 { &WHITE } else { &INK };
                    let big = (f64::from(cell) * 0.34).min(17.0);
                    let (cx, cy) = (x0 + cell / 2, y0 + cell / 2);
                    let with_share = cell >= 56 && row_sum > 0;
                    let count_y = if with_share {
                        cy - (big * 0.45) as i32
                    } else {
                        cy
                    };
                    root.draw(&Text::new(
                        count.to_string(),
                        (cx, count_y),
                        if t == p { bold(big) } else { font(big) }
                            .color(ink)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    ))?;
                    if with_share {
                        root.draw(&Text::new(
                            format!("{:.1}%", 100.0 * share),
                            (cx, cy + (big * 0.75) as i32),
                            font(big * 0.66)
                                .color(ink)
                                .pos(Pos::new(HPos::Center, VPos::Center)),
                        ))?;
                    }
                }
            }
        }
        root.draw(&Rectangle::new(
            [(left, top), (left + side, top + side)],
            C_GREY.stroke_width(1),
        ))?;
        // Axis labels: names, or every tenth index when there are too many to name.
        let step = if names {
            1
        } else if k <= 200 {
            10
        } else {
            50
        };
        let tick_px = if names { name_px } else { 10.0 };
        for i in (0..k).step_by(step) {
            let c = i as i32 * cell + cell / 2;
            let text = if names {
                shown[i].clone()
            } else {
                i.to_string()
            };
            root.draw(&Text::new(
                text.clone(),
                (left - 6, top + c),
                font(tick_px).pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            let style = if rotate {
                font(tick_px)
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Right, VPos::Center))
            } else {
                font(tick_px).pos(Pos::new(HPos::Center, VPos::Top))
            };
            root.draw(&Text::new(text, (left + c, top + side + 6), style))?;
            if !names {
                root.draw(&PathElement::new(
                    vec![(left - 3, top + c), (left, top + c)],
                    INK.stroke_width(1),
                ))?;
                root.draw(&PathElement::new(
                    vec![(left + c, top + side), (left + c, top + side + 3)],
                    INK.stroke_width(1),
                ))?;
            }
        }
        root.draw(&Text::new(
            "predicted label",
            (left + side / 2, top + side + below + 8),
            bold(14.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
        root.draw(&Text::new(
            "true label",
            (16, top + side / 2),
            bold(14.0)
                .transform(FontTransform::Rotate270)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        if note {
            let what = if names {
                format!("{k} labels: cells show colour only; counts are in report.html")
            } else {
                format!(
                    "{k} labels: too many to name; axis numbers are label indices \
                     (the # column of the per-class table in report.html)"
                )
            };
            root.draw(&Text::new(
                what,
                (16, top + side + below + 34),
                font(12.5)
                    .color(&MUTED)
                    .pos(Pos::new(HPos::Left, VPos::Top)),
            ))?;
        }
        // Colour scale.
        let bx = left + side + 28;
        let bh = side.clamp(60, 240);
        let steps = 48;
        for s in 0..steps {
            let y0 = top + bh * s / steps;
            let y1 = top + bh * (s + 1) / steps;
            let v = 1.0 - (f64::from(s) + 0.5) / f64::from(steps);
            root.draw(&Rectangle::new(
                [(bx, y0), (bx + 16, y1)],
                blues(v).filled(),
            ))?;
        }
        root.draw(&Rectangle::new(
            [(bx, top), (bx + 16, top + bh)],
            C_GREY.stroke_width(1),
        ))?;
        for (v, label) in [(1.0, "100%"), (0.5, "50%"), (0.0, "0%")] {
            let y = top + ((1.0 - v) * f64::from(bh)) as i32;
            root.draw(&Text::new(
                label,
                (bx + 22, y),
                font(11.0).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        root.draw(&Text::new(
            "share of row",
            (bx, top + bh + 10),
            font(11.0)
                .color(&MUTED)
                .pos(Pos::new(HPos::Left, VPos::Top)),
        ))?;
        Ok(())
    })
}

// ---------------------------------------------------------------- per_class.svg

fn per_class_svg(r: &EvalReport) -> Result<String> {
    let k = r.per_class.len();
    let mut order: Vec<usize> = (0..k).collect();
    let subset = k > MAX_PER_CLASS_BARS;
    if subset {
        order.sort_by(|&a, &b| {
            let (ma, mb) = (&r.per_class[a], &r.per_class[b]);
            ma.f1.total_cmp(&mb.f1).then(mb.support.cmp(&ma.support))
        });
        order.truncate(MAX_PER_CLASS_BARS);
    }
    let m = order.len().max(1);
    let roomy = m <= 12;
    let bar = if roomy { 16 } else { 7 };
    let group = 3 * bar + if roomy { 18 } else { 8 };
    let names: Vec<String> = order
        .iter()
        .map(|&c| {
            let cm = &r.per_class[c];
            format!("{} ({})", short(&cm.label, 28), cm.support)
        })
        .collect();
    let label_w = names
        .iter()
        .map(|n| text_width(n, 12.0))
        .max()
        .unwrap_or(40)
        + 16;
    let top = 84;
    let (width, height) = (1000, top + group * m as i32 + 64);
    let subtitle = if subset {
        format!(
            "the {} classes with the lowest F1 of {k}, worst at the top · support in brackets · \
             every class is in report.html",
            order.len()
        )
    } else {
        "in label order · support (messages with the label) in brackets".to_string()
    };
    render("per_class.svg", (width as u32, height as u32), |root| {
        header(root, "Precision, recall and F1 per class", &subtitle)?;
        legend(
            root,
            66,
            width,
            &[
                ("precision".into(), Swatch::Box(C_BLUE)),
                ("recall".into(), Swatch::Box(C_ORANGE)),
                ("F1".into(), Swatch::Box(C_GREEN)),
            ],
        )?;
        let area = root.margin(top - 6, 0, 8, 56);
        let mf = m as f64;
        let name_at = |v: &f64| {
            let j = (mf - v - 0.5).round();
            if j >= 0.0 {
                names.get(j as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(44)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0f64..1f64, Categories(m))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(11)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&name_at)
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .label_style(font(12.0))
            .axis_desc_style(bold(13.5))
            .x_desc("score (0 = worst, 1 = best)")
            .draw()?;
        let unit = 1.0 / f64::from(group);
        for (j, &c) in order.iter().enumerate() {
            let cm = &r.per_class[c];
            let yc = mf - j as f64 - 0.5;
            let metrics = [
                (cm.precision, C_BLUE),
                (cm.recall, C_ORANGE),
                (cm.f1, C_GREEN),
            ];
            for (b, (v, colour)) in metrics.into_iter().enumerate() {
                let y1 = yc + 1.5 * f64::from(bar) * unit - b as f64 * f64::from(bar) * unit;
                let y0 = y1 - f64::from(bar) * unit * 0.9;
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y0), (v, y1)],
                    colour.filled(),
                )))?;
                if roomy {
                    chart.draw_series(std::iter::once(
                        EmptyElement::at((v, (y0 + y1) / 2.0))
                            + Text::new(
                                format!("{v:.2}"),
                                (4, 0),
                                font(11.0).pos(Pos::new(HPos::Left, VPos::Center)),
                            ),
                    ))?;
                }
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- coverage.svg

/// One point of the coverage curve.
struct CurvePoint {
    deferred: f64,
    kept_accuracy: Option<f64>,
    deferred_accuracy: Option<f64>,
}

/// Coverage at every share deferred (thinned to ~500 points): defer the least confident first.
/// Accuracies over fewer than `max(10, n / 100)` messages are left out as noise.
fn coverage_curve(conf: &[f32], correct: &[bool]) -> Vec<CurvePoint> {
    let sorted = sorted_by_confidence(conf, correct);
    let n = sorted.len();
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0usize);
    for p in &sorted {
        prefix.push(prefix[prefix.len() - 1] + usize::from(p.1));
    }
    let total = prefix[n];
    let min_n = (n / 100).max(10);
    let step = (n / 500).max(1);
    let mut ks: Vec<usize> = (0..=n).step_by(step).collect();
    if ks.last() != Some(&n) {
        ks.push(n);
    }
    ks.into_iter()
        .map(|d| {
            let kept = n - d;
            CurvePoint {
                deferred: ratio(d, n),
                kept_accuracy: (kept >= min_n).then(|| ratio(total - prefix[d], kept)),
                deferred_accuracy: (d >= min_n).then(|| ratio(prefix[d], d)),
            }
        })
        .collect()
}

fn coverage_svg(input: &ReportInput, op: Option<&OpStats>) -> Result<String> {
    let r = &input.report;
    let curve = coverage_curve(&input.confidences, &input.correct);
    let kept: Vec<(f64, f64)> = curve
        .iter()
        .filter_map(|p| p.kept_accuracy.map(|a| (p.deferred, a)))
        .collect();
    let deferred: Vec<(f64, f64)> = curve
        .iter()
        .filter_map(|p| p.deferred_accuracy.map(|a| (p.deferred, a)))
        .collect();
    let lowest = kept
        .iter()
        .chain(&deferred)
        .map(|p| p.1)
        .chain(r.coverage.iter().filter_map(|c| c.kept_accuracy))
        .chain(std::iter::once(r.accuracy))
        .fold(1.0f64, f64::min);
    let y_min = ((lowest - 0.03).max(0.0) * 10.0).floor() / 10.0;
    let (width, height) = (1000u32, 600u32);
    let subtitle = "defer the least confident messages to the SLM: the fast classifier keeps \
                    the rest · points: confidence thresholds";
    render("coverage.svg", (width, height), |root| {
        header(root, "Coverage and accuracy", subtitle)?;
        let mut items = vec![
            (
                "kept: accuracy on the messages kept".to_string(),
                Swatch::Line(C_BLUE),
            ),
            (
                "deferred: accuracy on the messages deferred".to_string(),
                Swatch::Dashed(C_ORANGE),
            ),
            (
                format!("no deferral: {:.2}%", 100.0 * r.accuracy),
                Swatch::Dashed(C_GREY),
            ),
            ("confidence thresholds".to_string(), Swatch::Dot(C_BLUE)),
        ];
        if let Some(op) = op {
            items.push((op.name.clone(), Swatch::Line(C_MARK)));
        }
        let below = legend(root, 66, width as i32 - 16, &items)?;
        let area = root.margin(below + 6, 0, 8, 40);
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..1f64, y_min..1.0f64)?;
        chart
            .configure_mesh()
            .x_labels(11)
            .y_labels(11)
            .x_label_formatter(&|v| pct(*v))
            .y_label_formatter(&|v| pct(*v))
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .label_style(font(12.0))
            .axis_desc_style(bold(13.5))
            .x_desc("share of messages deferred to the SLM")
            .y_desc("accuracy of the fast classifier")
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            [(0.0, r.accuracy), (1.0, r.accuracy)],
            5,
            5,
            C_GREY.stroke_width(1),
        ))?;
        chart.draw_series(DashedLineSeries::new(
            deferred.iter().copied(),
            7,
            4,
            C_ORANGE.stroke_width(2),
        ))?;
        chart.draw_series(LineSeries::new(
            kept.iter().copied(),
            C_BLUE.stroke_width(3),
        ))?;
        let mut last_label: Option<(f64, f64)> = None;
        for row in &r.coverage {
            let Some(kept_accuracy) = row.kept_accuracy else {
                continue;
            };
            let at = (row.deferred, kept_accuracy);
            chart.draw_series(std::iter::once(Circle::new(at, 4, C_BLUE.filled())))?;
            chart.draw_series(std::iter::once(Circle::new(at, 4, WHITE.stroke_width(1))))?;
            let crowded = last_label.is_some_and(|(x, y): (f64, f64)| {
                (at.0 - x).abs() < 0.035 && (at.1 - y).abs() < 0.04
            });
            if !crowded {
                chart.draw_series(std::iter::once(
                    EmptyElement::at(at)
                        + Text::new(
                            format!("{:.2}", row.threshold),
                            (3, 7),
                            font(10.5)
                                .color(&MUTED)
                                .pos(Pos::new(HPos::Left, VPos::Top)),
                        ),
                ))?;
                last_label = Some(at);
            }
        }
        if let Some(op) = op {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(op.deferred, y_min), (op.deferred, 1.0)],
                C_MARK.stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(Circle::new(
                (op.deferred, op.kept_accuracy),
                5,
                C_MARK.filled(),
            )))?;
            let text = format!(
                "{}: {:.1}% deferred, kept {:.1}% accurate",
                op.name,
                100.0 * op.deferred,
                100.0 * op.kept_accuracy
            );
            let (dx, h) = if op.deferred > 0.55 {
                (-6, HPos::Right)
            } else {
                (6, HPos::Left)
            };
            chart.draw_series(std::iter::once(
                EmptyElement::at((op.deferred, y_min))
                    + Text::new(
                        text,
                        (dx, -8),
                        font(12.5).color(&C_MARK).pos(Pos::new(h, VPos::Bottom)),
                    ),
            ))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- confidence.svg

const BINS: usize = 20;

fn confidence_svg(input: &ReportInput, op: Option<&OpStats>) -> Result<String> {
    let mut right = [0usize; BINS];
    let mut wrong = [0usize; BINS];
    let (mut sum_right, mut sum_wrong) = (0.0f64, 0.0f64);
    for (&c, &ok) in input.confidences.iter().zip(&input.correct) {
        let c = if c.is_finite() {
            f64::from(c).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let bin = ((c * BINS as f64) as usize).min(BINS - 1);
        if ok {
            right[bin] += 1;
            sum_right += c;
        } else {
            wrong[bin] += 1;
            sum_wrong += c;
        }
    }
    let (n_right, n_wrong) = (right.iter().sum::<usize>(), wrong.iter().sum::<usize>());
    // Each group as shares of itself, so that a few hundred errors stay visible beside
    // thousands of right answers.
    let share = |counts: &[usize; BINS], n: usize| counts.map(|c| ratio(c, n));
    let (right_share, wrong_share) = (share(&right, n_right), share(&wrong, n_wrong));
    let top = right_share
        .iter()
        .chain(&wrong_share)
        .copied()
        .fold(0.05f64, f64::max);
    let (width, height) = (1000u32, 520u32);
    let subtitle = "confidence: the probability of the predicted label · each colour sums to \
                    100% · a good classifier is rarely confident when wrong";
    render("confidence.svg", (width, height), |root| {
        header(root, "Confidence when right and when wrong", subtitle)?;
        let mut items = vec![
            (
                format!(
                    "correct: {n_right} messages, mean confidence {:.2}",
                    sum_right / n_right.max(1) as f64
                ),
                Swatch::Box(C_GREEN),
            ),
            (
                format!(
                    "wrong: {n_wrong} messages, mean confidence {:.2}",
                    sum_wrong / n_wrong.max(1) as f64
                ),
                Swatch::Box(C_RED),
            ),
        ];
        if let Some(op) = op {
            let name = match input.operating_point {
                Some(OperatingPoint::Budget(_)) => {
                    format!("{} (threshold {:.2})", op.name, op.threshold)
                }
                _ => op.name.clone(),
            };
            items.push((name, Swatch::Line(C_MARK)));
        }
        let below = legend(root, 66, width as i32 - 16, &items)?;
        let area = root.margin(below + 6, 0, 8, 40);
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..1f64, 0f64..top * 1.1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(11)
            .y_labels(8)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| pct(*v))
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .label_style(font(12.0))
            .axis_desc_style(bold(13.5))
            .x_desc("confidence of the predicted label")
            .y_desc("share of the correct / of the wrong predictions")
            .draw()?;
        let w = 1.0 / BINS as f64;
        for b in 0..BINS {
            let x0 = b as f64 * w;
            for (counts, colour, from, to) in [
                (&right_share, C_GREEN, 0.08, 0.5),
                (&wrong_share, C_RED, 0.5, 0.92),
            ] {
                if counts[b] > 0.0 {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(x0 + from * w, 0.0), (x0 + to * w, counts[b])],
                        colour.filled(),
                    )))?;
                }
            }
        }
        if let Some(op) = op {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(op.threshold, 0.0), (op.threshold, top * 1.1)],
                C_MARK.stroke_width(2),
            )))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- cascade.svg

fn cascade_svg(rows: &[CascadeRow]) -> Result<String> {
    let m = rows.len().max(1);
    let names: Vec<String> = rows.iter().map(|r| short(&r.name, 32)).collect();
    let width = (220 * m as u32 + 160).max(760);
    let subtitle = "accuracy and macro-F1 of each way of running it · SLM share: messages sent \
                    to the small language model";
    render("cascade.svg", (width, 520), |root| {
        header(
            root,
            "Fast classifier, second opinion and cascade",
            subtitle,
        )?;
        legend(
            root,
            66,
            width as i32,
            &[
                ("accuracy".into(), Swatch::Box(C_BLUE)),
                ("macro-F1".into(), Swatch::Box(C_GREEN)),
            ],
        )?;
        let area = root.margin(84, 0, 8, 24);
        let name_at = |v: &f64| {
            let i = (v - 0.5).round();
            if i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let mut chart = ChartBuilder::on(&area)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(Categories(m), 0f64..1.12f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_labels(12)
            .x_label_formatter(&name_at)
            .y_label_formatter(&|v| {
                if *v <= 1.0 + 1e-9 {
                    format!("{v:.1}")
                } else {
                    String::new()
                }
            })
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .label_style(font(13.0))
            .axis_desc_style(bold(13.5))
            .y_desc("score (0-1)")
            .draw()?;
        for (i, row) in rows.iter().enumerate() {
            let x = i as f64;
            let bars = [
                (
                    row.accuracy,
                    C_BLUE,
                    0.16,
                    0.48,
                    format!("{:.1}%", 100.0 * row.accuracy),
                ),
                (
                    row.macro_f1,
                    C_GREEN,
                    0.52,
                    0.84,
                    format!("{:.3}", row.macro_f1),
                ),
            ];
            for (v, colour, from, to, label) in bars {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x + from, 0.0), (x + to, v)],
                    colour.filled(),
                )))?;
                chart.draw_series(std::iter::once(
                    EmptyElement::at((x + (from + to) / 2.0, v))
                        + Text::new(
                            label,
                            (0, -4),
                            font(12.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
                        ),
                ))?;
            }
            chart.draw_series(std::iter::once(
                EmptyElement::at((x + 0.5, row.accuracy.max(row.macro_f1)))
                    + Text::new(
                        format!("SLM share {:.1}%", 100.0 * row.share_to_slm),
                        (0, -24),
                        bold(13.0)
                            .color(&C_MARK)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    ),
            ))?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- report.html

/// HTML-escapes text.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#222;
 margin:0;background:#f6f7f9}
main{max-width:1080px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 6px;border-bottom:1px solid #e3e3e3;
 padding-bottom:4px}
.meta{color:#666;font-size:14px;margin:0 0 18px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 180px;border:1px solid #e3e3e3;border-radius:8px;padding:10px 14px;background:#fafbfc}
.card .v{font-size:28px;font-weight:700}.card .k{font-size:13px;color:#666}
p,li{font-size:14.5px;line-height:1.5}.note{color:#666;font-size:13.5px}
figure{margin:12px 0 20px}figcaption{font-size:14px;color:#444;line-height:1.5;margin-top:4px}
.chart svg{max-width:100%;height:auto;border:1px solid #eee;border-radius:6px}
table{border-collapse:collapse;font-size:13.5px;margin:8px 0}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
th{background:#f3f4f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fbfbfc}
";

fn f1_cell(v: f64) -> String {
    let p = (100.0 * v).clamp(0.0, 100.0);
    format!(
        "<td class=\"n\" style=\"background:linear-gradient(90deg,#cfe6cb {p:.0}%,transparent \
         {p:.0}%)\">{v:.4}</td>"
    )
}

fn render_html(input: &ReportInput, op: Option<&OpStats>, charts: &[Chart]) -> String {
    let r = &input.report;
    let chart = |file: &str| {
        charts
            .iter()
            .find(|c| c.file == file)
            .map_or("", |c| c.svg.as_str())
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>triage evaluation: {model} on {data}</title>\n<style>{CSS}</style>\n</head>\n\
         <body>\n<main>\n<h1>Evaluation report</h1>\n\
         <p class=\"meta\">model <b>{model}</b> · data <b>{data}</b> · {n} messages · {k} labels · \
         triage {ver}</p>\n",
        model = esc(&input.model_version),
        data = esc(&input.data_name),
        n = r.n,
        k = r.labels.len(),
        ver = env!("CARGO_PKG_VERSION"),
    );
    // Headline figures, formatted as `triage eval` prints them.
    let _ = write!(
        h,
        "<div class=\"cards\">\n\
         <div class=\"card\"><div class=\"v\">{:.2}%</div><div class=\"k\">accuracy</div></div>\n\
         <div class=\"card\"><div class=\"v\">{:.4}</div><div class=\"k\">macro-F1</div></div>\n\
         <div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">messages</div></div>\n",
        100.0 * r.accuracy,
        r.macro_f1,
        r.n
    );
    if let Some(op) = op {
        let _ = writeln!(
            h,
            "<div class=\"card\"><div class=\"v\">{:.1}%</div><div class=\"k\">deferred to the \
             SLM at {}; kept accuracy {:.2}%</div></div>",
            100.0 * op.deferred,
            esc(&op.name),
            100.0 * op.kept_accuracy
        );
    }
    h.push_str("</div>\n");
    if let Some(unknown) = r.labels.iter().position(|l| l == "<unknown label>") {
        let _ = writeln!(
            h,
            "<p class=\"note\">{} messages have labels the model does not know; they count as \
             errors (row <i>&lt;unknown label&gt;</i>).</p>",
            r.confusion[unknown].iter().sum::<usize>()
        );
    }

    // Charts.
    let _ = write!(
        h,
        "<h2>Confusion matrix</h2>\n<figure><div class=\"chart\">{}</div><figcaption>Each row \
         is a true label, each column the label predicted. The colour is the share of the row: \
         a dark diagonal means most messages of each label are recognised; a dark cell off the \
         diagonal is a pair of labels the classifier mixes up.</figcaption></figure>\n",
        chart("confusion.svg")
    );
    let _ = write!(
        h,
        "<h2>Per class</h2>\n<figure><div class=\"chart\">{}</div><figcaption><b>Precision</b>: \
         of the messages given this label, the share that have it. <b>Recall</b>: of the \
         messages that have it, the share found. <b>F1</b>: their harmonic mean. Macro-F1 is \
         the unweighted mean of F1 over the classes.</figcaption></figure>\n",
        chart("per_class.svg")
    );
    let _ = write!(
        h,
        "<h2>Coverage and accuracy</h2>\n<figure><div class=\"chart\">{}</div><figcaption>The \
         router defers messages whose confidence is below a threshold to the small language \
         model (SLM). Moving right defers more: the blue line is the fast classifier's accuracy \
         on what it keeps, the orange line its accuracy on what it defers (the SLM must beat \
         this to help). The points are the thresholds of the table below.</figcaption>\
         </figure>\n",
        chart("coverage.svg")
    );
    let _ = write!(
        h,
        "<h2>Confidence</h2>\n<figure><div class=\"chart\">{}</div><figcaption>Where the \
         right (green) and the wrong (red) predictions fall by confidence, each as shares of \
         its own total. Errors piled up at low confidence are what a threshold can catch; \
         errors at high confidence are not.</figcaption></figure>\n",
        chart("confidence.svg")
    );
    if let Some(rows) = &input.cascade {
        let _ = write!(
            h,
            "<h2>Cascade</h2>\n<figure><div class=\"chart\">{}</div><figcaption>The fast \
             classifier alone, the SLM's second opinion, and the cascade (the SLM only for \
             unsure messages), with the share of messages each sends to the SLM.</figcaption>\
             </figure>\n<table><tr><th>run</th><th>accuracy</th><th>macro-F1</th><th>SLM \
             share</th></tr>\n",
            chart("cascade.svg")
        );
        for row in rows {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"n\">{:.2}%</td><td class=\"n\">{:.4}</td>\
                 <td class=\"n\">{:.1}%</td></tr>",
                esc(&row.name),
                100.0 * row.accuracy,
                row.macro_f1,
                100.0 * row.share_to_slm
            );
        }
        h.push_str("</table>\n");
    }

    // Tables.
    h.push_str(
        "<h2>Per-class table</h2>\n<table><tr><th>#</th><th>label</th><th>precision</th>\
         <th>recall</th><th>F1</th><th>support</th></tr>\n",
    );
    for (i, m) in r.per_class.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr><td class=\"n\">{i}</td><td>{}</td><td class=\"n\">{:.4}</td>\
             <td class=\"n\">{:.4}</td>{}<td class=\"n\">{}</td></tr>",
            esc(&m.label),
            m.precision,
            m.recall,
            f1_cell(m.f1),
            m.support
        );
    }
    h.push_str("</table>\n");
    let mut pairs: Vec<(usize, usize, usize)> = Vec::new();
    for (t, row) in r.confusion.iter().enumerate() {
        for (p, &v) in row.iter().enumerate() {
            if t != p && v > 0 {
                pairs.push((v, t, p));
            }
        }
    }
    pairs.sort_by(|a, b| b.cmp(a));
    if !pairs.is_empty() {
        h.push_str(
            "<h2>Most confused pairs</h2>\n<table><tr><th>messages</th><th>true label</th>\
             <th>predicted as</th><th>share of the true label</th></tr>\n",
        );
        for &(v, t, p) in pairs.iter().take(15) {
            let row_sum: usize = r.confusion[t].iter().sum();
            let _ = writeln!(
                h,
                "<tr><td class=\"n\">{v}</td><td>{}</td><td>{}</td><td class=\"n\">{:.1}%</td></tr>",
                esc(&r.labels[t]),
                esc(&r.labels[p]),
                100.0 * ratio(v, row_sum)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str(
        "<h2>Coverage table</h2>\n<table><tr><th>threshold</th><th>deferred</th>\
         <th>kept accuracy</th><th>deferred accuracy</th></tr>\n",
    );
    // Nothing kept (or nothing deferred) has no accuracy: a dash, as in the text.
    let pct = |a: Option<f64>| a.map_or("–".to_string(), |a| format!("{:.2}%", 100.0 * a));
    for c in &r.coverage {
        let _ = writeln!(
            h,
            "<tr><td class=\"n\">{:.2}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            c.threshold,
            100.0 * c.deferred,
            pct(c.kept_accuracy),
            pct(c.deferred_accuracy)
        );
    }
    h.push_str(
        "</table>\n<p class=\"note\">The charts are also in this directory as SVG files: \
         confusion.svg, per_class.svg, coverage.svg, confidence.svg",
    );
    if input.cascade.is_some() {
        h.push_str(", cascade.svg");
    }
    h.push_str(".</p>\n</main>\n</body>\n</html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(k: usize, n: usize) -> ReportInput {
        let labels: Vec<String> = (0..k).map(|i| format!("label_{i}")).collect();
        let truth: Vec<usize> = (0..n).map(|i| i % k).collect();
        // Every third message is predicted as the next label; confidence lower when wrong.
        let pred: Vec<usize> = truth
            .iter()
            .enumerate()
            .map(|(i, &t)| if i % 3 == 0 { (t + 1) % k } else { t })
            .collect();
        let conf: Vec<f32> = (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    0.4 + (i % 7) as f32 * 0.05
                } else {
                    0.6 + (i % 9) as f32 * 0.04
                }
            })
            .collect();
        let correct: Vec<bool> = truth.iter().zip(&pred).map(|(t, p)| t == p).collect();
        let report = EvalReport::new(&labels, &truth, &pred, &conf);
        ReportInput::new(report, "abc123", "test.jsonl", conf, correct)
    }

    #[test]
    fn small_report_has_counts_and_names() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| EvalError::io("tempdir", e))?;
        let mut inp = input(4, 200);
        inp.operating_point = Some(OperatingPoint::Threshold(0.6));
        let html = write_report(dir.path(), &inp)?;
        let page = std::fs::read_to_string(&html).map_err(|e| EvalError::io(&html, e))?;
        assert!(page.contains(&format!("{:.2}%", 100.0 * inp.report.accuracy)));
        assert!(page.contains("threshold 0.60"));
        // No confidence reaches 0.95: nothing kept, so no kept accuracy (a dash, not 0.00%).
        assert!(
            page.contains(
                "<td class=\"n\">0.95</td><td class=\"n\">100.0%</td><td class=\"n\">–</td>"
            ),
            "{page}"
        );
        let confusion = std::fs::read_to_string(dir.path().join("confusion.svg"))
            .map_err(|e| EvalError::io("confusion.svg", e))?;
        assert!(confusion.starts_with("<svg"));
        assert!(confusion.contains("label_3") && confusion.contains("predicted label"));
        assert!(!dir.path().join("cascade.svg").exists());
        Ok(())
    }

    #[test]
    fn many_labels_drop_cell_text_and_names() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| EvalError::io("tempdir", e))?;
        let mut inp = input(151, 3000);
        inp.operating_point = Some(OperatingPoint::Budget(0.25));
        inp.cascade = Some(vec![
            CascadeRow {
                name: "fast only".into(),
                accuracy: 0.8,
                macro_f1: 0.78,
                share_to_slm: 0.0,
            },
            CascadeRow {
                name: "cascade".into(),
                accuracy: 0.9,
                macro_f1: 0.88,
                share_to_slm: 0.25,
            },
        ]);
        write_report(dir.path(), &inp)?;
        let read =
            |f: &str| std::fs::read_to_string(dir.path().join(f)).map_err(|e| EvalError::io(f, e));
        let confusion = read("confusion.svg")?;
        assert!(
            !confusion.contains("label_150"),
            "names omitted at 151 labels"
        );
        assert!(confusion.contains("151 labels"));
        let per_class = read("per_class.svg")?;
        let bars = per_class.matches("label_").count();
        assert!(bars <= MAX_PER_CLASS_BARS, "{bars} classes drawn");
        let cascade = read("cascade.svg")?;
        assert!(cascade.contains("SLM share 25.0%") && cascade.contains("fast only"));
        Ok(())
    }

    #[test]
    fn budget_marks_the_least_confident_share() {
        let conf = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];
        let correct = [false, false, true, true, true, true, true, true, true, true];
        let s = operating_stats(&conf, &correct, Some(OperatingPoint::Budget(0.2)));
        let s = s.expect("stats");
        assert!((s.deferred - 0.2).abs() < 1e-12);
        assert!((s.kept_accuracy - 1.0).abs() < 1e-12);
        assert!(s.deferred_accuracy.abs() < 1e-12);
        assert!((s.threshold - 0.3).abs() < 1e-6);
    }

    #[test]
    fn inconsistent_input_is_an_error() {
        let mut inp = input(4, 40);
        inp.correct.pop();
        let dir = std::env::temp_dir().join("triage-report-never-written");
        assert!(matches!(
            write_report(&dir, &inp),
            Err(EvalError::Report(_))
        ));
    }
}
