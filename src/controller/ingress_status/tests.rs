use super::*;
use crate::api::ingress::WarningKind;
use crate::routing::{IngressWarning, IngressWarningReason};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus,
};
use std::cell::RefCell;
use std::collections::BTreeMap;

#[test]
fn publish_addresses_are_ips_or_dns_names() {
    assert_eq!(
        parse_publish_address("203.0.113.7"),
        Ok(PublishAddress::Ip([203, 0, 113, 7].into()))
    );
    assert!(matches!(
        parse_publish_address("2001:db8::1"),
        Ok(PublishAddress::Ip(_))
    ));
    assert_eq!(
        parse_publish_address("LB.Example.com."),
        Ok(PublishAddress::Hostname("lb.example.com".into()))
    );
    for bad in ["", "1.2.3.999", "a..b", "-a.example", "a_b.example", "x y"] {
        assert!(parse_publish_address(bad).is_err(), "{bad:?} was taken");
    }
    assert_eq!(
        parse_publish_service("weir/weir"),
        Ok(ObjectKey::new("weir", "weir"))
    );
    for bad in ["weir", "/weir", "weir/", "a/b/c"] {
        assert!(parse_publish_service(bad).is_err(), "{bad:?} was taken");
    }
    // --publish-address wins; neither flag, nothing to write.
    let ip = PublishAddress::Ip([10, 0, 0, 1].into());
    assert_eq!(
        Publish::from_flags(vec![ip.clone()], Some(ObjectKey::new("a", "b"))),
        Some(Publish::Addresses(vec![ip]))
    );
    assert_eq!(Publish::from_flags(vec![], None), None);
}

fn lb(ip: Option<&str>, hostname: Option<&str>) -> IngressLoadBalancerIngress {
    IngressLoadBalancerIngress {
        ip: ip.map(Into::into),
        hostname: hostname.map(Into::into),
        ..Default::default()
    }
}

#[test]
fn a_service_publishes_its_balancer_else_external_ips_else_cluster_ip() {
    let mut service = Service {
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.10".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(service_addresses(&service), [lb(Some("10.96.0.10"), None)]);
    if let Some(spec) = service.spec.as_mut() {
        spec.external_ips = Some(vec!["198.51.100.1".into(), "198.51.100.2".into()]);
    }
    assert_eq!(
        service_addresses(&service),
        [
            lb(Some("198.51.100.1"), None),
            lb(Some("198.51.100.2"), None)
        ]
    );
    service.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![
                LoadBalancerIngress {
                    hostname: Some("lb.example.com".into()),
                    ..Default::default()
                },
                // Neither ip nor hostname: nothing to publish.
                LoadBalancerIngress::default(),
            ]),
        }),
        ..Default::default()
    });
    assert_eq!(
        service_addresses(&service),
        [lb(None, Some("lb.example.com"))]
    );
    let headless = Service {
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(service_addresses(&headless).is_empty());
    assert!(service_addresses(&Service::default()).is_empty());
}

/// Records what the loop sends; fails what `failing` names (Ingress names, or "service").
#[derive(Default)]
struct Recorded {
    service: RefCell<Vec<IngressLoadBalancerIngress>>,
    service_reads: RefCell<u32>,
    writes: RefCell<Vec<(String, Vec<IngressLoadBalancerIngress>)>>,
    references: RefCell<Vec<String>>,
    events: RefCell<Vec<(String, String)>>,
    failing: RefCell<Vec<String>>,
}

impl Recorded {
    fn fails(&self, what: &str) -> bool {
        self.failing.borrow().iter().any(|f| f == what)
    }
    fn events(&self) -> Vec<(String, String)> {
        self.events.borrow().clone()
    }
    fn write_names(&self) -> Vec<String> {
        self.writes
            .borrow()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

fn reference(name: &str) -> ObjectReference {
    ObjectReference {
        name: Some(name.into()),
        ..Default::default()
    }
}

impl Sink for Recorded {
    type Error = &'static str;
    async fn service(
        &self,
        _: &ObjectKey,
    ) -> Result<Vec<IngressLoadBalancerIngress>, &'static str> {
        *self.service_reads.borrow_mut() += 1;
        if self.fails("service") {
            return Err("connection refused");
        }
        Ok(self.service.borrow().clone())
    }
    async fn write(
        &self,
        key: &ObjectKey,
        addresses: &[IngressLoadBalancerIngress],
    ) -> Result<ObjectReference, &'static str> {
        if self.fails(&key.name) {
            return Err("connection refused");
        }
        self.writes
            .borrow_mut()
            .push((key.name.clone(), addresses.to_vec()));
        Ok(reference(&key.name))
    }
    async fn reference(&self, key: &ObjectKey) -> Result<ObjectReference, &'static str> {
        if self.fails(&key.name) {
            return Err("connection refused");
        }
        self.references.borrow_mut().push(key.name.clone());
        Ok(reference(&key.name))
    }
    async fn publish(
        &self,
        _: &ObjectKey,
        event: &Event,
        ingress: &ObjectReference,
    ) -> Result<(), &'static str> {
        if self.fails("events") {
            return Err("forbidden");
        }
        assert_eq!(event.type_, EventType::Warning);
        let name = ingress.name.clone().unwrap_or_default();
        self.events.borrow_mut().push((name, event.reason.clone()));
        Ok(())
    }
}

fn unsupported(annotation: &str) -> IngressWarning {
    IngressWarning {
        reason: IngressWarningReason::Annotation(WarningKind::Unsupported),
        message: format!("{annotation} is not supported"),
    }
}

fn no_backend() -> IngressWarning {
    IngressWarning {
        reason: IngressWarningReason::BackendNotFound,
        message: "Service test/missing not found".into(),
    }
}

fn set(admin: &ProcessState, ingresses: &[(&str, Vec<IngressWarning>)]) {
    let reports: BTreeMap<ObjectKey, IngressReport> = ingresses
        .iter()
        .map(|(name, warnings)| {
            (
                ObjectKey::new("test", *name),
                IngressReport {
                    warnings: warnings.clone(),
                    hosts: vec!["*".into()],
                },
            )
        })
        .collect();
    admin.ingress_reports.store(Arc::new(reports));
}

const EVERY: Duration = Duration::from_secs(1);

/// Runs the loop beside `script` on the paused clock; `script`'s sleeps are whole ticks plus
/// half of one, so each step sees the ticks before it done.
async fn with_loop(
    admin: &ProcessState,
    leader: &AtomicBool,
    sink: &Recorded,
    publish: Option<&Publish>,
    script: impl Future<Output = ()>,
) {
    tokio::select! {
        _ = follow(sink, publish, admin, leader, EVERY) => unreachable!("the loop never ends"),
        _ = async {
            tokio::time::sleep(EVERY / 2).await;
            script.await
        } => {}
    }
}

async fn ticks(n: u32) {
    tokio::time::sleep(EVERY * n).await;
}

fn fixed() -> Publish {
    Publish::Addresses(vec![
        PublishAddress::Ip([203, 0, 113, 7].into()),
        PublishAddress::Hostname("lb.example.com".into()),
    ])
}

#[tokio::test(start_paused = true)]
async fn a_leader_writes_each_ingress_once_and_each_warning_once() {
    let (admin, leader, sink) = (
        ProcessState::default(),
        AtomicBool::new(true),
        Recorded::default(),
    );
    let publish = fixed();
    set(
        &admin,
        &[("a", vec![unsupported("enable-cors")]), ("b", vec![])],
    );
    with_loop(&admin, &leader, &sink, Some(&publish), async {
        ticks(3).await;
        assert_eq!(sink.write_names(), ["a", "b"], "each once, not once a tick");
        assert_eq!(
            sink.events(),
            [("a".into(), "UnsupportedAnnotation".into())]
        );
        // A new warning on a: only it is reported; b gains one too.
        set(
            &admin,
            &[
                ("a", vec![unsupported("enable-cors"), no_backend()]),
                ("b", vec![no_backend()]),
            ],
        );
        ticks(3).await;
    })
    .await;
    assert_eq!(sink.write_names(), ["a", "b"]);
    assert_eq!(
        sink.writes.borrow()[0].1,
        [
            lb(Some("203.0.113.7"), None),
            lb(None, Some("lb.example.com"))
        ]
    );
    assert_eq!(
        sink.events(),
        [
            ("a".into(), "UnsupportedAnnotation".into()),
            ("a".into(), "BackendNotFound".into()),
            ("b".into(), "BackendNotFound".into()),
        ]
    );
    // Written statuses gave the references: none was read.
    assert!(sink.references.borrow().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_follower_writes_nothing_and_each_new_term_writes_everything_once() {
    let (admin, leader, sink) = (
        ProcessState::default(),
        AtomicBool::new(false),
        Recorded::default(),
    );
    let publish = fixed();
    set(&admin, &[("a", vec![unsupported("enable-cors")])]);
    with_loop(&admin, &leader, &sink, Some(&publish), async {
        ticks(3).await;
        assert!(sink.writes.borrow().is_empty(), "a follower wrote");
        assert!(sink.events.borrow().is_empty(), "a follower wrote events");
        leader.store(true, Ordering::Relaxed);
        ticks(3).await;
        leader.store(false, Ordering::Relaxed);
        ticks(2).await;
        leader.store(true, Ordering::Relaxed);
        ticks(2).await;
    })
    .await;
    assert_eq!(sink.write_names(), ["a", "a"]);
    assert_eq!(sink.events().len(), 2, "each term reports the warning once");
}

#[tokio::test(start_paused = true)]
async fn without_a_publish_flag_only_events_are_written() {
    let (admin, leader, sink) = (
        ProcessState::default(),
        AtomicBool::new(true),
        Recorded::default(),
    );
    set(
        &admin,
        &[("a", vec![unsupported("enable-cors")]), ("b", vec![])],
    );
    with_loop(&admin, &leader, &sink, None, async {
        ticks(3).await;
    })
    .await;
    assert!(sink.writes.borrow().is_empty());
    assert_eq!(*sink.service_reads.borrow(), 0);
    // The Ingress is read once for its reference; b, without warnings, never.
    assert_eq!(*sink.references.borrow(), ["a"]);
    assert_eq!(sink.events().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn failures_are_tried_again_and_a_gone_warning_that_returns_is_reported_again() {
    let (admin, leader, sink) = (
        ProcessState::default(),
        AtomicBool::new(true),
        Recorded::default(),
    );
    let publish = fixed();
    sink.failing
        .borrow_mut()
        .extend(["a".into(), "events".into()]);
    set(&admin, &[("a", vec![unsupported("enable-cors")])]);
    with_loop(&admin, &leader, &sink, Some(&publish), async {
        ticks(2).await;
        assert!(sink.writes.borrow().is_empty());
        assert!(sink.events.borrow().is_empty());
        sink.failing.borrow_mut().retain(|f| f != "a");
        ticks(2).await;
        assert_eq!(sink.write_names(), ["a"], "written once the API answers");
        assert!(sink.events.borrow().is_empty(), "events still refused");
        sink.failing.borrow_mut().clear();
        ticks(2).await;
        assert_eq!(sink.events().len(), 1, "the event, once accepted");
        // The warning goes (the Ingress was fixed), then comes back.
        set(&admin, &[("a", vec![])]);
        ticks(1).await;
        set(&admin, &[("a", vec![unsupported("enable-cors")])]);
        ticks(2).await;
        // The Ingress goes and comes back: a new object, written again.
        set(&admin, &[]);
        ticks(1).await;
        set(&admin, &[("a", vec![])]);
        ticks(2).await;
    })
    .await;
    assert_eq!(sink.write_names(), ["a", "a"]);
    assert_eq!(sink.events().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_publish_service_is_read_every_few_seconds_and_its_changes_written() {
    let (admin, leader, sink) = (
        ProcessState::default(),
        AtomicBool::new(true),
        Recorded::default(),
    );
    let publish = Publish::Service(ObjectKey::new("weir", "weir"));
    sink.failing.borrow_mut().push("service".into());
    *sink.service.borrow_mut() = vec![lb(Some("10.96.0.10"), None)];
    set(&admin, &[("a", vec![])]);
    with_loop(&admin, &leader, &sink, Some(&publish), async {
        ticks(2).await;
        // Never read: nothing to write yet (and not an empty list that would clear it).
        assert!(sink.writes.borrow().is_empty());
        sink.failing.borrow_mut().clear();
        ticks(1).await;
        assert_eq!(sink.write_names(), ["a"]);
        let reads = *sink.service_reads.borrow();
        ticks(3).await;
        assert_eq!(*sink.service_reads.borrow(), reads, "read again too soon");
        // The Service gets a load balancer: written at the next read.
        *sink.service.borrow_mut() = vec![lb(Some("198.51.100.9"), None)];
        ticks(SERVICE_REFRESH.as_secs() as u32).await;
        // A failed read keeps the addresses last read.
        sink.failing.borrow_mut().push("service".into());
        ticks(2 * SERVICE_REFRESH.as_secs() as u32).await;
    })
    .await;
    let writes = sink.writes.borrow();
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[1].1, [lb(Some("198.51.100.9"), None)]);
}
