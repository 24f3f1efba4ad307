//! A histogram made of atomics: an observation is one bucket increment and one add to the sum, with
//! no lock, so request and audit paths can observe on every call. (The client crate's own
//! histogram takes a mutex per observation.) Encoding goes through the crate's encoders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A cumulative histogram over fixed upper bounds (`le`), plus the implicit `+Inf` bucket.
/// Clones share the same series.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more than `bounds`: the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram over `bounds` (ascending upper bounds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        Histogram {
            inner: Arc::new(Inner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`.
    pub fn observe(&self, value: f64) {
        let inner = &self.inner;
        let bucket = inner.bounds.partition_point(|bound| *bound < value);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let mut current = inner.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match inner.sum.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
    }

    /// How many values were observed.
    pub fn count(&self) -> u64 {
        self.buckets().iter().map(|(_, count)| count).sum()
    }

    /// The sum of the observed values.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum.load(Ordering::Relaxed))
    }

    /// `(upper bound, observations in this bucket alone)`, `+Inf` last.
    fn buckets(&self) -> Vec<(f64, u64)> {
        let inner = &self.inner;
        inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter())
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The count is read from the same bucket snapshot, so `_count` equals the `+Inf` bucket.
        let buckets = self.buckets();
        let count = buckets.iter().map(|(_, count)| count).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_a_bound_counts_in_that_bucket() {
        let histogram = Histogram::new(&[0.1, 1.0]);
        for value in [0.1, 0.5, 1.0, 7.0] {
            histogram.observe(value);
        }
        assert_eq!(
            histogram.buckets(),
            [(0.1, 1), (1.0, 2), (f64::INFINITY, 1)]
        );
        assert_eq!(histogram.count(), 4);
        assert!((histogram.sum() - 8.6).abs() < 1e-9);
    }

    #[test]
    fn observations_from_many_threads_are_all_counted() {
        let histogram = Histogram::new(&[1.0]);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| (0..1000).for_each(|_| histogram.observe(0.5)));
            }
        });
        assert_eq!(histogram.count(), 4000);
        assert!((histogram.sum() - 2000.0).abs() < 1e-9);
    }
}
