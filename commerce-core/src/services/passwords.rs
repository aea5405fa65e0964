//! Password hashing: argon2id with OWASP's parameters, off the async runtime, with bounded
//! concurrency so a login flood cannot exhaust memory (each hash holds 19 MiB).

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::Password;
use crate::{Error, Result};

/// argon2id cost. The default is OWASP's minimum recommendation: m = 19 MiB, t = 2, p = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
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
}

/// Hashes and verifies passwords on the blocking pool.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Verified against when the email is unknown, so that path costs the same as a wrong
    /// password and the answer cannot reveal which emails have accounts.
    decoy: Arc<OnceLock<String>>,
}

impl PasswordHasher {
    /// A hasher with this cost; at most as many hashes run at once as there are CPUs.
    ///
    /// # Errors
    /// `Unexpected` when the cost parameters are outside argon2's limits.
    pub fn new(cost: HashCost) -> Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| Error::unexpected_msg(format!("argon2 parameters: {e}")))?;
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Ok(Self {
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            permits: Arc::new(Semaphore::new(cpus)),
            decoy: Arc::new(OnceLock::new()),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T> {
        let _permit = self.permits.acquire().await.map_err(Error::unexpected)?;
        let argon = self.argon.clone();
        tokio::task::spawn_blocking(move || work(&argon))
            .await
            .map_err(Error::unexpected)
    }

    /// A PHC-format hash of the password with a fresh salt.
    ///
    /// # Errors
    /// `Unexpected` when hashing fails.
    pub async fn hash(&self, password: &Password) -> Result<String> {
        let secret = password.expose().to_owned();
        self.blocking(move |argon| {
            let salt = SaltString::generate(&mut OsRng);
            argon.hash_password(secret.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await?
        .map_err(|e| Error::unexpected_msg(format!("argon2: {e}")))
    }

    /// Whether `password` matches `hash`. A malformed stored hash counts as a mismatch.
    ///
    /// # Errors
    /// `Unexpected` when the blocking pool fails.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool> {
        let (secret, hash) = (password.to_owned(), hash.to_owned());
        self.blocking(move |argon| {
            PasswordHash::new(&hash).is_ok_and(|parsed| argon.verify_password(secret.as_bytes(), &parsed).is_ok())
        })
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
}
