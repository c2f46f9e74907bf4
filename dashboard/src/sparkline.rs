//! Pure SVG sparklines, drawn on the server so pages need no JavaScript or chart library.
//!
//! The output contains only numbers produced here and a caption built from numbers, so it is
//! safe to embed unescaped in HTML.

use std::fmt::Write;

/// Size and padding of a sparkline in SVG user units (= CSS pixels at 1x).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl Default for Size {
    fn default() -> Self {
        Self {
            width: 120.0,
            height: 24.0,
        }
    }
}

/// Maps `(time, value)` points into SVG coordinates: time onto `[0, width]`, value onto
/// `[height - 1, 1]` with the baseline at `min(0, min value)` so that rates and counts are
/// never drawn as if they started at their minimum. Non-finite values are dropped.
///
/// A single point becomes a flat line across the whole width (there is no trend to draw);
/// an all-zero series sits on the baseline.
pub fn scale(points: &[(f64, f64)], size: Size) -> Vec<(f64, f64)> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    if pts.is_empty() {
        return Vec::new();
    }
    let (t0, t1) = (pts[0].0, pts[pts.len() - 1].0);
    let lo = pts.iter().map(|p| p.1).fold(0.0_f64, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let span_v = hi - lo;
    let top = 1.0;
    let bottom = size.height - 1.0;
    let y = |v: f64| {
        if span_v <= 0.0 {
            bottom
        } else {
            bottom - (v - lo) / span_v * (bottom - top)
        }
    };
    if pts.len() == 1 || t1 <= t0 {
        let yy = y(pts[pts.len() - 1].1);
        return vec![(0.0, yy), (size.width, yy)];
    }
    // More points than pixel columns cannot be seen: keep, per column, the highest value so
    // that spikes (a single panic, a burst of 429s) survive the reduction.
    let columns = size.width.max(1.0) as usize + 1;
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(pts.len().min(columns));
    let mut last_col = usize::MAX;
    for &(t, v) in &pts {
        let x = (t - t0) / (t1 - t0) * size.width;
        let col = x.round() as usize;
        let yy = y(v);
        if col == last_col && pts.len() > columns {
            if let Some(prev) = out.last_mut() {
                if yy < prev.1 {
                    prev.1 = yy;
                }
            }
            continue;
        }
        last_col = col;
        out.push((if pts.len() > columns { col as f64 } else { x }, yy));
    }
    out
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Renders an inline `<svg>` sparkline with an accessible caption (`label`, plus min / max /
/// last), so the numbers are readable as text too, not just as a shape.
///
/// `label` must be a fixed, trusted string (it is not escaped); series names are.
pub fn render(points: &[(f64, f64)], size: Size, label: &'static str) -> String {
    let scaled = scale(points, size);
    let finite: Vec<f64> = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .collect();
    let mut svg = String::with_capacity(160 + scaled.len() * 14);
    let caption = match (finite.first(), finite.last()) {
        (Some(_), Some(last)) => {
            let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
            let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!(
                "{label}: last {}, min {}, max {}",
                fmt_num(*last),
                fmt_num(min),
                fmt_num(max)
            )
        }
        _ => format!("{label}: no data yet"),
    };
    let _ = write!(
        svg,
        r#"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{caption}"><title>{caption}</title>"#,
        w = size.width,
        h = size.height,
    );
    if scaled.is_empty() {
        let _ = write!(
            svg,
            r#"<line class="spark-empty" x1="0" y1="{y}" x2="{w}" y2="{y}"/>"#,
            y = size.height / 2.0,
            w = size.width
        );
    } else {
        svg.push_str(r#"<polyline class="spark-line" fill="none" points=""#);
        for (i, (x, y)) in scaled.iter().enumerate() {
            if i > 0 {
                svg.push(' ');
            }
            let _ = write!(svg, "{x:.1},{y:.1}");
        }
        svg.push_str(r#""/>"#);
        let (lx, ly) = scaled[scaled.len() - 1];
        let _ = write!(
            svg,
            r#"<circle class="spark-dot" cx="{lx:.1}" cy="{ly:.1}" r="1.5"/>"#
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Size = Size {
        width: 100.0,
        height: 22.0,
    };

    #[test]
    fn known_series_scales_to_box() {
        let pts = [(0.0, 0.0), (5.0, 10.0), (10.0, 5.0)];
        assert_eq!(
            scale(&pts, S),
            vec![(0.0, 21.0), (50.0, 1.0), (100.0, 11.0)]
        );
        let svg = render(&pts, S, "ops/s");
        assert!(
            svg.contains(r#"points="0.0,21.0 50.0,1.0 100.0,11.0""#),
            "{svg}"
        );
        assert!(
            svg.contains("<title>ops/s: last 5, min 0, max 10</title>"),
            "{svg}"
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn baseline_is_zero_for_positive_series() {
        // 10 and 20: 10 sits half-way up, not at the bottom.
        let pts = [(0.0, 10.0), (1.0, 20.0)];
        assert_eq!(scale(&pts, S), vec![(0.0, 11.0), (100.0, 1.0)]);
        // Negative values lower the baseline.
        let neg = [(0.0, -10.0), (1.0, 10.0)];
        assert_eq!(scale(&neg, S), vec![(0.0, 21.0), (100.0, 1.0)]);
    }

    #[test]
    fn empty_series_renders_placeholder() {
        assert!(scale(&[], S).is_empty());
        let svg = render(&[], S, "panics");
        assert!(svg.contains("spark-empty"));
        assert!(svg.contains("panics: no data yet"));
        assert!(!svg.contains("polyline"));
        // Only non-finite values count as empty too.
        assert!(scale(&[(0.0, f64::NAN)], S).is_empty());
    }

    #[test]
    fn single_point_is_a_flat_line() {
        assert_eq!(scale(&[(3.0, 7.0)], S), vec![(0.0, 1.0), (100.0, 1.0)]);
        assert_eq!(scale(&[(3.0, 0.0)], S), vec![(0.0, 21.0), (100.0, 21.0)]);
        let svg = render(&[(3.0, 7.0)], S, "in flight");
        assert!(svg.contains("last 7, min 7, max 7"));
    }

    #[test]
    fn long_series_is_reduced_to_pixel_columns_keeping_spikes() {
        let mut pts: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, 0.0)).collect();
        pts[501].1 = 5.0;
        let scaled = scale(&pts, S);
        assert!(scaled.len() <= 101, "{}", scaled.len());
        assert_eq!(
            scaled.iter().filter(|p| p.1 == 1.0).count(),
            1,
            "the spike survives"
        );
        assert_eq!(scaled.first().unwrap().0, 0.0);
        assert_eq!(scaled.last().unwrap().0, 100.0);
    }

    #[test]
    fn flat_zero_series_sits_on_baseline() {
        let pts = [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)];
        assert!(scale(&pts, S).iter().all(|&(_, y)| y == 21.0));
    }
}
