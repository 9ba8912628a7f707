//! Latency percentiles and throughput of a benchmark run.

use std::time::Duration;

/// Latencies of successful operations and the count of failures.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    latencies: Vec<Duration>,
    /// Failed operations.
    pub errors: u64,
    /// Payload bytes moved by successful operations.
    pub bytes: u64,
}

impl Stats {
    /// Records one successful operation.
    pub fn record(&mut self, latency: Duration, bytes: u64) {
        self.latencies.push(latency);
        self.bytes += bytes;
    }

    /// Adds another run's figures.
    pub fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.bytes += other.bytes;
    }

    /// Successful operations.
    pub fn ops(&self) -> usize {
        self.latencies.len()
    }

    /// The `p`-th percentile (0..=100) latency, nearest-rank.
    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Stats::default();
        for ms in (1..=100).rev() {
            s.record(Duration::from_millis(ms), 10);
        }
        assert_eq!(s.percentile(50.0), Duration::from_millis(50));
        assert_eq!(s.percentile(99.0), Duration::from_millis(99));
        assert_eq!(s.percentile(100.0), Duration::from_millis(100));
        assert_eq!(s.bytes, 1000);
        assert_eq!(Stats::default().percentile(50.0), Duration::ZERO);
    }
}
