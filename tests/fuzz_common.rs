//! The runner the `fuzz_*` targets share: proptest strategies driven for a number of cases, or
//! round after round until a deadline, counting executions; a case that hangs aborts the
//! process with its input printed.
//!
//! Included by each `fuzz_*.rs` as a module (`#[path = "fuzz_common.rs"] mod fuzz_common;`);
//! on its own it is a test target that checks the runner itself.
//!
//! Environment:
//! - `WEIR_FUZZ_CASES`: cases per round (default: the target's own, a few hundred);
//! - `WEIR_FUZZ_SECONDS`: run rounds until this many seconds have passed (default: one round);
//! - `WEIR_FUZZ_SEED`: the first round's seed (default: random; printed on failure);
//! - `WEIR_FUZZ_HANG_SECONDS`: a single case running longer than this is a hang (default 60);
//!   the process aborts after printing the input.
#![allow(dead_code)]

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestError, TestRunner};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a fuzz target runs, from the environment.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub cases: u32,
    pub deadline: Option<Duration>,
    pub seed: u64,
    pub hang: Duration,
}

impl Budget {
    pub fn from_env(default_cases: u32) -> Budget {
        let var = |name: &str| -> Option<u64> {
            let text = std::env::var(name).ok()?;
            Some(
                text.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
            )
        };
        let seed = var("WEIR_FUZZ_SEED").unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            nanos ^ (u64::from(std::process::id()) << 32)
        });
        Budget {
            cases: var("WEIR_FUZZ_CASES")
                .map_or(default_cases, |c| c.clamp(1, u32::MAX.into()) as u32),
            deadline: var("WEIR_FUZZ_SECONDS").map(Duration::from_secs),
            seed,
            hang: Duration::from_secs(var("WEIR_FUZZ_HANG_SECONDS").unwrap_or(60)),
        }
    }
}

/// The case running now, and since when.
type InProgress<V> = Option<(Instant, V)>;

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub executions: u64,
    pub rounds: u64,
}

/// Runs `test` on values of `strategy` under the budget the environment gives (see the module
/// docs), panicking with the minimal failing input and the seed that found it. Panics inside
/// `test` are failures too (proptest catches them). Prints one summary line.
pub fn fuzz<S>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) -> Report
where
    S: Strategy,
    S::Value: Clone + Debug + Send + 'static,
{
    let budget = Budget::from_env(default_cases);
    match run(name, budget, &strategy, &test) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

/// [`fuzz`] with an explicit budget; a failure is returned as its report text.
pub fn run<S>(
    name: &str,
    budget: Budget,
    strategy: &S,
    test: &impl Fn(S::Value) -> TestCaseResult,
) -> Result<Report, String>
where
    S: Strategy,
    S::Value: Clone + Debug + Send + 'static,
{
    let started = Instant::now();
    let executions = AtomicU64::new(0);
    // The case in progress and when it began, for the hang watchdog.
    let current: Arc<Mutex<InProgress<S::Value>>> = Arc::new(Mutex::new(None));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let current = current.clone();
        let done = done.clone();
        let name = name.to_string();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let guard = current.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((since, value)) = guard.as_ref()
                    && since.elapsed() > budget.hang
                {
                    eprintln!(
                        "{name}: HANG: one case has run for more than {:?} (seed {}); input:\n{value:#?}",
                        budget.hang, budget.seed
                    );
                    std::process::abort();
                }
            }
        })
    };
    let mut rounds = 0u64;
    let outcome = loop {
        let seed = budget.seed.wrapping_add(rounds);
        let config = Config {
            cases: budget.cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let result = runner.run(strategy, |value| {
            executions.fetch_add(1, Ordering::Relaxed);
            *current.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Instant::now(), value.clone()));
            let result = test(value);
            *current.lock().unwrap_or_else(|p| p.into_inner()) = None;
            result
        });
        rounds += 1;
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, minimal)) => {
                break Err(format!(
                    "{name}: FAILED after {} executions (round seed {seed}; rerun with \
                     WEIR_FUZZ_SEED={seed}): {reason}\nminimal input: {minimal:#?}",
                    executions.load(Ordering::Relaxed)
                ));
            }
            Err(TestError::Abort(reason)) => {
                break Err(format!("{name}: aborted (round seed {seed}): {reason}"));
            }
        }
        match budget.deadline {
            Some(limit) if started.elapsed() < limit => continue,
            _ => break Ok(()),
        }
    };
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let report = Report {
        executions: executions.load(Ordering::Relaxed),
        rounds,
    };
    if outcome.is_ok() {
        println!(
            "{name}: {} executions, 0 failures ({} rounds of {} cases, {:.1}s, first seed {})",
            report.executions,
            report.rounds,
            budget.cases,
            started.elapsed().as_secs_f64(),
            budget.seed
        );
    }
    outcome.map(|()| report)
}

#[cfg(test)]
mod runner_tests {
    use super::*;
    use proptest::prelude::*;

    fn budget(cases: u32) -> Budget {
        Budget {
            cases,
            deadline: None,
            seed: 7,
            hang: Duration::from_secs(60),
        }
    }

    #[test]
    fn counts_every_execution() {
        let report = run("count", budget(50), &any::<u8>(), &|_| Ok(())).expect("passes");
        assert_eq!(
            report,
            Report {
                executions: 50,
                rounds: 1
            }
        );
    }

    #[test]
    fn reports_a_failure_with_the_minimal_input_and_seed() {
        // (A panic is reported the same way: proptest catches it; this one stays quiet.)
        let failure = run("fails", budget(500), &(0u32..1000), &|v| {
            prop_assert!(v < 10, "too big");
            Ok(())
        })
        .expect_err("fails");
        assert!(failure.contains("WEIR_FUZZ_SEED="), "{failure}");
        assert!(failure.contains("minimal input: 10"), "{failure}");
    }

    #[test]
    fn a_deadline_runs_whole_rounds_until_it_passes() {
        let mut b = budget(10);
        b.deadline = Some(Duration::from_millis(30));
        let started = Instant::now();
        let report = run("rounds", b, &any::<u8>(), &|_| Ok(())).expect("passes");
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(report.executions, report.rounds * 10);
    }
}
