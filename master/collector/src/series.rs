//! Per-node time series at a fixed resolution (15 s by default) kept in bounded rings
//! (1 hour by default).
use std::collections::VecDeque;

use orca_proto::topology::v1 as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesConfig {
    pub resolution_ms: i64,
    /// Points kept per series.
    pub capacity: usize,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        Self {
            resolution_ms: 15_000,
            capacity: 240,
        }
    }
}

/// One metric of one node: at most one point per resolution bucket (the latest sample in the
/// bucket wins), at most `capacity` buckets.
#[derive(Debug, Clone, Default)]
pub struct Series {
    points: VecDeque<(i64, f32)>,
}

impl Series {
    pub fn record(&mut self, config: &SeriesConfig, timestamp_ms: i64, value: f64) {
        let bucket = timestamp_ms.div_euclid(config.resolution_ms);
        match self.points.back_mut() {
            Some((last, v)) if *last == bucket => *v = value as f32,
            Some((last, _)) if *last > bucket => {
                // A late sample (catch-up after a reconnect): insert it in order.
                match self.points.binary_search_by_key(&bucket, |(b, _)| *b) {
                    Ok(i) => self.points[i].1 = value as f32,
                    Err(i) => self.points.insert(i, (bucket, value as f32)),
                }
            }
            _ => self.points.push_back((bucket, value as f32)),
        }
        while self.points.len() > config.capacity {
            self.points.pop_front();
        }
    }

    pub fn points(&self, config: &SeriesConfig) -> Vec<pb::Point> {
        self.points_since(config, i64::MIN)
    }

    /// Points at or after `from_ms`.
    pub fn points_since(&self, config: &SeriesConfig, from_ms: i64) -> Vec<pb::Point> {
        self.points
            .iter()
            .filter(|(b, _)| b * config.resolution_ms >= from_ms)
            .map(|(b, v)| pb::Point {
                timestamp_unix_ms: b * config.resolution_ms,
                value: *v as f64,
            })
            .collect()
    }

    /// The newest point only (what watch streams carry).
    pub fn latest(&self, config: &SeriesConfig) -> Vec<pb::Point> {
        self.points
            .back()
            .map(|(b, v)| pb::Point {
                timestamp_unix_ms: b * config.resolution_ms,
                value: *v as f64,
            })
            .into_iter()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// The four series kept per node, plus what is needed to turn byte counters into rates.
#[derive(Debug, Clone, Default)]
pub struct NodeSeries {
    pub cpu_percent: Series,
    pub memory_bytes: Series,
    pub net_tx_bytes_per_second: Series,
    pub net_rx_bytes_per_second: Series,
    last_counters: Option<(i64, u64, u64)>,
}

/// One sample of a node, as read from a report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
}

impl NodeSeries {
    pub fn record(&mut self, config: &SeriesConfig, ts: i64, sample: Sample) {
        self.cpu_percent.record(config, ts, sample.cpu_percent);
        self.memory_bytes
            .record(config, ts, sample.memory_bytes as f64);
        if let Some((last_ts, tx, rx)) = self.last_counters
            && ts > last_ts
        {
            let secs = (ts - last_ts) as f64 / 1000.0;
            // Counters that went down (a connection closed) give no negative rate.
            let tx_rate = sample.net_tx_bytes.saturating_sub(tx) as f64 / secs;
            let rx_rate = sample.net_rx_bytes.saturating_sub(rx) as f64 / secs;
            self.net_tx_bytes_per_second.record(config, ts, tx_rate);
            self.net_rx_bytes_per_second.record(config, ts, rx_rate);
        }
        if self
            .last_counters
            .is_none_or(|(last_ts, _, _)| ts > last_ts)
        {
            self.last_counters = Some((ts, sample.net_tx_bytes, sample.net_rx_bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_per_bucket_bounded() {
        let config = SeriesConfig {
            resolution_ms: 15_000,
            capacity: 4,
        };
        let mut s = Series::default();
        for i in 0..10 {
            s.record(&config, i * 5_000, i as f64);
        }
        // 10 samples every 5 s span buckets 0..=3 (45 s): 4 buckets, latest value in each.
        let values: Vec<f64> = s.points(&config).iter().map(|p| p.value).collect();
        assert_eq!(values, [2.0, 5.0, 8.0, 9.0]);
        for i in 10..40 {
            s.record(&config, i * 5_000, i as f64);
        }
        assert_eq!(s.len(), 4);
        assert_eq!(s.points(&config).last().unwrap().timestamp_unix_ms, 195_000);
    }

    #[test]
    fn late_samples_are_inserted_in_order() {
        let config = SeriesConfig::default();
        let mut s = Series::default();
        s.record(&config, 60_000, 4.0);
        s.record(&config, 15_000, 1.0);
        s.record(&config, 30_000, 2.0);
        let ts: Vec<i64> = s
            .points(&config)
            .iter()
            .map(|p| p.timestamp_unix_ms)
            .collect();
        assert_eq!(ts, [15_000, 30_000, 60_000]);
    }

    #[test]
    fn rates_from_counters() {
        let config = SeriesConfig::default();
        let mut n = NodeSeries::default();
        n.record(
            &config,
            0,
            Sample {
                net_tx_bytes: 1000,
                ..Default::default()
            },
        );
        n.record(
            &config,
            15_000,
            Sample {
                net_tx_bytes: 16_000,
                ..Default::default()
            },
        );
        let rate = n.net_tx_bytes_per_second.points(&config);
        assert_eq!(rate.len(), 1);
        assert_eq!(rate[0].value, 1000.0);
    }
}
