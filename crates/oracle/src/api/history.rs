//! The oracle's metrics over time, for the operator's dashboard: every `every`, the text
//! `GET /metrics` serves is taken apart into its series (`name{labels}`) and kept, the last
//! `points` samples of each, in memory (lost on restart: Prometheus is the record to keep; this
//! is what the page charts without one). `GET /metrics/history?names=a,b&since=ms` gives the
//! series of the metrics named, aligned on the samples' times.
//!
//! Bounded: at most [`MAX_SERIES`] series are followed (new ones past it are dropped, with a
//! warning once; a series is never forgotten while the process runs), each sample holds at most
//! one value per series, and the samples are a ring of at most [`MAX_POINTS`]. A query copies
//! its series under the lock (operator-only, and the dashboard asks every 5 s).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    Json,
    extract::{Query, State},
    http::HeaderMap,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{ApiError, ApiState, authorize};
use crate::{blockstore::Blockstore, domain::now_ms};

/// Series followed at most.
pub const MAX_SERIES: usize = 4096;
/// Samples kept at most (a week a minute apart): with every series, about 650 MiB at worst; the
/// oracle's own metrics are a few hundred series.
pub const MAX_POINTS: usize = 10_080;
/// Metric names one query may ask for.
const MAX_NAMES: usize = 32;

/// The metrics' recent samples.
#[derive(Debug)]
pub struct MetricsHistory {
    /// Time between samples.
    pub every: Duration,
    points: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Series names, by index; `index` finds them.
    names: Vec<String>,
    index: HashMap<String, u32>,
    /// Oldest first: when, and the values of the series it had.
    samples: VecDeque<(u64, Vec<(u32, f64)>)>,
    /// Whether the series cap was met (warned once).
    full: bool,
}

impl Default for MetricsHistory {
    fn default() -> Self {
        Self::new(Duration::from_secs(60), 1440)
    }
}

impl MetricsHistory {
    /// Samples every `every` (at least a second), keeping the last `points` (2 to
    /// [`MAX_POINTS`]).
    pub fn new(every: Duration, points: usize) -> Self {
        Self {
            every: every.max(Duration::from_secs(1)),
            points: points.clamp(2, MAX_POINTS),
            inner: Mutex::default(),
        }
    }

    /// Records the exposition `text` (Prometheus' text format) as the sample at `at_ms`.
    pub fn record(&self, at_ms: u64, text: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut values = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let id = match inner.index.get(series) {
                Some(&id) => id,
                None if inner.names.len() < MAX_SERIES => {
                    let id = inner.names.len() as u32;
                    inner.names.push(series.to_owned());
                    inner.index.insert(series.to_owned(), id);
                    id
                }
                None => {
                    if !inner.full {
                        inner.full = true;
                        warn!(max = MAX_SERIES, "metrics history follows no more series");
                    }
                    continue;
                }
            };
            values.push((id, value));
        }
        if inner.samples.len() >= self.points {
            inner.samples.pop_front();
        }
        values.shrink_to_fit();
        inner.samples.push_back((at_ms, values));
    }

    /// The series of metrics `names` (their names before any `{`), sampled after `since_ms`.
    pub fn query(&self, names: &[&str], since_ms: u64) -> HistoryBody {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted: Vec<(u32, &str)> = inner
            .names
            .iter()
            .enumerate()
            .filter(|(_, s)| names.contains(&s.split_once('{').map_or(s.as_str(), |(n, _)| n)))
            .map(|(i, s)| (i as u32, s.as_str()))
            .collect();
        let samples: Vec<_> = inner.samples.iter().filter(|(at, _)| *at > since_ms).collect();
        let mut series: BTreeMap<String, Vec<Option<f64>>> =
            wanted.iter().map(|(_, s)| ((*s).to_owned(), vec![None; samples.len()])).collect();
        let by_id: HashMap<u32, &str> = wanted.iter().copied().collect();
        for (k, (_, values)) in samples.iter().enumerate() {
            for (id, v) in values {
                if let Some(name) = by_id.get(id)
                    && let Some(column) = series.get_mut(*name)
                {
                    column[k] = Some(*v);
                }
            }
        }
        HistoryBody {
            every_ms: u64::try_from(self.every.as_millis()).unwrap_or(u64::MAX),
            times: samples.iter().map(|(at, _)| *at).collect(),
            series,
        }
    }
}

/// `GET /metrics/history`'s answer.
#[derive(Debug, Serialize)]
pub struct HistoryBody {
    /// Time between samples, ms.
    pub every_ms: u64,
    /// Each sample's time, unix ms, oldest first.
    pub times: Vec<u64>,
    /// Each series (`name{labels}`) asked for: its value at each time (null where the sample
    /// did not have it).
    pub series: BTreeMap<String, Vec<Option<f64>>>,
}

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    names: Option<String>,
    since: Option<String>,
}

/// `GET /metrics/history?names=estuary_requests,estuary_deals[&since=ms]` (operator): the
/// named metrics' series over the samples kept.
pub(super) async fn history<B: Blockstore>(
    State(st): State<Arc<ApiState<B>>>,
    Query(q): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Result<Json<HistoryBody>, ApiError> {
    authorize(&st, &headers)?;
    let names: Vec<&str> =
        q.names.as_deref().unwrap_or_default().split(',').filter(|n| !n.is_empty()).collect();
    if names.is_empty() || names.len() > MAX_NAMES {
        return Err(ApiError::BadRequest(format!(
            "names must list 1 to {MAX_NAMES} metric names, comma-separated"
        )));
    }
    if let Some(bad) = names
        .iter()
        .find(|n| !n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()))
    {
        return Err(ApiError::BadRequest(format!("not a metric name: {bad:?}")));
    }
    let since = match q.since.as_deref() {
        None => 0,
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ApiError::BadRequest(format!("since must be unix ms, got {s:?}")))?,
    };
    Ok(Json(st.history.query(&names, since)))
}

/// Samples the metrics every `st.history.every` until `shutdown`.
pub async fn run<B: Blockstore>(st: Arc<ApiState<B>>, shutdown: CancellationToken) {
    loop {
        match super::metrics_text(&st).await {
            Ok(text) => st.history.record(now_ms(), &text),
            Err(e) => warn!(error = %e, "metrics history: sampling failed; tried next time"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(st.history.every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_kept_aligned_and_bounded() {
        let h = MetricsHistory::new(Duration::from_secs(1), 3);
        h.record(1, "# HELP x y\nestuary_requests{status=\"queued\"} 2\nestuary_deals 1\n");
        h.record(
            2,
            "estuary_requests{status=\"queued\"} 3\nestuary_requests{status=\"pinned\"} 1\n",
        );
        h.record(3, "estuary_requests{status=\"queued\"} 4\nnot a number here\n");
        h.record(4, "estuary_requests{status=\"queued\"} 5\n");
        let body = h.query(&["estuary_requests"], 0);
        assert_eq!(body.times, [2, 3, 4], "the last three samples");
        assert_eq!(
            body.series["estuary_requests{status=\"queued\"}"],
            [Some(3.0), Some(4.0), Some(5.0)]
        );
        assert_eq!(body.series["estuary_requests{status=\"pinned\"}"], [Some(1.0), None, None]);
        assert!(!body.series.contains_key("estuary_deals"));
        let since = h.query(&["estuary_requests", "estuary_deals"], 3);
        assert_eq!(since.times, [4]);
        assert_eq!(since.series["estuary_deals"], [None]);
    }

    #[test]
    fn series_past_the_cap_are_dropped() {
        let h = MetricsHistory::new(Duration::from_secs(1), 2);
        let text: String = (0..MAX_SERIES + 10).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
        h.record(1, &text);
        let body = h.query(&["m"], 0);
        assert_eq!(body.series.len(), MAX_SERIES);
    }
}
