//! Waiting until a deadline. `eventually` is promfleet's own loop (`base::poll::until`);
//! `wait_for` takes an async closure that borrows its surroundings, which `until` (a closure
//! returning a `Send` future) cannot.

use std::path::Path;
use std::time::{Duration, Instant};

use promfleet::base::poll::{Miss, Pace, until};

/// Poll `f` every 300 ms until it returns Some or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    until(limit, Pace::every(Duration::from_millis(300)), || {
        let attempt = f();
        async move { attempt.await.ok_or(Miss::Retry(())) }
    })
    .await
    .ok()
}

/// Polls `check` every 100 ms until it returns Some or `limit` passes.
pub async fn wait_for<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Poll for a file with a bound.
pub fn wait_for_file(p: &Path, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
