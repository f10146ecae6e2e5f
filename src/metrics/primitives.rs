//! The building blocks: lock-free counters and gauges, fixed-bucket histograms, and labelled
//! families (a small map from label values to one metric each).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (open connections).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more until the guard drops (a connection while it is open).
    pub fn track(self: &Arc<Self>) -> GaugeGuard {
        self.inc();
        GaugeGuard(self.clone())
    }
}

/// Decrements its [`Gauge`] on drop.
#[derive(Debug)]
pub struct GaugeGuard(Arc<Gauge>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Observations counted into fixed buckets (upper bounds, ascending; `+Inf` is implied).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bucket (not cumulative), the last one for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

/// A consistent-enough reading of a histogram: `cumulative` ends with the count.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    /// Cumulative counts per bound, then `+Inf`.
    pub cumulative: Vec<u64>,
    pub sum: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Counts `value` into the first bucket whose bound is ≥ it (`le` semantics).
    pub fn observe(&self, value: f64) {
        let index = self.bounds.partition_point(|bound| *bound < value);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|count| {
                total += count.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// Label values of a family member, in the order of the family's label names.
pub trait Labels: Eq + Hash + Clone {
    fn values(&self) -> Vec<String>;
}

impl Labels for &'static str {
    fn values(&self) -> Vec<String> {
        vec![self.to_string()]
    }
}

impl Labels for String {
    fn values(&self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl Labels for (&'static str, &'static str) {
    fn values(&self) -> Vec<String> {
        vec![self.0.to_string(), self.1.to_string()]
    }
}

impl Labels for (String, &'static str) {
    fn values(&self) -> Vec<String> {
        vec![self.0.clone(), self.1.to_string()]
    }
}

impl Labels for (&'static str, &'static str, u16) {
    fn values(&self) -> Vec<String> {
        vec![self.0.to_string(), self.1.to_string(), self.2.to_string()]
    }
}

/// One metric per distinct label set, created on first use. Label values must come from a
/// bounded set (route patterns, tool names, outcomes), never from raw input.
pub struct Family<K, M> {
    members: RwLock<HashMap<K, M>>,
    make: fn() -> M,
}

impl<K: Labels, M> Family<K, M> {
    pub fn new(make: fn() -> M) -> Family<K, M> {
        Family {
            members: RwLock::new(HashMap::new()),
            make,
        }
    }

    /// Runs `f` on the member for `key` (a read lock, or a write lock the first time).
    pub fn with<R>(&self, key: K, f: impl FnOnce(&M) -> R) -> R {
        {
            let members = self.members.read().unwrap_or_else(|p| p.into_inner());
            if let Some(member) = members.get(&key) {
                return f(member);
            }
        }
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        f(members.entry(key).or_insert_with(self.make))
    }

    /// Every member's label values with `read` of it, sorted by label values.
    pub fn collect<T>(&self, read: impl Fn(&M) -> T) -> Vec<(Vec<String>, T)> {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(Vec<String>, T)> = members
            .iter()
            .map(|(key, member)| (key.values(), read(member)))
            .collect();
        drop(members);
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_le_and_cumulative() {
        let histogram = Histogram::new(&[1.0, 2.0]);
        for value in [0.5, 1.0, 1.5, 3.0] {
            histogram.observe(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative, vec![2, 3, 4]);
        assert_eq!(snapshot.count(), 4);
        assert_eq!(snapshot.sum, 6.0);
    }

    #[test]
    fn gauge_guards_count_while_alive() {
        let gauge = Arc::new(Gauge::default());
        let a = gauge.track();
        let b = gauge.track();
        assert_eq!(gauge.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn families_make_members_on_first_use_and_list_them_sorted() {
        let family: Family<(&'static str, &'static str), Counter> = Family::new(Counter::default);
        family.with(("b", "x"), |c| c.add(2));
        family.with(("a", "y"), Counter::inc);
        family.with(("b", "x"), Counter::inc);
        let all = family.collect(Counter::get);
        assert_eq!(
            all,
            vec![
                (vec!["a".to_string(), "y".to_string()], 1),
                (vec!["b".to_string(), "x".to_string()], 3)
            ]
        );
    }
}
