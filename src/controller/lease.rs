//! Leader election with a `coordination.k8s.io/v1` Lease. Every replica serves traffic; only
//! the holder of the Lease writes status. A holder that stops renewing is replaced once its
//! lease has run out.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in the Lease.
    pub identity: String,
    /// A holder that has not renewed for this long loses the Lease.
    pub duration: Duration,
    /// How often the holder renews (and others look).
    pub renew_every: Duration,
}

/// Holds or contends for the Lease forever; `leader` says whether this replica holds it.
pub async fn run(client: kube::Client, config: LeaseConfig, leader: Arc<AtomicBool>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    loop {
        let holds = match try_hold(&api, &config).await {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(error = %e, "lease: API error; keeping the current role until it expires");
                // Without the API we cannot renew: after a full lease duration, step down.
                false
            }
        };
        if leader.swap(holds, Ordering::Relaxed) != holds {
            if holds {
                tracing::info!(identity = %config.identity, "became the leader: writing pool status");
            } else {
                tracing::info!(identity = %config.identity, "no longer the leader");
            }
        }
        tokio::time::sleep(config.renew_every).await;
    }
}

/// One round: create, renew, or take over the Lease when it is ours to have.
async fn try_hold(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let seconds = config.duration.as_secs() as i32;
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let ours = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let expired = match &spec.renew_time {
        None => true,
        Some(renewed) => {
            let held_for = spec.lease_duration_seconds.unwrap_or(seconds).max(1) as i64;
            let age = now.0.as_microsecond() - renewed.0.as_microsecond();
            age > held_for * 1_000_000
        }
    };
    if !ours && !expired {
        return Ok(false);
    }
    if !ours {
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(seconds);
    // `replace` carries the resourceVersion we read: if another replica wrote in between, the
    // API server refuses ours (409) and we stay a follower this round.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
