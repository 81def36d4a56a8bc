//! The `RequestMirror` filter, compiled: the pool a rule's requests are copied to, and the
//! share of them that is copied. Compile resolves the pool (a Service's endpoints get a pool of
//! their own, `.../rule-N/mirror-M`); the proxy sends the copies (`proxy/mirror.rs`).

use crate::api::gateway::HTTPRequestMirrorFilter;
use crate::routing::pool::Pool;
use std::sync::Arc;

/// One mirror of a rule: where its copies go, and how many requests get one.
#[derive(Debug)]
pub struct Mirror {
    pub pool: Arc<Pool>,
    pub sample: Sample,
}

/// The share of requests mirrored, as `numerator` out of `denominator` (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    numerator: u32,
    denominator: u32,
}

/// A `percent` or `fraction` weir cannot take as written (the CRD's own bounds, checked again
/// because a file in `weir serve` never went through the API server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    #[error("a mirror takes percent or fraction, not both")]
    PercentAndFraction,
    #[error("mirror percent {0} is not between 0 and 100")]
    Percent(i32),
    #[error(
        "mirror fraction {numerator}/{denominator}: the numerator must be between 0 and the denominator, which must be above 0"
    )]
    Fraction { numerator: i32, denominator: i32 },
}

impl Sample {
    /// Every request: what a filter without `percent` or `fraction` asks for.
    pub const ALL: Sample = Sample {
        numerator: 1,
        denominator: 1,
    };

    /// The share `f` asks for: `percent`, else `fraction` (denominator 100 by default), else all.
    pub fn compile(f: &HTTPRequestMirrorFilter) -> Result<Sample, MirrorError> {
        match (f.percent, &f.fraction) {
            (Some(_), Some(_)) => Err(MirrorError::PercentAndFraction),
            (Some(p), None) => match u32::try_from(p) {
                Ok(p) if p <= 100 => Ok(Sample {
                    numerator: p,
                    denominator: 100,
                }),
                _ => Err(MirrorError::Percent(p)),
            },
            (None, Some(fraction)) => {
                let denominator = fraction.denominator.unwrap_or(100);
                let bad = MirrorError::Fraction {
                    numerator: fraction.numerator,
                    denominator,
                };
                let (Ok(n), Ok(d)) = (
                    u32::try_from(fraction.numerator),
                    u32::try_from(denominator),
                ) else {
                    return Err(bad);
                };
                if d == 0 || n > d {
                    return Err(bad);
                }
                Ok(Sample {
                    numerator: n,
                    denominator: d,
                })
            }
            (None, None) => Ok(Sample::ALL),
        }
    }

    /// Whether this request is mirrored: drawn at random, so the share holds over many requests
    /// without state shared between connections. All and none take no draw.
    pub fn take(&self) -> bool {
        match self.numerator {
            0 => false,
            n if n >= self.denominator => true,
            n => fastrand::u32(0..self.denominator) < n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gateway::{BackendObjectReference, Fraction};

    fn filter(
        percent: Option<i32>,
        fraction: Option<(i32, Option<i32>)>,
    ) -> HTTPRequestMirrorFilter {
        HTTPRequestMirrorFilter {
            backend_ref: BackendObjectReference {
                name: "m".into(),
                port: Some(80),
                ..Default::default()
            },
            percent,
            fraction: fraction.map(|(numerator, denominator)| Fraction {
                numerator,
                denominator,
            }),
        }
    }

    fn share(s: Sample) -> f64 {
        let n = 20_000;
        (0..n).filter(|_| s.take()).count() as f64 / f64::from(n)
    }

    #[test]
    fn percent_and_fraction_as_the_crd_bounds_them() {
        assert_eq!(Sample::compile(&filter(None, None)), Ok(Sample::ALL));
        for bad in [-1, 101, i32::MAX] {
            assert_eq!(
                Sample::compile(&filter(Some(bad), None)),
                Err(MirrorError::Percent(bad))
            );
        }
        for (n, d) in [
            (-1, Some(2)),
            (3, Some(2)),
            (1, Some(0)),
            (1, Some(-5)),
            (101, None),
        ] {
            assert!(
                matches!(
                    Sample::compile(&filter(None, Some((n, d)))),
                    Err(MirrorError::Fraction { .. })
                ),
                "{n}/{d:?}"
            );
        }
        assert_eq!(
            Sample::compile(&filter(Some(10), Some((1, Some(2))))),
            Err(MirrorError::PercentAndFraction)
        );
    }

    #[test]
    fn the_share_taken_is_the_share_asked() {
        let compile = |p, f| Sample::compile(&filter(p, f)).expect("compiles");
        assert_eq!(share(compile(Some(0), None)), 0.0);
        assert_eq!(share(compile(None, Some((0, Some(7))))), 0.0);
        assert_eq!(share(compile(Some(100), None)), 1.0);
        assert_eq!(share(compile(None, Some((3, Some(3))))), 1.0);
        let half = share(compile(None, Some((1, Some(2)))));
        assert!((0.45..0.55).contains(&half), "1/2 took {half}");
        let quarter = share(compile(Some(25), None));
        assert!((0.2..0.3).contains(&quarter), "25% took {quarter}");
        // The denominator defaults to 100.
        let tenth = share(compile(None, Some((10, None))));
        assert!((0.07..0.13).contains(&tenth), "10/100 took {tenth}");
    }
}
