//! Password hashing: argon2id with OWASP's parameters, off the async runtime, with only as many
//! hashes at once as the CPUs have room for (one per CPU at the default single lane; a cost with
//! more lanes has argon2 compute them in parallel on rayon's pool), so a login flood cannot
//! exhaust memory (each hash holds 19 MiB) and the hashing cores never wait on the runtime
//! between two hashes.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::password_hash::{self};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use crate::domain::Password;
use crate::{Error, Result};

/// argon2id cost. The default is OWASP's minimum recommendation: m = 19 MiB, t = 2, p = 1.
///
/// A cost with more lanes has them computed on as many cores (one hash in a fraction of the
/// time, one workspace where single-lane hashes side by side hold one each). It was the default
/// for a while (p = 2) and measured worse on a 2-core host: a two-lane hash waits at each of
/// its eight sync points for the slower lane, so any other work on either core (the runtime,
/// PostgreSQL on the same machine, the VM's neighbours) stalls the whole hash. Logins fell to
/// 55-60 % of the raw rate with PostgreSQL beside the host, against ~90 % with independent
/// single-lane hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes, computed in parallel.
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashCost {
    /// The cheapest valid cost, for tests only: never use it in production.
    pub const fn insecure_for_tests() -> Self {
        Self {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// How many hashes at this cost run at once on `cpus` CPUs: each keeps one core per lane
    /// busy, and at least one runs.
    pub fn hashes_at_once(&self, cpus: usize) -> usize {
        (cpus / (self.parallelism.max(1) as usize)).max(1)
    }
}

/// The variant new hashes use; stored hashes name their own.
const ALGORITHM: Algorithm = Algorithm::Argon2id;
const VERSION: Version = Version::V0x13;

/// A unit of hashing work, run on one of the hashing threads. It returns the hand-over of its
/// result, which the thread calls only once it is listed idle again (or has taken its next job).
type Job = Box<dyn FnOnce(&mut Workspace) -> Handover + Send>;
/// Sends a job's result to its caller.
type Handover = Box<dyn FnOnce() + Send>;

/// A hashing thread's state: the configured hasher and argon2's working memory, kept from one
/// hash to the next (allocating and zeroing 19 MiB per hash cost 5 % of it).
struct Workspace {
    argon: Argon2<'static>,
    memory: Vec<Block>,
}

impl Workspace {
    /// A PHC-format hash of `password` with a fresh salt at the configured cost.
    fn hash(&mut self, password: &[u8]) -> password_hash::Result<String> {
        let salt = Salt::generate();
        // A copy (a few hundred bytes) so the kept memory can be borrowed beside it.
        let argon = self.argon.clone();
        let len = argon.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = self.compute(&argon, password, &salt, len)?;
        let hash = PasswordHash {
            algorithm: ALGORITHM.ident(),
            version: Some(VERSION.into()),
            params: ParamsString::try_from(argon.params())?,
            salt: Some(salt),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }

    /// Whether `password` matches the PHC-format `stored` hash, at the cost that hash names.
    fn verify(&mut self, password: &[u8], stored: &str) -> password_hash::Result<bool> {
        let stored = PasswordHash::new(stored)?;
        let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
            return Ok(false);
        };
        let version = stored.version.map(Version::try_from).transpose()?.unwrap_or_default();
        let argon = Argon2::new(
            Algorithm::try_from(stored.algorithm.as_str())?,
            version,
            Params::try_from(&stored)?,
        );
        // `Output` compares in constant time.
        Ok(self.compute(&argon, password, salt, expected.len())? == *expected)
    }

    /// argon2 by `argon` of `password` and `salt` into `len` bytes, in the working memory kept
    /// for the configured cost when `argon`'s cost fits in it (a stored hash may name a higher
    /// cost than today's; that one hash then allocates its own).
    fn compute(
        &mut self,
        argon: &Argon2<'_>,
        password: &[u8],
        salt: &Salt,
        len: usize,
    ) -> password_hash::Result<Output> {
        let (blocks, kept) = (argon.params().block_count(), self.argon.params().block_count());
        if blocks <= kept && self.memory.len() < kept {
            self.memory.resize(kept, Block::new());
        }
        let mut buffer = [0u8; Output::MAX_LENGTH];
        let out = buffer.get_mut(..len).ok_or(password_hash::Error::OutputSize)?;
        // A single lane runs on this thread; more are computed in parallel by argon2's
        // `parallel` feature, on rayon's pool.
        if blocks <= kept {
            argon.hash_password_into_with_memory(password, salt, out, &mut self.memory[..blocks])
        } else {
            argon.hash_password_into(password, salt, out)
        }?;
        Ok(Output::new(out)?)
    }
}

/// Who is free and what waits, shared by the callers and the hashing threads.
#[derive(Default)]
struct Board {
    /// Threads waiting for work, the most recently busy last.
    idle: Vec<usize>,
    /// Jobs no thread was free for, oldest first.
    backlog: VecDeque<Job>,
}

/// The hashing threads: each takes its own jobs and, when it finishes one, the backlog's
/// oldest before it declares itself idle (all under the board's lock, so no job waits while a
/// thread is idle). A thread ends when its sender drops with the pool.
struct Pool {
    board: Arc<Mutex<Board>>,
    threads: Vec<Sender<Job>>,
}

impl Pool {
    fn submit(&self, job: Job) -> Result<()> {
        let mut board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
        match board.idle.pop() {
            Some(thread) => {
                drop(board);
                self.threads[thread]
                    .send(job)
                    .map_err(|_| Error::unexpected_msg("a password hashing thread has stopped"))
            }
            None => {
                board.backlog.push_back(job);
                Ok(())
            }
        }
    }
}

/// The loop of hashing thread `me`.
fn hash_jobs(me: usize, board: &Mutex<Board>, mine: &Receiver<Job>, workspace: &mut Workspace) {
    while let Ok(mut job) = mine.recv() {
        loop {
            // A panicking job drops its reply, which its caller reports; the thread stays.
            let handover = catch_unwind(AssertUnwindSafe(|| job(workspace))).ok();
            let next = {
                let mut board = board.lock().unwrap_or_else(PoisonError::into_inner);
                let next = board.backlog.pop_front();
                if next.is_none() {
                    board.idle.push(me);
                }
                next
            };
            // Only now: a caller that hashes again as soon as it has its answer (a seeding loop,
            // one login after another) finds this thread idle and warm. Answering first let its
            // next job reach the other thread now and then, which then allocated a second
            // 19 MiB workspace for hashes that never ran side by side.
            if let Some(handover) = handover {
                handover();
            }
            match next {
                Some(n) => job = n,
                None => break,
            }
        }
    }
}

/// Hashes and verifies passwords on dedicated threads, one per hash that may run at once
/// ([`HashCost::hashes_at_once`]).
///
/// A thread takes the next waiting job as soon as it finishes one, so under a login flood the
/// cores hash back to back; a semaphore in front of `spawn_blocking` instead left them idle
/// while the runtime handed the permit to the next waiter (7 % of the cores at 32 clients).
/// A new job goes to the thread that was busy last, whose memory is still warm: handing
/// successive logins to the threads in turn made each hash 7 % slower.
/// The threads end when the last clone of the hasher is dropped.
#[derive(Clone)]
pub struct PasswordHasher {
    pool: Arc<Pool>,
    /// Verified against when the email is unknown, so that path costs the same as a wrong
    /// password and the answer cannot reveal which emails have accounts.
    decoy: Arc<OnceLock<String>>,
}

impl PasswordHasher {
    /// A hasher with this cost, running as many hashes at once as [`HashCost::hashes_at_once`]
    /// allows.
    ///
    /// # Errors
    /// `Unexpected` when the cost parameters are outside argon2's limits or a hashing thread
    /// cannot be started.
    pub fn new(cost: HashCost) -> Result<Self> {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self::with_threads(cost, cost.hashes_at_once(cpus))
    }

    /// A hasher with `slots` hashing threads.
    fn with_threads(cost: HashCost, slots: usize) -> Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| Error::unexpected_msg(format!("argon2 parameters: {e}")))?;
        let argon = Argon2::new(ALGORITHM, VERSION, params);
        let board = Arc::new(Mutex::new(Board {
            idle: (0..slots).collect(),
            backlog: VecDeque::new(),
        }));
        let mut threads = Vec::with_capacity(slots);
        for me in 0..slots {
            let (sender, mine) = channel::<Job>();
            let board = Arc::clone(&board);
            let mut workspace = Workspace {
                argon: argon.clone(),
                // Allocated by the first hash: a host that never hashes never holds it.
                memory: Vec::new(),
            };
            std::thread::Builder::new()
                .name(format!("argon2-{me}"))
                .spawn(move || hash_jobs(me, &board, &mine, &mut workspace))
                .map_err(|e| Error::unexpected_msg(format!("password hashing thread: {e}")))?;
            threads.push(sender);
        }
        Ok(Self {
            pool: Arc::new(Pool { board, threads }),
            decoy: Arc::new(OnceLock::new()),
        })
    }

    /// Runs `work` on a hashing thread and waits for its result. Work whose caller has gone
    /// (a dropped request) is skipped when its turn comes.
    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&mut Workspace) -> T + Send + 'static) -> Result<T> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |workspace| {
            let result = (!reply.is_closed()).then(|| work(workspace));
            Box::new(move || {
                if let Some(result) = result {
                    let _ = reply.send(result);
                }
            })
        });
        self.pool.submit(job)?;
        result
            .await
            .map_err(|_| Error::unexpected_msg("a password hashing job failed"))
    }

    /// A PHC-format hash of the password with a fresh salt.
    ///
    /// # Errors
    /// `Unexpected` when hashing fails.
    pub async fn hash(&self, password: &Password) -> Result<String> {
        let secret = password.expose().to_owned();
        self.blocking(move |workspace| workspace.hash(secret.as_bytes()))
            .await?
            .map_err(|e| Error::unexpected_msg(format!("argon2: {e}")))
    }

    /// Whether `password` matches `hash`. A malformed stored hash counts as a mismatch.
    ///
    /// # Errors
    /// `Unexpected` when the hashing threads fail.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool> {
        let (secret, hash) = (password.to_owned(), hash.to_owned());
        self.blocking(move |workspace| workspace.verify(secret.as_bytes(), &hash).unwrap_or(false))
            .await
    }

    /// Spends the same time as a real verification, for unknown accounts.
    ///
    /// # Errors
    /// `Unexpected` when hashing fails.
    pub async fn verify_decoy(&self, password: &str) -> Result<()> {
        let decoy = match self.decoy.get() {
            Some(h) => h.clone(),
            None => {
                let fresh = self
                    .hash(&Password::parse("decoy-password-never-matches").map_err(Error::unexpected)?)
                    .await?;
                self.decoy.get_or_init(|| fresh).clone()
            }
        };
        self.verify(password, &decoy).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_use_argon2id_with_the_given_cost() {
        let hasher = PasswordHasher::new(HashCost::default()).unwrap();
        let pw = Password::parse("correct horse battery").unwrap();
        let hash = hasher.hash(&pw).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse battery", &hash).await.unwrap());
        assert!(!hasher.verify("wrong horse battery", &hash).await.unwrap());
        assert!(!hasher.verify("anything", "not a phc string").await.unwrap());
        hasher.verify_decoy("whatever").await.unwrap();
    }

    /// A hash by the argon2 crate's own `PasswordHasher` at `cost` (how any other argon2
    /// implementation would have stored it).
    fn crate_hash(algorithm: Algorithm, cost: HashCost, password: &str) -> String {
        use argon2::password_hash::PasswordHasher as _;
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None).unwrap();
        Argon2::new(algorithm, VERSION, params)
            .hash_password_with_salt(password.as_bytes(), &Salt::generate())
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn verifies_hashes_made_elsewhere_at_any_cost_and_its_own_hashes_verify_elsewhere() {
        use argon2::password_hash::PasswordVerifier as _;
        let configured = HashCost {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let hasher = PasswordHasher::new(configured).unwrap();
        let cheaper = HashCost::insecure_for_tests();
        // Dearer than the kept working memory: verified in memory of its own.
        let dearer = HashCost {
            memory_kib: 256,
            iterations: 2,
            parallelism: 2,
        };
        for cost in [configured, cheaper, dearer, configured] {
            let stored = crate_hash(ALGORITHM, cost, "correct horse battery");
            assert!(
                hasher.verify("correct horse battery", &stored).await.unwrap(),
                "{stored}"
            );
            assert!(
                !hasher.verify("correct horse batterY", &stored).await.unwrap(),
                "{stored}"
            );
        }
        // Argon2i and argon2d hashes name their variant, which is honoured.
        for algorithm in [Algorithm::Argon2i, Algorithm::Argon2d] {
            let stored = crate_hash(algorithm, cheaper, "pw-123456");
            assert!(hasher.verify("pw-123456", &stored).await.unwrap(), "{stored}");
        }
        let own = hasher
            .hash(&Password::parse("correct horse battery").unwrap())
            .await
            .unwrap();
        let parsed = PasswordHash::new(&own).unwrap();
        let crate_verifier = Argon2::default();
        assert!(
            crate_verifier
                .verify_password(b"correct horse battery", &parsed)
                .is_ok(),
            "{own}"
        );
        assert!(crate_verifier.verify_password(b"wrong", &parsed).is_err());
        // A tampered digest or salt fails.
        let digest = parsed.hash.unwrap().to_string();
        let flipped = format!(
            "{}{}",
            &digest[..digest.len() - 2],
            if digest.ends_with("AA") { "BA" } else { "AA" }
        );
        assert!(
            !hasher
                .verify("correct horse battery", &own.replace(&digest, &flipped))
                .await
                .unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_one_after_another_stay_on_one_thread() {
        let hasher = PasswordHasher::with_threads(HashCost::insecure_for_tests(), 2).unwrap();
        let mut threads = std::collections::HashSet::new();
        for _ in 0..2_000 {
            let thread = hasher
                .blocking(|_| std::thread::current().name().map(str::to_owned))
                .await
                .unwrap();
            threads.insert(thread);
        }
        assert_eq!(
            threads.len(),
            1,
            "a caller hashing again once answered found its thread busy: {threads:?}"
        );
    }

    #[test]
    fn each_hash_at_once_takes_a_core_per_lane() {
        assert_eq!(HashCost::default().hashes_at_once(2), 2, "one lane: a hash per core");
        let two_lanes = HashCost {
            parallelism: 2,
            ..HashCost::default()
        };
        assert_eq!(two_lanes.hashes_at_once(1), 1);
        assert_eq!(two_lanes.hashes_at_once(2), 1);
        assert_eq!(two_lanes.hashes_at_once(3), 1);
        assert_eq!(two_lanes.hashes_at_once(8), 4);
        let one_lane = HashCost::insecure_for_tests();
        assert_eq!(one_lane.hashes_at_once(2), 2);
        let zero = HashCost {
            parallelism: 0,
            ..one_lane
        };
        assert_eq!(zero.hashes_at_once(2), 2);
    }

    #[tokio::test]
    async fn a_dropped_caller_does_not_stop_the_hashing_threads() {
        let hasher = PasswordHasher::new(HashCost::insecure_for_tests()).unwrap();
        let stored = crate_hash(ALGORITHM, HashCost::insecure_for_tests(), "pw-123456");
        // Queued then abandoned, as a request whose client went away.
        for _ in 0..8 {
            let abandoned = hasher.verify("pw-123456", &stored);
            drop(tokio::time::timeout(std::time::Duration::ZERO, abandoned).await);
        }
        assert!(hasher.verify("pw-123456", &stored).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_hashes_than_threads_all_finish_with_their_own_answers() {
        let hasher = PasswordHasher::new(HashCost::insecure_for_tests()).unwrap();
        let stored = crate_hash(ALGORITHM, HashCost::insecure_for_tests(), "pw-123456");
        let checks = (0..64).map(|i| {
            let (hasher, stored) = (hasher.clone(), stored.clone());
            tokio::spawn(async move {
                let password = if i % 2 == 0 { "pw-123456" } else { "pw-654321" };
                (i, hasher.verify(password, &stored).await.unwrap())
            })
        });
        for check in futures::future::join_all(checks).await {
            let (i, matched) = check.unwrap();
            assert_eq!(matched, i % 2 == 0, "check {i}");
        }
    }
}
