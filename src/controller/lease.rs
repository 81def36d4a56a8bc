//! Leader election with a `coordination.k8s.io/v1` Lease. Every replica serves traffic; only
//! the holder of the Lease writes status. A holder that stops renewing is replaced once its
//! lease has run out; it steps down itself a little earlier, at its renew deadline.

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

impl LeaseConfig {
    /// How long a leader keeps the role without a renewal: the lease less one renewal period.
    /// Others count the lease from the renewTime we wrote, by their own clocks; stepping down
    /// one period early leaves that much room for a clock ahead of ours (client-go keeps a
    /// renew deadline below the lease for the same reason).
    pub fn renew_deadline(&self) -> Duration {
        self.duration.saturating_sub(self.renew_every)
    }
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
        // A round that hangs must not stretch the role past the deadline: others take over
        // once the lease has run out.
        let expires = renewed
            .filter(|_| held)
            .map(|r| r + config.renew_deadline());
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
        let holds = still_leader(
            held,
            renewed,
            Instant::now(),
            config.renew_deadline(),
            outcome,
        );
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
        // A leader that could not renew wakes at its deadline rather than a period after it,
        // so it never holds the role past what it claimed.
        let mut next = Instant::now() + config.renew_every;
        if holds && let Some(r) = renewed {
            next = next.min(r + config.renew_deadline());
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Whether this replica leads after a round. Without an answer, a leader keeps the role while
/// its last renewal is younger than its renew deadline: no other replica can take over before
/// then, so a short API outage does not make every replica step down (and the next leader
/// rewrite all status).
fn still_leader(
    held: bool,
    renewed: Option<Instant>,
    now: Instant,
    deadline: Duration,
    outcome: Round,
) -> bool {
    match outcome {
        Round::Held => true,
        Round::Refused => false,
        Round::Unanswered => {
            held && renewed.is_some_and(|r| now.saturating_duration_since(r) < deadline)
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

    #[tokio::test(start_paused = true)]
    async fn a_short_api_outage_keeps_leadership() {
        let script = [Some(true), None, None, None, None, Some(true), Some(true)];
        let seen = play(config(Duration::from_secs(30)), &script, 8).await;
        assert_eq!(seen, [false, true, true, true, true, true, true, true]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_api_outage_steps_down() {
        let seen = play(config(Duration::from_millis(100)), &[Some(true), None], 100).await;
        // 5 ms a round: well inside the lease after one error, well past it after 99.
        assert!(seen[2], "stepped down at the first error: {seen:?}");
        assert!(!seen[99], "kept leading past the lease: {seen:?}");
    }

    /// When the replica leads and stops leading, on the paused clock, with the API server
    /// answering `first` once and then failing.
    async fn reign(config: LeaseConfig, first: Option<bool>) -> (Option<Duration>, Duration) {
        let leader = AtomicBool::new(false);
        let start = Instant::now();
        let mut rounds = 0;
        let looped = lead(&config, &leader, || {
            rounds += 1;
            let answer = if rounds == 1 { first } else { None };
            std::future::ready(answer.ok_or("connection refused"))
        });
        let watch = async {
            // Paused time: every sleep ends exactly when due. Samples fall between the loop's
            // whole-second wake-ups, so none races a change at the same instant.
            let mut became = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let leads = leader.load(Ordering::Relaxed);
                match (became, leads) {
                    (None, true) => became = Some(start.elapsed()),
                    (Some(_), false) => return (became, start.elapsed()),
                    (None, false) if start.elapsed() > Duration::from_secs(60) => {
                        return (None, start.elapsed());
                    }
                    _ => {}
                }
            }
        };
        tokio::select! {
            _ = looped => unreachable!("the lease loop never ends"),
            times = watch => times,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_steps_down_at_its_deadline_not_a_period_later() {
        // 10 s lease, renewing every 4 s: rounds at 0 (held) and 4 (no answer); the deadline
        // is 6 s. Sleeping a whole period again would keep the role until 8 s, and the old
        // "until the lease expires" rule until 12 s, past the 10 s at which others take over.
        let mut c = config(Duration::from_secs(10));
        c.renew_every = Duration::from_secs(4);
        assert_eq!(c.renew_deadline(), Duration::from_secs(6));
        let (became, stepped_down) = reign(c, Some(true)).await;
        assert_eq!(became, Some(Duration::from_millis(150)));
        assert_eq!(stepped_down, Duration::from_millis(6050));
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_that_is_refused_never_leads() {
        let mut c = config(Duration::from_secs(10));
        c.renew_every = Duration::from_secs(2);
        assert_eq!(reign(c, Some(false)).await.0, None);
    }

    #[tokio::test(start_paused = true)]
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
        // The hung round was cut off at the deadline and the loop went on contending.
        assert!(rounds > 2, "the hung round never ended: {rounds} round(s)");
    }
}
