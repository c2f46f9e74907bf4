//! Pure, bounded in-memory history: one ring buffer per pod and series, and the counter
//! arithmetic (increase and rate across counter resets) computed from it.
//!
//! Everything here is sized at construction, so memory per pod is fixed whatever the
//! targets send or how long the dashboard runs.

use std::collections::VecDeque;

use crate::parse::{PodSample, Series, SERIES_COUNT};

/// A fixed-capacity FIFO: pushing onto a full ring drops the oldest element.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    /// A ring holding at most `capacity` elements (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            items: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends `item`, evicting the oldest one when full.
    pub fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// Number of stored elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Oldest to newest.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    /// The newest element.
    pub fn last(&self) -> Option<&T> {
        self.items.back()
    }
}

/// A timestamped value: `(unix seconds, value)`.
pub type Point = (f64, f64);

/// Total increase of a counter over `points` (oldest first), treating any decrease as a
/// counter reset (process restart) after which the counter started again from zero.
///
/// Non-finite values (missing samples) are skipped.
pub fn counter_increase(points: &[Point]) -> f64 {
    let mut total = 0.0;
    let mut prev: Option<f64> = None;
    for &(_, v) in points {
        if !v.is_finite() {
            continue;
        }
        if let Some(p) = prev {
            total += if v >= p { v - p } else { v };
        }
        prev = Some(v);
    }
    total
}

/// Per-second rate of a counter over `points`: increase divided by the time covered.
/// `None` with fewer than two finite samples (a rate needs two scrapes).
pub fn counter_rate(points: &[Point]) -> Option<f64> {
    let finite: Vec<&Point> = points.iter().filter(|(_, v)| v.is_finite()).collect();
    let (first, last) = (finite.first()?, finite.last()?);
    let dt = last.0 - first.0;
    if finite.len() < 2 || dt <= 0.0 {
        return None;
    }
    Some(counter_increase(points) / dt)
}

/// Per-interval rates between consecutive samples (for sparklines of counters), stamped at
/// the later sample. Resets count from zero, like [`counter_increase`].
pub fn rate_series(points: &[Point]) -> Vec<Point> {
    let mut out = Vec::with_capacity(points.len().saturating_sub(1));
    let mut prev: Option<Point> = None;
    for &(t, v) in points {
        if !v.is_finite() {
            continue;
        }
        if let Some((pt, pv)) = prev {
            let dt = t - pt;
            if dt > 0.0 {
                let inc = if v >= pv { v - pv } else { v };
                out.push((t, inc / dt));
            }
        }
        prev = Some((t, v));
    }
    out
}

/// Per-pod history: one ring per [`Series`] plus a shared timestamp ring, and a smaller ring
/// of latency histograms for windowed percentiles.
#[derive(Debug, Clone)]
pub struct PodHistory {
    times: Ring<f64>,
    series: Vec<Ring<f64>>,
    latency: Ring<(f64, Vec<(f64, f64)>)>,
}

impl PodHistory {
    /// History of `capacity` scrapes per series and `latency_capacity` histograms.
    pub fn new(capacity: usize, latency_capacity: usize) -> Self {
        Self {
            times: Ring::new(capacity),
            series: (0..SERIES_COUNT).map(|_| Ring::new(capacity)).collect(),
            latency: Ring::new(latency_capacity),
        }
    }

    /// Records one successful scrape taken at `at` (unix seconds).
    pub fn record(&mut self, at: f64, sample: &PodSample) {
        self.times.push(at);
        for s in Series::ALL {
            self.series[s.index()].push(sample.get(s));
        }
        if !sample.latency_buckets.is_empty() {
            self.latency.push((at, sample.latency_buckets.clone()));
        }
    }

    /// Number of recorded scrapes (bounded by the capacity).
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether no scrape was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Points of `series` taken at or after `since` (unix seconds), oldest first.
    pub fn points_since(&self, series: Series, since: f64) -> Vec<Point> {
        // Timestamps are ascending: walk back from the newest so short windows (rates) cost
        // only the points inside them, not the whole history.
        let n = self.times.iter().rev().take_while(|t| **t >= since).count();
        let skip = self.times.len() - n;
        self.times
            .iter()
            .skip(skip)
            .zip(self.series[series.index()].iter().skip(skip))
            .map(|(t, v)| (*t, *v))
            .collect()
    }

    /// The latest value of `series`, if any (may be `NaN` when the target lacks it).
    pub fn latest(&self, series: Series) -> Option<f64> {
        self.series[series.index()].last().copied()
    }

    /// Timestamp of the newest recorded scrape.
    pub fn latest_time(&self) -> Option<f64> {
        self.times.last().copied()
    }

    /// Per-second rate of counter `series` over the window starting at `since`.
    pub fn rate_since(&self, series: Series, since: f64) -> Option<f64> {
        counter_rate(&self.points_since(series, since))
    }

    /// Increase of counter `series` over the window starting at `since`.
    pub fn increase_since(&self, series: Series, since: f64) -> f64 {
        counter_increase(&self.points_since(series, since))
    }

    /// Estimated quantile `q` of operation latency (seconds) over the window starting at
    /// `since`, from the oldest and newest histograms inside it.
    pub fn latency_quantile_since(&self, q: f64, since: f64) -> Option<f64> {
        let newest = self.latency.last()?;
        let oldest = self
            .latency
            .iter()
            .find(|(t, _)| *t >= since)
            .filter(|(t, _)| *t < newest.0);
        let older: &[(f64, f64)] = oldest.map(|(_, b)| b.as_slice()).unwrap_or(&[]);
        crate::parse::histogram_quantile(q, &newest.1, older)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_keeps_newest() {
        let mut r = Ring::new(3);
        for i in 0..10 {
            r.push(i);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![7, 8, 9]);
        assert_eq!(r.last(), Some(&9));
        assert_eq!(Ring::<u8>::new(0).capacity(), 1);
    }

    #[test]
    fn increase_without_reset() {
        let pts = [(0.0, 1.0), (5.0, 3.0), (10.0, 7.0)];
        assert_eq!(counter_increase(&pts), 6.0);
        assert_eq!(counter_rate(&pts), Some(0.6));
    }

    #[test]
    fn increase_across_counter_reset() {
        // 10 -> 12 (+2), restart -> 3 (+3 since reset), -> 5 (+2).
        let pts = [(0.0, 10.0), (1.0, 12.0), (2.0, 3.0), (3.0, 5.0)];
        assert_eq!(counter_increase(&pts), 7.0);
        let rate = counter_rate(&pts).unwrap();
        assert!((rate - 7.0 / 3.0).abs() < 1e-12);
        assert_eq!(rate_series(&pts), vec![(1.0, 2.0), (2.0, 3.0), (3.0, 2.0)]);
    }

    #[test]
    fn rate_needs_two_samples_and_skips_missing() {
        assert_eq!(counter_rate(&[]), None);
        assert_eq!(counter_rate(&[(1.0, 5.0)]), None);
        assert_eq!(counter_rate(&[(1.0, 5.0), (1.0, 6.0)]), None);
        let pts = [(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)];
        assert_eq!(counter_rate(&pts), Some(1.0));
        assert_eq!(rate_series(&pts), vec![(2.0, 1.0)]);
    }

    #[test]
    fn pod_history_windows_and_quantiles() {
        let mut h = PodHistory::new(4, 4);
        for i in 0..6 {
            let mut s = crate::parse::parse_metrics(
                "# TYPE strata_service_panics_total counter\nstrata_service_panics_total{operation=\"get\"} 0\n",
            )
            .unwrap();
            s.values[Series::Panics.index()] = i as f64;
            s.latency_buckets = vec![(0.1, i as f64 * 10.0), (f64::INFINITY, i as f64 * 10.0)];
            h.record(i as f64 * 10.0, &s);
        }
        assert_eq!(h.len(), 4);
        assert_eq!(h.latest(Series::Panics), Some(5.0));
        assert_eq!(
            h.points_since(Series::Panics, 30.0),
            vec![(30.0, 3.0), (40.0, 4.0), (50.0, 5.0)]
        );
        assert_eq!(h.increase_since(Series::Panics, 0.0), 3.0);
        assert_eq!(h.rate_since(Series::Panics, 40.0), Some(0.1));
        let p = h.latency_quantile_since(0.99, 30.0).unwrap();
        assert!(p > 0.0 && p <= 0.1);
    }
}
