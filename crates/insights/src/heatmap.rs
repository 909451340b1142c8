//! Bottleneck heatmaps: where approvals wait. Step × approver (how long each person keeps each
//! step waiting, and how much of it is open on them now) and step × hour of the week (how long
//! steps that start in that hour take, and how many are open then on average), as data and as
//! SVG pictures drawn with `plotters`. Hours are UTC.

use std::collections::BTreeMap;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use crate::facts::{Millis, RequestFacts};
use crate::stats::{Window, median};

const HOUR: Millis = 3_600_000;
const WEEK_HOURS: usize = 168;
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A step of a policy: a heatmap's row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Row {
    pub policy: String,
    pub step: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cell {
    /// Assignments (step × approver) or activations (step × hour) counted.
    pub count: usize,
    /// Median wait in seconds: until the person acted (step × approver) or the step was
    /// decided (step × hour); what is still open counts with its age so far.
    pub median_wait: Option<f64>,
    /// Open now on that person (step × approver), or open on average during that hour of the
    /// week (step × hour).
    pub open: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heatmap {
    /// `approver` or `hour_of_week`.
    pub kind: &'static str,
    pub rows: Vec<Row>,
    /// Approver ids, or `Mon 00` … `Sun 23`.
    pub columns: Vec<String>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<Cell>>,
}

/// The hour of the week (Monday 00:00 UTC is 0) of a moment.
pub fn hour_of_week(t: Millis) -> usize {
    // 1970-01-01 was a Thursday: day 3 of a week that starts on Monday.
    let hours = t.div_euclid(HOUR);
    ((hours + 3 * 24).rem_euclid(WEEK_HOURS as i64)) as usize
}

/// Step × approver over the assignments made in `window`.
pub fn by_approver<'a>(facts: impl IntoIterator<Item = &'a RequestFacts>, window: &Window, now: Millis) -> Heatmap {
    let mut waits: BTreeMap<(Row, String), (Vec<Millis>, usize)> = BTreeMap::new();
    for r in facts.into_iter().filter(|r| window.policy.as_ref().is_none_or(|p| *p == r.policy)) {
        for s in &r.steps {
            for a in s.assignments.iter().filter(|a| a.from >= window.from && a.from < window.to) {
                let e = waits.entry((Row { policy: r.policy.clone(), step: s.id.clone() }, a.approver.clone())).or_default();
                e.0.push(a.waited(now));
                e.1 += usize::from(a.is_open());
            }
        }
    }
    let rows: Vec<Row> = dedup(waits.keys().map(|(r, _)| r.clone()));
    let columns: Vec<String> = dedup(waits.keys().map(|(_, a)| a.clone()));
    let mut cells = vec![vec![Cell::default(); columns.len()]; rows.len()];
    for ((row, approver), (w, open)) in waits {
        let (i, j) = (index(&rows, &row), index(&columns, &approver));
        cells[i][j] = Cell { count: w.len(), median_wait: median(w), open: open as f64 };
    }
    Heatmap { kind: "approver", rows, columns, cells }
}

/// Step × hour of the week over the activations in `window`: the median time to decision of
/// steps activated in each hour, and the mean number open during it.
pub fn by_hour<'a>(facts: impl IntoIterator<Item = &'a RequestFacts>, window: &Window, now: Millis) -> Heatmap {
    let end = window.to.min(now);
    let mut waits: BTreeMap<Row, Vec<Vec<Millis>>> = BTreeMap::new();
    let mut load: BTreeMap<Row, Vec<f64>> = BTreeMap::new();
    let mut first: Option<Millis> = None;
    for r in facts.into_iter().filter(|r| window.policy.as_ref().is_none_or(|p| *p == r.policy)) {
        for s in &r.steps {
            let Some(from) = s.activated else { continue };
            first = Some(first.map_or(from, |f| f.min(from)));
            let until = s.decided.unwrap_or(now);
            let row = || Row { policy: r.policy.clone(), step: s.id.clone() };
            if from >= window.from && from < window.to {
                waits.entry(row()).or_insert_with(|| vec![Vec::new(); WEEK_HOURS])[hour_of_week(from)].push(until - from);
            }
            // Time open within the window, spread over the hours it covers.
            let (a, b) = (from.max(window.from), until.min(end));
            if a < b {
                let hours = load.entry(row()).or_insert_with(|| vec![0.0; WEEK_HOURS]);
                let mut t = a;
                while t < b {
                    let next = ((t.div_euclid(HOUR)) + 1) * HOUR;
                    hours[hour_of_week(t)] += (next.min(b) - t) as f64 / HOUR as f64;
                    t = next;
                }
            }
        }
    }
    // How much of each hour of the week the window covers: the mean's denominator (from the
    // first activation on, so a window opened at year 1 costs no more than its history).
    let mut covered = [0.0f64; WEEK_HOURS];
    let mut t = window.from.max(first.unwrap_or(end));
    while t < end {
        let next = ((t.div_euclid(HOUR)) + 1) * HOUR;
        covered[hour_of_week(t)] += (next.min(end) - t) as f64 / HOUR as f64;
        t = next;
    }
    let rows: Vec<Row> = dedup(waits.keys().chain(load.keys()).cloned());
    let columns = (0..WEEK_HOURS).map(|h| format!("{} {:02}", DAYS[h / 24], h % 24)).collect();
    let cells = rows
        .iter()
        .map(|row| {
            (0..WEEK_HOURS)
                .map(|h| {
                    let w = waits.get(row).map(|w| w[h].clone()).unwrap_or_default();
                    let open = load.get(row).map_or(0.0, |l| l[h]);
                    Cell { count: w.len(), median_wait: median(w), open: if covered[h] > 0.0 { open / covered[h] } else { 0.0 } }
                })
                .collect()
        })
        .collect();
    Heatmap { kind: "hour_of_week", rows, columns, cells }
}

fn dedup<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort();
    v.dedup();
    v
}

fn index<T: PartialEq>(items: &[T], item: &T) -> usize {
    items.iter().position(|x| x == item).unwrap_or(0)
}

/// What a picture colours its cells by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    MedianWait,
    Open,
}

/// A duration in seconds, short: `40s`, `12m`, `3h`, `2d`.
pub fn short(seconds: f64) -> String {
    let s = seconds.round() as i64;
    match s {
        ..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{:.1}h", seconds / 3600.0).replace(".0h", "h"),
        _ => format!("{:.1}d", seconds / 86_400.0).replace(".0d", "d"),
    }
}

/// Light yellow through orange to dark red, for `t` in 0..=1.
fn ramp(t: f64) -> RGBColor {
    let stops = [(255.0, 247.0, 236.0), (253.0, 187.0, 132.0), (239.0, 101.0, 72.0), (179.0, 0.0, 0.0)];
    let t = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
    let i = (t.floor() as usize).min(stops.len() - 2);
    let f = t - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The heatmap as an SVG picture, coloured by `measure` (on a log scale for waits).
pub fn svg(map: &Heatmap, title: &str, measure: Measure) -> String {
    let value = |c: &Cell| match measure {
        Measure::MedianWait => c.median_wait,
        Measure::Open => (c.open > 0.0).then_some(c.open),
    };
    let max = map.cells.iter().flatten().filter_map(value).fold(0.0f64, f64::max);
    let scale = |v: f64| match measure {
        Measure::MedianWait => (1.0 + v).ln() / (1.0 + max).ln().max(f64::MIN_POSITIVE),
        Measure::Open => v / max.max(f64::MIN_POSITIVE),
    };
    let hourly = map.kind == "hour_of_week";
    let (cell_w, cell_h) = if hourly { (6u32, 26u32) } else { (96, 44) };
    let label_w = 20 + 7 * map.rows.iter().map(|r| r.policy.len() + r.step.len() + 1).max().unwrap_or(8) as u32;
    let width = label_w + cell_w * map.columns.len().max(1) as u32 + 30;
    let height = 100 + cell_h * map.rows.len().max(1) as u32 + if hourly { 30 } else { 60 };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let (cols, rows) = (map.columns.len().max(1) as i32, map.rows.len().max(1) as i32);
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(if hourly { 24 } else { 48 })
                .y_label_area_size(label_w)
                // (An integer range includes its end: `0..n - 1` makes n segments.)
                .build_cartesian_2d((0..cols - 1).into_segmented(), (0..rows - 1).into_segmented())?;
            let row_label = |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(i) => map.rows.get((rows - 1 - i) as usize).map_or(String::new(), |r| format!("{}/{}", r.policy, r.step)),
                _ => String::new(),
            };
            let column_label = |v: &SegmentValue<i32>| match v {
                SegmentValue::CenterOf(i) if hourly => if i % 24 == 12 { DAYS[*i as usize / 24].to_string() } else { String::new() },
                SegmentValue::CenterOf(i) => map.columns.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            };
            chart
                .configure_mesh()
                .disable_mesh()
                .set_tick_mark_size(LabelAreaPosition::Bottom, if hourly { 0 } else { 5 })
                .x_labels(map.columns.len().max(1))
                .y_labels(map.rows.len().max(1))
                .x_label_formatter(&column_label)
                .y_label_formatter(&row_label)
                .label_style(("sans-serif", 13))
                .draw()?;
            let at = |x: i32, y: i32| (SegmentValue::Exact(x), SegmentValue::Exact(y));
            for (i, row) in map.cells.iter().enumerate() {
                let y = rows - 1 - i as i32;
                for (j, cell) in row.iter().enumerate() {
                    let x = j as i32;
                    let fill = value(cell).map_or(RGBColor(238, 238, 238), |v| ramp(scale(v)));
                    chart.draw_series(std::iter::once(Rectangle::new([at(x, y), at(x + 1, y + 1)], fill.filled())))?;
                    if !hourly {
                        chart.draw_series(std::iter::once(Rectangle::new([at(x, y), at(x + 1, y + 1)], WHITE.stroke_width(2))))?;
                        let text = match (cell.median_wait, cell.count) {
                            (_, 0) => String::new(),
                            (Some(w), _) => format!("{} · {} open", short(w), cell.open),
                            (None, _) => format!("{} open", cell.open),
                        };
                        let dark = value(cell).is_some_and(|v| scale(v) > 0.6);
                        let style = ("sans-serif", 12).into_font().color(if dark { &WHITE } else { &BLACK }).pos(Pos::new(HPos::Center, VPos::Center));
                        chart.draw_series(std::iter::once(Text::new(text, (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)), style)))?;
                    }
                }
            }
            if hourly {
                // A line between days.
                for day in 1..7 {
                    chart.draw_series(std::iter::once(PathElement::new(vec![at(day * 24, 0), at(day * 24, rows)], WHITE.stroke_width(2))))?;
                }
            }
            let legend = match measure {
                Measure::MedianWait => format!("colour: median wait, log scale, up to {}; grey: none", short(max)),
                Measure::Open => format!("colour: open at once on average, up to {max:.1}; grey: none"),
            };
            root.draw(&Text::new(legend, (label_w as i32, height as i32 - 18), ("sans-serif", 12)))?;
            root.present()?;
            Ok(())
        })();
        if let Err(e) = drawn {
            // Drawing into a string cannot fail for want of a device; say so in the picture.
            return format!("<svg xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"20\">cannot draw: {}</text></svg>", escape(&e.to_string()));
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_of_the_week_start_on_monday() {
        let monday: Millis = jiff::Timestamp::from_second(1_764_547_200).unwrap().as_millisecond(); // 2025-12-01T00:00Z, a Monday
        assert_eq!(hour_of_week(monday), 0);
        assert_eq!(hour_of_week(monday + 25 * HOUR), 25);
        assert_eq!(hour_of_week(monday - HOUR), 167);
    }

    fn request(id: &str, activated: Millis, decided: Option<Millis>) -> RequestFacts {
        use crate::facts::{Assignment, StepFacts, Verdict};
        use signoff_engine::state::StepStatus;
        RequestFacts {
            id: id.into(),
            policy: "p".into(),
            version: 1,
            requester: "alice".into(),
            submitted: activated,
            status: if decided.is_some() { signoff_engine::RequestStatus::Approved } else { signoff_engine::RequestStatus::Pending },
            decided,
            expires: None,
            auto_approved: false,
            resubmits: None,
            context: serde_json::json!({}),
            steps: vec![StepFacts {
                id: "a".into(),
                status: if decided.is_some() { StepStatus::Approved } else { StepStatus::Active },
                activated: Some(activated),
                due: None,
                deadline: None,
                decided,
                escalations: 0,
                timed_out: false,
                assignments: vec![Assignment { approver: "mark".into(), from: activated, acted: decided, verdict: decided.map(|_| Verdict::Approved), released: None }],
            }],
        }
    }

    #[test]
    fn heatmaps_by_hand() {
        // Monday 10:00 UTC: one step decided at 12:00, one activated at 10:30 still open at 11:30.
        let monday = 1_764_547_200_000; // 2025-12-01T00:00Z
        let (ten, now) = (monday + 10 * HOUR, monday + 11 * HOUR + HOUR / 2);
        let facts = [request("r1", ten, Some(ten + 2 * HOUR)), request("r2", ten + HOUR / 2, None)];
        let window = Window { from: 0, to: Millis::MAX, policy: None };
        let by_hour = by_hour(&facts, &window, now);
        let (mon10, mon11) = (&by_hour.cells[0][10], &by_hour.cells[0][11]);
        // Both started in Monday's 10 o'clock: 2 h and (so far) 1 h, nearest-rank median 1 h.
        assert_eq!((mon10.count, mon10.median_wait), (2, Some(3600.0)));
        // Open at 10: r1 the whole hour, r2 half of it; at 11 (up to now, 11:30) both, for the
        // half hour the window has: means of 1.5 and 2.
        assert_eq!((mon10.open, mon11.open), (1.5, 2.0));
        assert_eq!(by_hour.columns[10], "Mon 10");
        let by_approver = by_approver(&facts, &window, now);
        assert_eq!(by_approver.columns, ["mark"]);
        assert_eq!(by_approver.cells[0][0], Cell { count: 2, median_wait: Some(3600.0), open: 1.0 });
    }

    #[test]
    fn the_ramp_runs_light_to_dark() {
        assert_eq!(ramp(0.0), RGBColor(255, 247, 236));
        assert_eq!(ramp(1.0), RGBColor(179, 0, 0));
        assert_eq!(short(5400.0), "1.5h");
        assert_eq!(short(172_800.0), "2d");
    }
}
