//! Polling until a deadline: the one loop behind every "wait until it answers" (metrics,
//! HTTP, Consul health, Prometheus targets, Alertmanager listing an alert).

use std::time::Duration;

use tokio::time::Instant;

/// Why one attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss<E> {
    /// Not yet: try again while time is left.
    Retry(E),
    /// Final: trying again cannot help (a page too large, a rejected request).
    Fail(E),
}

/// How long to wait between attempts: `first`, doubling up to `max` (equal for a fixed pace).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub first: Duration,
    pub max: Duration,
}

impl Pace {
    pub const fn every(d: Duration) -> Pace {
        Pace { first: d, max: d }
    }
}

/// Runs `attempt` until it succeeds, fails finally, or `timeout` has passed; then the last
/// error. Never sleeps past the deadline: the last attempt starts at it at the latest, so
/// the whole wait is `timeout` plus one attempt.
///
/// `attempt` is a closure returning a future rather than an async closure: the executor
/// spawns host runs on a multi-threaded runtime, and an `AsyncFnMut`'s future cannot be
/// shown `Send` for every borrow.
pub async fn until<T, E, Fut>(
    timeout: Duration,
    pace: Pace,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, Miss<E>>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = pace.first;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Miss::Fail(e)) => return Err(e),
            Err(Miss::Retry(e)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                tokio::time::sleep(delay.min(left)).await;
                delay = (delay * 2).min(pace.max.max(pace.first));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_backing_off_to_the_cap() {
        let start = Instant::now();
        let mut tries = Vec::new();
        let pace = Pace {
            first: Duration::from_millis(100),
            max: Duration::from_millis(300),
        };
        let got: Result<u32, &str> = until(Duration::from_secs(10), pace, || {
            tries.push(start.elapsed().as_millis());
            std::future::ready(if tries.len() < 5 {
                Err(Miss::Retry("not yet"))
            } else {
                Ok(7)
            })
        })
        .await;
        assert_eq!(got, Ok(7));
        // 100, then doubled to 200, then capped at 300.
        assert_eq!(tries, [0, 100, 300, 600, 900]);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_the_last_error_at_the_deadline_never_later() {
        let start = Instant::now();
        let mut n = 0;
        let got: Result<(), u32> = until(
            Duration::from_millis(2500),
            Pace::every(Duration::from_secs(1)),
            || {
                n += 1;
                std::future::ready(Err(Miss::Retry(n)))
            },
        )
        .await;
        // Tries at 0, 1 s, 2 s and 2.5 s (the deadline), not 3 s.
        assert_eq!(got, Err(4));
        assert_eq!(start.elapsed(), Duration::from_millis(2500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_miss_stops_at_once_and_zero_timeout_tries_once() {
        let start = Instant::now();
        let got: Result<(), &str> = until(
            Duration::from_secs(60),
            Pace::every(Duration::from_secs(1)),
            || std::future::ready(Err(Miss::Fail("too large"))),
        )
        .await;
        assert_eq!(got, Err("too large"));
        assert_eq!(start.elapsed(), Duration::ZERO);
        let mut n = 0;
        let got: Result<(), &str> =
            until(Duration::ZERO, Pace::every(Duration::from_secs(1)), || {
                n += 1;
                std::future::ready(Err(Miss::Retry("down")))
            })
            .await;
        assert_eq!((got, n), (Err("down"), 1));
    }
}
