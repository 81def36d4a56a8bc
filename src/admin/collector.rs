//! Metrics read from the table in service at each scrape.

use crate::endpoint::Endpoint;
use crate::routing::{Pool, RoutingTable};
use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;
use std::time::Instant;

/// Per-endpoint gauges, read from the table in service at each scrape: in flight, latency
/// EWMA, requests. Endpoint labels appear only here, never on histograms, so cardinality grows
/// with endpoints once, not per status code or bucket.
#[derive(Debug)]
pub struct EndpointCollector {
    pub table: Arc<ArcSwap<RoutingTable>>,
}

impl Collector for EndpointCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let table = self.table.load();
        let now = Instant::now();
        let rows: Vec<(&str, String, &Pool, &Arc<Endpoint>)> = table
            .pools()
            .flat_map(|p| {
                p.ready_endpoints()
                    .map(move |e| (p.name.as_str(), e.addr.to_string(), p.as_ref(), e))
            })
            .collect();
        if table.pools().next().is_some() {
            let mut m = encoder.encode_descriptor(
                "pool_endpoints_ready",
                "Endpoints Kubernetes reports ready, by pool",
                None,
                MetricType::Gauge,
            )?;
            for pool in table.pools() {
                let labels = [("pool", pool.name.as_str())];
                ConstGauge::new(pool.ready_endpoints().count() as i64)
                    .encode(m.encode_family(&labels)?)?;
            }
            let mut m = encoder.encode_descriptor(
                "pool_endpoints_healthy",
                "Ready endpoints that may take new requests, by pool",
                None,
                MetricType::Gauge,
            )?;
            for pool in table.pools() {
                let labels = [("pool", pool.name.as_str())];
                let healthy = pool
                    .ready_endpoints()
                    .filter(|e| e.is_available(now))
                    .count();
                ConstGauge::new(healthy as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let expiries: Vec<(&str, i64)> = table
            .pools()
            .filter_map(|pool| {
                let not_after = pool.tls.as_ref()?.certificate.as_ref()?.not_after?;
                Some((pool.name.as_str(), not_after - unix_now))
            })
            .collect();
        // A family without samples is left out: some parsers refuse empty families.
        if !expiries.is_empty() {
            let mut m = encoder.encode_descriptor(
                "certificate_expiry_seconds",
                "Time until a pool's TLS certificate expires (negative: expired)",
                None,
                MetricType::Gauge,
            )?;
            for (pool, seconds) in expiries {
                ConstGauge::new(seconds).encode(m.encode_family(&[("pool", pool)])?)?;
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut m = encoder.encode_descriptor(
            "endpoint_in_flight",
            "Requests in flight on an endpoint",
            None,
            MetricType::Gauge,
        )?;
        for (pool, addr, _, e) in &rows {
            let labels = [("pool", *pool), ("endpoint", addr.as_str())];
            ConstGauge::new(e.in_flight() as i64).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "endpoint_latency_ewma_seconds",
            "Peak-sensitive EWMA of an endpoint's time to response headers",
            None,
            MetricType::Gauge,
        )?;
        for (pool, addr, p, e) in &rows {
            let labels = [("pool", *pool), ("endpoint", addr.as_str())];
            let seconds = e.latency_ewma_at(now, p.policy.latency_decay) / 1e9;
            ConstGauge::new(seconds).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "endpoint_healthy",
            "1 when an endpoint may take new requests (not failing checks, not ejected)",
            None,
            MetricType::Gauge,
        )?;
        for (pool, addr, _, e) in &rows {
            let labels = [("pool", *pool), ("endpoint", addr.as_str())];
            ConstGauge::new(i64::from(e.is_available(now))).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "endpoint_ejected",
            "1 while outlier detection keeps an endpoint out",
            None,
            MetricType::Gauge,
        )?;
        for (pool, addr, _, e) in &rows {
            let labels = [("pool", *pool), ("endpoint", addr.as_str())];
            ConstGauge::new(i64::from(e.is_ejected(now))).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "endpoint_requests",
            "Requests sent to an endpoint",
            None,
            MetricType::Counter,
        )?;
        for (pool, addr, _, e) in &rows {
            let labels = [("pool", *pool), ("endpoint", addr.as_str())];
            ConstCounter::new(e.requests()).encode(m.encode_family(&labels)?)?;
        }
        encode_load(&mut encoder, &rows)
    }
}

/// The load pods report, and the weights made of it: only for endpoints that reported or
/// are weighed (a family without samples is left out).
fn encode_load(
    encoder: &mut DescriptorEncoder<'_>,
    rows: &[(&str, String, &Pool, &Arc<Endpoint>)],
) -> Result<(), std::fmt::Error> {
    let loads: Vec<_> = rows
        .iter()
        .filter_map(|(pool, addr, _, e)| Some((*pool, addr.as_str(), e.load_if_any()?)))
        .collect();
    if loads.is_empty() {
        return Ok(());
    }
    let reported: Vec<_> = loads.iter().filter(|(_, _, l)| l.accepted() > 0).collect();
    if !reported.is_empty() {
        let mut m = encoder.encode_descriptor(
            "endpoint_utilization",
            "The utilization an endpoint last reported (ORCA: application_utilization, else cpu_utilization)",
            None,
            MetricType::Gauge,
        )?;
        for (pool, addr, load) in reported {
            let labels = [("pool", *pool), ("endpoint", *addr)];
            ConstGauge::new(load.utilization()).encode(m.encode_family(&labels)?)?;
        }
    }
    let weighed: Vec<_> = loads
        .iter()
        .filter_map(|(pool, addr, l)| Some((*pool, *addr, l.weight()?)))
        .collect();
    if !weighed.is_empty() {
        let mut m = encoder.encode_descriptor(
            "endpoint_load_weight",
            "An endpoint's WeightedByLoad weight (requests per second per unit of utilization); absent while it takes the mean",
            None,
            MetricType::Gauge,
        )?;
        for (pool, addr, weight) in weighed {
            let labels = [("pool", pool), ("endpoint", addr)];
            ConstGauge::new(weight).encode(m.encode_family(&labels)?)?;
        }
    }
    let mut rejected: Vec<(&str, u64)> = Vec::new();
    for (pool, _, load) in &loads {
        match rejected.last_mut() {
            Some((p, n)) if p == pool => *n += load.rejected(),
            _ => rejected.push((pool, load.rejected())),
        }
    }
    let mut m = encoder.encode_descriptor(
        "load_reports_rejected",
        "Load reports refused as malformed or out of bounds, by pool",
        None,
        MetricType::Counter,
    )?;
    for (pool, n) in rejected {
        ConstCounter::new(n).encode(m.encode_family(&[("pool", pool)])?)?;
    }
    Ok(())
}
