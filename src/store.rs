//! The object store: what weir keeps of the Kubernetes objects it cares about, by kind and key.
//!
//! Sources (the kube watchers, the YAML file) write it; `routing::compile` reads it. Objects sit
//! behind `Arc`, so a snapshot for compile is a cheap clone. Every object is reduced as it
//! arrives: EndpointSlices and Services to what compile reads ([`Slice`], [`ServicePorts`]; at 10 000
//! Services with 100 000 endpoints, the whole objects were most of weir's memory), Secrets to
//! their certificate, key and OCSP response ([`TlsSecret`]), pools to all but their
//! `managedFields` and last-applied copy ([`reduce`]).

pub mod reduce;

use crate::api::LoadBalancerPool;
use crate::api::gateway::{
    GATEWAY_ANNOTATION, GRPCRoute, Gateway, GatewayClass, HTTPRoute, MANAGED_BY, MANAGED_BY_LABEL,
    ReferenceGrant,
};
use crate::certificate::{TLS_CRT, TLS_KEY, TLS_OCSP_STAPLE};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A namespaced object's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of any object with metadata; objects without a namespace go to `default`.
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        ObjectKey::new(namespace_of(meta), meta.name.as_deref().unwrap_or_default())
    }
}

/// An object's namespace, `default` when it has none (as [`ObjectKey::of`]).
fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What weir keeps of a Service: its ports, by which compile resolves a backend's port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicePorts {
    /// `spec.ports`, in order, every protocol.
    pub ports: Box<[NamedPort]>,
    /// For a Service weir made for a Gateway: what compile needs of it.
    pub gateway: Option<Box<GatewayService>>,
}

/// A Service weir made for a Gateway (labelled [`MANAGED_BY_LABEL`] `weir`, annotated with its
/// Gateway): which pod port each listener port goes to, and the address it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayService {
    pub gateway: ObjectKey,
    /// `port` → numeric `targetPort` (weir writes numbers; others are left out).
    pub ports: BTreeMap<u16, u16>,
    /// `spec.type` (`ClusterIP` when unset).
    pub service_type: Box<str>,
    /// `spec.clusterIPs` (else `spec.clusterIP`), `None` left out.
    pub cluster_ips: Box<[IpAddr]>,
    /// `status.loadBalancer.ingress`, in order.
    pub ingress: Box<[ServiceIngress]>,
}

/// One `status.loadBalancer.ingress` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceIngress {
    Ip(IpAddr),
    Hostname(Box<str>),
}

impl GatewayService {
    /// `Some` for a Service weir made for a Gateway.
    fn of(service: &Service) -> Option<Self> {
        let meta = &service.metadata;
        if meta
            .labels
            .as_ref()?
            .get(MANAGED_BY_LABEL)
            .map(String::as_str)
            != Some(MANAGED_BY)
        {
            return None;
        }
        let (namespace, name) = meta
            .annotations
            .as_ref()?
            .get(GATEWAY_ANNOTATION)?
            .split_once('/')?;
        let spec = service.spec.as_ref();
        let ports = spec
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                let target = match &p.target_port {
                    Some(IntOrString::Int(t)) => u16::try_from(*t).ok()?,
                    _ => return None,
                };
                Some((u16::try_from(p.port).ok()?, target))
            })
            .collect();
        let ips: Vec<&String> = match spec.and_then(|s| s.cluster_ips.as_ref()) {
            Some(ips) if !ips.is_empty() => ips.iter().collect(),
            _ => spec
                .and_then(|s| s.cluster_ip.as_ref())
                .into_iter()
                .collect(),
        };
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_deref())
            .unwrap_or_default()
            .iter()
            .filter_map(|i| match (&i.ip, &i.hostname) {
                (Some(ip), _) => ip.parse().ok().map(ServiceIngress::Ip),
                (None, Some(host)) => Some(ServiceIngress::Hostname(host.as_str().into())),
                (None, None) => None,
            })
            .collect();
        Some(GatewayService {
            gateway: ObjectKey::new(namespace, name),
            ports,
            service_type: spec
                .and_then(|s| s.type_.as_deref())
                .unwrap_or("ClusterIP")
                .into(),
            // "None" (headless) and anything else that is no address is left out.
            cluster_ips: ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
            ingress,
        })
    }
}

/// One port of a [`ServicePorts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// `None` when the port has no name (a Service with a single port may leave it out).
    pub name: Option<Box<str>>,
    pub port: i32,
}

impl ServicePorts {
    /// What weir keeps of `service`.
    pub fn from_service(service: &Service) -> Self {
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|p| NamedPort {
                name: p.name.as_deref().map(Box::from),
                port: p.port,
            })
            .collect();
        ServicePorts {
            ports,
            gateway: GatewayService::of(service).map(Box::new),
        }
    }
}

impl From<&Service> for ServicePorts {
    fn from(service: &Service) -> Self {
        ServicePorts::from_service(service)
    }
}

/// What weir keeps of an EndpointSlice: exactly what `routing::compile` reads.
///
/// Made once, when the slice arrives ([`Slice::from_slice`]), and with the API's defaults
/// already applied. What compile would pass over anyway is dropped here: ports other than TCP,
/// endpoints whose first address is not an IP address, and everything of a slice whose
/// `addressType` is neither `IPv4` nor `IPv6` (FQDN slices: weir connects to IP addresses only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The Service the slice belongs to (label `kubernetes.io/service-name`), in the slice's
    /// namespace; `None`: no Service's, and no pool uses it.
    pub service: Option<Box<str>>,
    /// The slice's TCP ports, in the slice's order.
    pub ports: Box<[SlicePort]>,
    pub endpoints: Box<[SliceEndpoint]>,
}

/// One TCP port of a [`Slice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePort {
    /// The Service port's name; empty when it has none.
    pub name: Box<str>,
    /// `None` when the slice gives no number, or one that is not a TCP port number.
    pub port: Option<u16>,
    /// `appProtocol` is `kubernetes.io/h2c` or `h2c` (any case): the pods speak HTTP/2 cleartext.
    pub h2c: bool,
}

/// One endpoint of a [`Slice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// The first address (the API says the others are equivalent; consumers use the first).
    pub ip: IpAddr,
    /// Conditions with the API's defaults: a nil `ready` means ready, a nil `serving` means as
    /// `ready`, a nil `terminating` means not terminating.
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// `namespace/name` of the pod the endpoint names (`targetRef` of kind Pod; its namespace
    /// defaults to the slice's); `None` when it names no pod.
    pub pod: Option<Box<str>>,
}

impl Slice {
    /// What weir keeps of `slice`.
    pub fn from_slice(slice: &EndpointSlice) -> Self {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(|s| s.as_str().into());
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            return Slice {
                service,
                ports: Box::default(),
                endpoints: Box::default(),
            };
        }
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .map(|p| SlicePort {
                name: p.name.as_deref().unwrap_or_default().into(),
                port: p.port.and_then(|p| u16::try_from(p).ok()),
                h2c: p.app_protocol.as_deref().is_some_and(|a| {
                    a.eq_ignore_ascii_case("kubernetes.io/h2c") || a.eq_ignore_ascii_case("h2c")
                }),
            })
            .collect();
        let namespace = namespace_of(&slice.metadata);
        let endpoints = slice
            .endpoints
            .iter()
            .flatten()
            .filter_map(|e| {
                let ip = e.addresses.first()?.parse::<IpAddr>().ok()?;
                let conditions = e.conditions.as_ref();
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let pod = match &e.target_ref {
                    Some(r) if r.kind.as_deref() == Some("Pod") => Some(
                        format!(
                            "{}/{}",
                            r.namespace.as_deref().unwrap_or(namespace),
                            r.name.as_deref().unwrap_or_default()
                        )
                        .into(),
                    ),
                    _ => None,
                };
                Some(SliceEndpoint {
                    ip,
                    ready,
                    serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                    pod,
                })
            })
            .collect();
        Slice {
            service,
            ports,
            endpoints,
        }
    }

    /// The first TCP port named `name` ("" for the unnamed port), as compile looks it up.
    pub fn port(&self, name: &str) -> Option<&SlicePort> {
        self.ports.iter().find(|p| &*p.name == name)
    }
}

impl From<&EndpointSlice> for Slice {
    fn from(slice: &EndpointSlice) -> Self {
        Slice::from_slice(slice)
    }
}

/// What weir keeps of a `kubernetes.io/tls` Secret: the bytes of the three keys it reads,
/// nothing of its metadata, type or other keys (a Secret may hold a CA key or passwords weir
/// has no business copying with every publish).
///
/// Made once, when the Secret arrives ([`TlsSecret::from_secret`]), with `stringData` (which a
/// file may use) folded in key by key and `data` winning, as the API server does. A missing key
/// stays `None`, so compile can say which one is missing.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TlsSecret {
    /// `tls.crt`: the PEM chain, leaf first.
    pub crt: Option<Box<[u8]>>,
    /// `tls.key`: the PEM private key.
    pub key: Option<Box<[u8]>>,
    /// `tls.ocsp-staple`: a DER OCSP response for the leaf, stapled to handshakes.
    pub ocsp_staple: Option<Box<[u8]>>,
}

impl TlsSecret {
    /// What weir keeps of `secret`; taken by value so the kept bytes move, not copy.
    pub fn from_secret(secret: Secret) -> Self {
        let mut data = secret.data.unwrap_or_default();
        let mut string_data = secret.string_data.unwrap_or_default();
        let mut take = |key: &str| -> Option<Box<[u8]>> {
            match data.remove(key) {
                Some(bytes) => Some(bytes.0.into()),
                None => string_data.remove(key).map(|s| s.into_bytes().into()),
            }
        };
        TlsSecret {
            crt: take(TLS_CRT),
            key: take(TLS_KEY),
            ocsp_staple: take(TLS_OCSP_STAPLE),
        }
    }
}

impl From<Secret> for TlsSecret {
    fn from(secret: Secret) -> Self {
        TlsSecret::from_secret(secret)
    }
}

/// Sizes only: the store is logged and printed in tests, and a private key must not be.
impl fmt::Debug for TlsSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |v: &Option<Box<[u8]>>| v.as_ref().map(|b| b.len());
        f.debug_struct("TlsSecret")
            .field("crt_bytes", &size(&self.crt))
            .field("key_bytes", &size(&self.key))
            .field("ocsp_staple_bytes", &size(&self.ocsp_staple))
            .finish()
    }
}

/// Every object a routing table is compiled from.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// Pools as [`reduce::pool`] keeps them.
    pub pools: BTreeMap<ObjectKey, Arc<LoadBalancerPool>>,
    pub services: BTreeMap<ObjectKey, Arc<ServicePorts>>,
    pub slices: BTreeMap<ObjectKey, Arc<Slice>>,
    pub secrets: BTreeMap<ObjectKey, Arc<TlsSecret>>,
    /// Gateway API (#17). GatewayClasses are cluster-wide: keyed by name alone.
    pub gateway_classes: BTreeMap<String, Arc<GatewayClass>>,
    pub gateways: BTreeMap<ObjectKey, Arc<Gateway>>,
    pub http_routes: BTreeMap<ObjectKey, Arc<HTTPRoute>>,
    pub grpc_routes: BTreeMap<ObjectKey, Arc<GRPCRoute>>,
    pub reference_grants: BTreeMap<ObjectKey, Arc<ReferenceGrant>>,
    /// Namespaces' labels, for listeners that take routes `from: Selector`. A namespace not
    /// here has no labels (the file source lists only the Namespaces the file holds).
    pub namespace_labels: BTreeMap<String, Arc<BTreeMap<String, String>>>,
    /// Kubernetes Ingress (#18): every Ingress (compile picks weir's by class), and the
    /// IngressClasses of weir's controller, by name.
    pub ingresses: BTreeMap<ObjectKey, Arc<Ingress>>,
    pub ingress_classes: BTreeMap<String, Arc<IngressClass>>,
}

impl Store {
    pub fn len(&self) -> usize {
        self.pools.len()
            + self.services.len()
            + self.slices.len()
            + self.secrets.len()
            + self.gateway_classes.len()
            + self.gateways.len()
            + self.http_routes.len()
            + self.grpc_routes.len()
            + self.reference_grants.len()
            + self.namespace_labels.len()
            + self.ingresses.len()
            + self.ingress_classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
