//! What the leader writes of each Ingress of weir's class: `status.loadBalancer.ingress`, the
//! addresses weir is reached at (`--publish-address`, else those of `--publish-service`, as
//! ingress-nginx does), written only when they changed; and a Warning event for each thing
//! compile says the Ingress asks that weir does not do (`IngressReport::warnings`), once per
//! distinct warning per leader term. A new leader writes everything once, as another replica
//! may have written while it followed.

use crate::admin::ProcessState;
use crate::routing::IngressReport;
use crate::store::ObjectKey;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use super::status::FIELD_MANAGER;

/// How long the addresses read from `--publish-service` are used before it is read again.
pub const SERVICE_REFRESH: Duration = Duration::from_secs(5);

/// One address weir is reached at, as `--publish-address` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishAddress {
    Ip(IpAddr),
    Hostname(String),
}

impl PublishAddress {
    fn to_status(&self) -> IngressLoadBalancerIngress {
        match self {
            PublishAddress::Ip(ip) => IngressLoadBalancerIngress {
                ip: Some(ip.to_string()),
                ..Default::default()
            },
            PublishAddress::Hostname(h) => IngressLoadBalancerIngress {
                hostname: Some(h.clone()),
                ..Default::default()
            },
        }
    }
}

/// A flag's value that is not what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("{0:?} is neither an IP address nor a DNS name")]
    BadAddress(String),
    #[error("{0:?} is not NAMESPACE/NAME")]
    BadService(String),
}

/// Parses one `--publish-address`: an IP address, else a DNS name (RFC 1123 labels).
pub fn parse_publish_address(s: &str) -> Result<PublishAddress, PublishError> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(PublishAddress::Ip(ip));
    }
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // A name of digits and dots only would be a mistyped IPv4 address.
    let numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if name.is_empty() || name.len() > 253 || numeric || !name.split('.').all(label_ok) {
        return Err(PublishError::BadAddress(s.to_string()));
    }
    Ok(PublishAddress::Hostname(name))
}

/// Parses `--publish-service NAMESPACE/NAME`.
pub fn parse_publish_service(s: &str) -> Result<ObjectKey, PublishError> {
    match s.trim().split_once('/') {
        Some((ns, name))
            if !ns.is_empty() && !name.is_empty() && !name.contains('/') && !ns.contains(' ') =>
        {
            Ok(ObjectKey::new(ns, name))
        }
        _ => Err(PublishError::BadService(s.to_string())),
    }
}

/// Where the addresses written to each Ingress come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// `--publish-address`: these, as given.
    Addresses(Vec<PublishAddress>),
    /// `--publish-service`: that Service's load balancer addresses, else its external IPs,
    /// else its cluster IP.
    Service(ObjectKey),
}

impl Publish {
    /// From the flags: `--publish-address` wins over `--publish-service`; neither, nothing.
    pub fn from_flags(addresses: Vec<PublishAddress>, service: Option<ObjectKey>) -> Option<Self> {
        if !addresses.is_empty() {
            return Some(Publish::Addresses(addresses));
        }
        service.map(Publish::Service)
    }
}

/// The addresses a Service publishes, as ingress-nginx takes them: `status.loadBalancer.ingress`
/// (a LoadBalancer's), else `spec.externalIPs`, else `spec.clusterIP` (not a headless one's).
pub fn service_addresses(service: &Service) -> Vec<IngressLoadBalancerIngress> {
    let balancer: Vec<IngressLoadBalancerIngress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter(|i| i.ip.is_some() || i.hostname.is_some())
        .map(|i| IngressLoadBalancerIngress {
            ip: i.ip.clone().filter(|s| !s.is_empty()),
            hostname: i.hostname.clone().filter(|s| !s.is_empty()),
            ..Default::default()
        })
        .filter(|i| i.ip.is_some() || i.hostname.is_some())
        .collect();
    if !balancer.is_empty() {
        return balancer;
    }
    let spec = service.spec.as_ref();
    let ip = |s: &String| IngressLoadBalancerIngress {
        ip: Some(s.clone()),
        ..Default::default()
    };
    let external: Vec<_> = spec
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .map(ip)
        .collect();
    if !external.is_empty() {
        return external;
    }
    spec.and_then(|s| s.cluster_ip.as_ref())
        .filter(|c| !c.is_empty() && c.as_str() != "None")
        .map(ip)
        .into_iter()
        .collect()
}

/// A call to the API server that failed.
#[derive(Debug, thiserror::Error)]
pub enum IngressStatusError {
    #[error("reading Service {service}: {source}")]
    ReadService {
        service: ObjectKey,
        source: kube::Error,
    },
    #[error("reading Ingress {ingress}: {source}")]
    ReadIngress {
        ingress: ObjectKey,
        source: kube::Error,
    },
    #[error("writing the status of Ingress {ingress}: {source}")]
    WriteStatus {
        ingress: ObjectKey,
        source: kube::Error,
    },
    #[error("writing an event on Ingress {ingress}: {source}")]
    Event {
        ingress: ObjectKey,
        source: kube::Error,
    },
}

/// Keeps the API server's Ingress statuses and warning events equal to `admin.ingress_reports`
/// while `leader` holds; `publish` None writes no status (events are still written).
pub async fn run(
    client: kube::Client,
    publish: Option<Publish>,
    admin: Arc<ProcessState>,
    leader: Arc<AtomicBool>,
    every: Duration,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "weir".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let api = ApiServer { client, recorder };
    follow(&api, publish.as_ref(), &admin, &leader, every).await;
}

/// Where statuses and events go: the API server, or a test's record of the calls.
trait Sink {
    type Error: std::fmt::Display;
    /// The addresses `service` publishes now.
    async fn service(
        &self,
        service: &ObjectKey,
    ) -> Result<Vec<IngressLoadBalancerIngress>, Self::Error>;
    /// Writes an Ingress's `status.loadBalancer.ingress`; a reference to it, for its events.
    async fn write(
        &self,
        key: &ObjectKey,
        addresses: &[IngressLoadBalancerIngress],
    ) -> Result<ObjectReference, Self::Error>;
    /// A reference to the Ingress, for events when no status is written.
    async fn reference(&self, key: &ObjectKey) -> Result<ObjectReference, Self::Error>;
    async fn publish(
        &self,
        key: &ObjectKey,
        event: &Event,
        ingress: &ObjectReference,
    ) -> Result<(), Self::Error>;
}

struct ApiServer {
    client: kube::Client,
    recorder: Recorder,
}

impl Sink for ApiServer {
    type Error = IngressStatusError;

    async fn service(
        &self,
        service: &ObjectKey,
    ) -> Result<Vec<IngressLoadBalancerIngress>, IngressStatusError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &service.namespace);
        api.get(&service.name)
            .await
            .map(|s| service_addresses(&s))
            .map_err(|source| IngressStatusError::ReadService {
                service: service.clone(),
                source,
            })
    }

    async fn write(
        &self,
        key: &ObjectKey,
        addresses: &[IngressLoadBalancerIngress],
    ) -> Result<ObjectReference, IngressStatusError> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &key.namespace);
        // A merge patch replaces the list whole, so addresses weir no longer has go.
        let patch = serde_json::json!({
            "status": { "loadBalancer": { "ingress": addresses } },
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch_status(&key.name, &params, &Patch::Merge(&patch))
            .await
            .map(|ingress| ingress.object_ref(&()))
            .map_err(|source| IngressStatusError::WriteStatus {
                ingress: key.clone(),
                source,
            })
    }

    async fn reference(&self, key: &ObjectKey) -> Result<ObjectReference, IngressStatusError> {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &key.namespace);
        api.get(&key.name)
            .await
            .map(|ingress| ingress.object_ref(&()))
            .map_err(|source| IngressStatusError::ReadIngress {
                ingress: key.clone(),
                source,
            })
    }

    async fn publish(
        &self,
        key: &ObjectKey,
        event: &Event,
        ingress: &ObjectReference,
    ) -> Result<(), IngressStatusError> {
        self.recorder
            .publish(event, ingress)
            .await
            .map_err(|source| IngressStatusError::Event {
                ingress: key.clone(),
                source,
            })
    }
}

/// A warning as events tell it apart: its reason and message.
type WarningId = (&'static str, String);

/// What one leader term has done, forgotten when leadership is lost.
#[derive(Default)]
struct Term {
    /// The addresses last written to each Ingress.
    written: HashMap<ObjectKey, Vec<IngressLoadBalancerIngress>>,
    /// The warnings an event was written for, per Ingress.
    reported: HashMap<ObjectKey, HashSet<WarningId>>,
    /// Each Ingress's reference (with its uid), for events.
    references: HashMap<ObjectKey, ObjectReference>,
    /// The publish Service's addresses, and when they were read.
    service: Option<(Vec<IngressLoadBalancerIngress>, Instant)>,
}

/// The loop of [`run`]: each `every`, while leading, writes the statuses that changed and the
/// events of warnings not yet reported this term.
async fn follow(
    sink: &impl Sink,
    publish: Option<&Publish>,
    admin: &ProcessState,
    leader: &AtomicBool,
    every: Duration,
) {
    let mut term = Term::default();
    loop {
        tokio::time::sleep(every).await;
        if !leader.load(Ordering::Relaxed) {
            term = Term::default();
            continue;
        }
        let addresses = addresses(sink, publish, &mut term).await;
        let reports = admin.ingress_reports.load();
        term.written.retain(|k, _| reports.contains_key(k));
        term.reported.retain(|k, _| reports.contains_key(k));
        term.references.retain(|k, _| reports.contains_key(k));
        for (key, report) in reports.iter() {
            if let Some(addresses) = &addresses
                && term.written.get(key) != Some(addresses)
            {
                match sink.write(key, addresses).await {
                    Ok(reference) => {
                        term.written.insert(key.clone(), addresses.clone());
                        term.references.insert(key.clone(), reference);
                    }
                    // Not recorded as written: the next tick tries again.
                    Err(e) => {
                        tracing::warn!(ingress = %key, error = %e, "could not write Ingress status")
                    }
                }
            }
            report_warnings(sink, key, report, &mut term).await;
        }
    }
}

/// The addresses to write this tick: None when there are none to write (no flag, or the
/// Service was never read).
async fn addresses(
    sink: &impl Sink,
    publish: Option<&Publish>,
    term: &mut Term,
) -> Option<Vec<IngressLoadBalancerIngress>> {
    match publish? {
        Publish::Addresses(a) => Some(a.iter().map(PublishAddress::to_status).collect()),
        Publish::Service(service) => {
            let due = term
                .service
                .as_ref()
                .is_none_or(|(_, read)| read.elapsed() >= SERVICE_REFRESH);
            if due {
                match sink.service(service).await {
                    Ok(a) => term.service = Some((a, Instant::now())),
                    // The last addresses read stay; none, if it was never read.
                    Err(e) => {
                        tracing::warn!(service = %service, error = %e, "could not read the publish Service")
                    }
                }
            }
            term.service.as_ref().map(|(a, _)| a.clone())
        }
    }
}

/// Writes an event for each of `report`'s warnings not reported this term; forgets the ones
/// that went away, so one that comes back is reported again.
async fn report_warnings(
    sink: &impl Sink,
    key: &ObjectKey,
    report: &IngressReport,
    term: &mut Term,
) {
    let current: HashSet<WarningId> = report
        .warnings
        .iter()
        .map(|w| (w.reason.as_str(), w.message.clone()))
        .collect();
    let reported = term.reported.entry(key.clone()).or_default();
    reported.retain(|w| current.contains(w));
    let mut pending: Vec<&WarningId> = current.iter().filter(|w| !reported.contains(*w)).collect();
    if pending.is_empty() {
        return;
    }
    pending.sort();
    let reference = match term.references.get(key) {
        Some(r) => r.clone(),
        None => match sink.reference(key).await {
            Ok(r) => {
                term.references.insert(key.clone(), r.clone());
                r
            }
            Err(e) => {
                tracing::debug!(ingress = %key, error = %e, "could not read the Ingress for its events");
                return;
            }
        },
    };
    for warning in pending {
        match sink.publish(key, &event(warning), &reference).await {
            Ok(()) => {
                reported.insert(warning.clone());
            }
            // Not recorded: the next tick tries again.
            Err(e) => tracing::debug!(ingress = %key, error = %e, "could not write an event"),
        }
    }
}

/// The Warning event of one warning.
fn event((reason, message): &WarningId) -> Event {
    Event {
        type_: EventType::Warning,
        reason: (*reason).to_string(),
        note: Some(message.chars().take(1000).collect()),
        action: "Compile".into(),
        secondary: None,
    }
}

#[cfg(test)]
mod tests;
