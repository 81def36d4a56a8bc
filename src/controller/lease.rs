//! Leader election with a `coordination.k8s.io/v1` Lease. Every replica serves traffic; only
//! the holder of the Lease writes status. A holder that stops renewing is replaced once its
//! lease has run out.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

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
    lead(&config, &leader, || try_hold(&api, &config)).await
}

/// What one round with the API server said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// The Lease is ours: created, renewed or taken over.
    Held,
    /// Another replica holds it, or won a race to write it.
    Refused,
    /// No answer: an API error or a round that ran out of time.
    Unanswered,
}

/// The loop of [`run`], with the API round as a parameter so a test can play the API server.
// A closure returning a future rather than an async closure: the latter's future is not yet
// provably `Send`, and `run` is spawned.
async fn lead<E: std::fmt::Display, F: Future<Output = Result<bool, E>>>(
    config: &LeaseConfig,
    leader: &AtomicBool,
    mut round: impl FnMut() -> F,
) {
    // When this replica last renewed, by its own clock: taken before the request, as the
    // renewTime it writes (which others count the lease from) is no earlier.
    let mut renewed: Option<Instant> = None;
    loop {
        let held = leader.load(Ordering::Relaxed);
        let started = Instant::now();
        // A round that hangs must not stretch the role past the lease, which others take over
        // once it has run out.
        let expires = renewed.filter(|_| held).map(|r| r + config.duration);
        let answer = match expires {
            Some(at) => tokio::time::timeout_at(at, round()).await.ok(),
            None => Some(round().await),
        };
        let outcome = match answer {
            Some(Ok(true)) => Round::Held,
            Some(Ok(false)) => Round::Refused,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "lease: API error; keeping the current role until it expires");
                Round::Unanswered
            }
            None => {
                tracing::debug!("lease: no answer before the lease ran out");
                Round::Unanswered
            }
        };
        let holds = still_leader(held, renewed, Instant::now(), config.duration, outcome);
        if outcome == Round::Held {
            renewed = Some(started);
        }
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

/// Whether this replica leads after a round. Without an answer, a leader keeps the role while
/// its last renewal is younger than the lease: no other replica can take over before then, so a
/// short API outage does not make every replica step down (and the next leader rewrite all
/// status).
fn still_leader(
    held: bool,
    renewed: Option<Instant>,
    now: Instant,
    duration: Duration,
    outcome: Round,
) -> bool {
    match outcome {
        Round::Held => true,
        Round::Refused => false,
        Round::Unanswered => {
            held && renewed.is_some_and(|r| now.saturating_duration_since(r) < duration)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    #[test]
    fn an_unanswered_round_keeps_the_role_until_the_lease_would_expire() {
        let renewed = Instant::now();
        let soon = renewed + Duration::from_secs(5);
        let expired = renewed + DURATION;
        assert!(still_leader(
            true,
            Some(renewed),
            soon,
            DURATION,
            Round::Unanswered
        ));
        assert!(!still_leader(
            true,
            Some(renewed),
            expired,
            DURATION,
            Round::Unanswered
        ));
        // A follower that cannot reach the API has nothing to keep.
        assert!(!still_leader(
            false,
            Some(renewed),
            soon,
            DURATION,
            Round::Unanswered
        ));
        assert!(!still_leader(true, None, soon, DURATION, Round::Unanswered));
    }

    #[test]
    fn an_answered_round_decides_at_once() {
        let renewed = Instant::now();
        let later = renewed + Duration::from_secs(60);
        assert!(still_leader(false, None, later, DURATION, Round::Held));
        assert!(still_leader(
            true,
            Some(renewed),
            later,
            DURATION,
            Round::Held
        ));
        // Another replica holds it (ours had expired, or it won a race): step down now.
        assert!(!still_leader(
            true,
            Some(renewed),
            renewed,
            DURATION,
            Round::Refused
        ));
    }

    fn config(duration: Duration) -> LeaseConfig {
        LeaseConfig {
            namespace: "weir-system".into(),
            name: "weir-leader".into(),
            identity: "weir-test".into(),
            duration,
            renew_every: Duration::from_millis(5),
        }
    }

    /// Plays the API server from `script` (`None` is an error) and records, at each round,
    /// whether the replica led going into it; the last answer repeats.
    async fn play(config: LeaseConfig, script: &[Option<bool>], rounds: usize) -> Vec<bool> {
        let leader = AtomicBool::new(false);
        let mut seen = Vec::new();
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let mut done_tx = Some(done_tx);
        let looped = lead(&config, &leader, || {
            seen.push(leader.load(Ordering::Relaxed));
            if seen.len() == rounds
                && let Some(tx) = done_tx.take()
            {
                let _ = tx.send(());
            }
            let answer = script[(seen.len() - 1).min(script.len() - 1)];
            std::future::ready(answer.ok_or("connection refused"))
        });
        tokio::select! {
            _ = looped => unreachable!("the lease loop never ends"),
            _ = done => {}
        }
        seen
    }

    #[tokio::test]
    async fn a_short_api_outage_keeps_leadership() {
        let script = [Some(true), None, None, None, None, Some(true), Some(true)];
        let seen = play(config(Duration::from_secs(30)), &script, 8).await;
        assert_eq!(seen, [false, true, true, true, true, true, true, true]);
    }

    #[tokio::test]
    async fn a_long_api_outage_steps_down() {
        let seen = play(config(Duration::from_millis(100)), &[Some(true), None], 100).await;
        // 5 ms a round: well inside the lease after one error, well past it after 99.
        assert!(seen[2], "stepped down at the first error: {seen:?}");
        assert!(!seen[99], "kept leading past the lease: {seen:?}");
    }

    #[tokio::test]
    async fn a_round_that_hangs_ends_with_the_lease() {
        let (config, leader) = (config(Duration::from_millis(100)), AtomicBool::new(false));
        let mut rounds = 0;
        let looped = lead(&config, &leader, || {
            rounds += 1;
            let round = rounds;
            async move {
                match round {
                    1 => Ok(true),
                    2 => std::future::pending().await,
                    _ => Err("connection refused"),
                }
            }
        });
        tokio::select! {
            _ = looped => unreachable!("the lease loop never ends"),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        assert!(!leader.load(Ordering::Relaxed));
    }
}
