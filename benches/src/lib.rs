//! Shared helpers of the benchmarks: latency recording and summaries, and the raw argon2id
//! hash rate that logins are judged against.

use std::time::{Duration, Instant};

/// Latencies of one scenario.
#[derive(Debug, Default)]
pub struct Samples {
    latencies: Vec<Duration>,
    errors: u64,
}

impl Samples {
    /// Records one request.
    pub fn record(&mut self, latency: Duration, ok: bool) {
        self.latencies.push(latency);
        if !ok {
            self.errors += 1;
        }
    }

    /// Merges another worker's samples.
    pub fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
    }

    /// Summary over a run that took `wall`.
    pub fn summary(mut self, wall: Duration) -> Summary {
        self.latencies.sort_unstable();
        let pick = |q: f64| {
            if self.latencies.is_empty() {
                Duration::ZERO
            } else {
                let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
                self.latencies[i]
            }
        };
        Summary {
            requests: self.latencies.len() as u64,
            errors: self.errors,
            per_second: self.latencies.len() as f64 / wall.as_secs_f64(),
            p50: pick(0.50),
            p99: pick(0.99),
        }
    }
}

/// What a scenario measured.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Requests made.
    pub requests: u64,
    /// Requests that did not get the expected answer.
    pub errors: u64,
    /// Throughput.
    pub per_second: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>10.1}/s  p50 {:>9.3} ms  p99 {:>9.3} ms  ({} requests, {} errors)",
            self.per_second,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.requests,
            self.errors
        )
    }
}

/// Runs `op` from `clients` concurrent tasks until `duration` has passed; `op` returns whether
/// the answer was the expected one.
pub async fn drive<F, Fut>(clients: usize, duration: Duration, op: F) -> Summary
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let workers = (0..clients).map(|worker| {
        let op = op.clone();
        tokio::spawn(async move {
            let mut samples = Samples::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = op(worker).await;
                samples.record(t.elapsed(), ok);
            }
            samples
        })
    });
    let mut all = Samples::default();
    for w in futures::future::join_all(workers).await {
        all.merge(w.unwrap_or_default());
    }
    all.summary(start.elapsed())
}

/// Raw argon2id hashes per second at `cost` with `at_once` hashes running back to back, each in
/// its own kept working memory (as the host's hashing threads do), for about `secs` seconds
/// after a warm-up: the physical limit for logins.
///
/// # Errors
/// When `cost` is outside argon2's limits.
pub fn raw_hash_rate(cost: commerce_core::services::HashCost, at_once: usize, secs: f64) -> Result<f64, String> {
    let params = argon2::Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| format!("argon2 parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let hash = |memory: &mut [argon2::Block]| {
        let mut out = [0u8; 32];
        argon
            .hash_password_into_with_memory(b"password-123", b"saltsaltsaltsalt", &mut out, memory)
            .map_err(|e| format!("argon2: {e}"))
    };
    let blocks = argon.params().block_count();
    let mut memory = vec![argon2::Block::new(); blocks];
    for _ in 0..3 {
        hash(&mut memory)?;
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..at_once {
            s.spawn(|| {
                let mut memory = vec![argon2::Block::new(); blocks];
                while start.elapsed().as_secs_f64() < secs && hash(&mut memory).is_ok() {
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    Ok(done.into_inner() as f64 / start.elapsed().as_secs_f64())
}
