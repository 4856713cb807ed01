//! Signing in: argon2id passwords, one-time codes, browser sessions and the failure counts
//! that rate-limit guessing. Secrets that travel (session cookies, codes) are stored only as
//! SHA-256, so a leaked database does not let anyone in.

use crate::db::{Store, from_millis, millis};
use crate::error::{Result, StoreError};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

/// Shortest password accepted (NIST SP 800-63B's minimum for chosen passwords).
pub const MIN_PASSWORD_CHARS: usize = 8;

/// A live browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub person: String,
    /// Every form posted in this session must carry this token.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Who a person is on screen.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: String,
    pub name: String,
    pub unit_id: String,
    pub locale: Option<String>,
}

/// SHA-256 (hex) of a secret or of text a stranger chose: what is stored instead of it.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Invalid(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// What a password is checked against when there is no account: a hash of random bytes
/// with the same parameters as real ones, which nothing matches.
static NOBODYS_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (secret, salt_hex) = (random_hex(16).unwrap_or_default(), random_hex(16).unwrap_or_default());
    let salt = SaltString::encode_b64(salt_hex.as_bytes()).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Hashing is deliberately slow (tens of milliseconds): keep it off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("password hashing does not panic")
}

impl Store {
    /// The person a sign-in name means: their id or their phone number.
    pub async fn find_login(&self, login: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM people WHERE id = $1 OR phone = $1 ORDER BY id LIMIT 1")
                .bind(login.trim())
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    pub async fn profile(&self, person: &str) -> Result<Profile> {
        let row: Option<(String, String, String, Option<String>)> =
            sqlx::query_as("SELECT id, name, unit_id, locale FROM people WHERE id = $1")
                .bind(person)
                .fetch_optional(&self.reader)
                .await?;
        let (id, name, unit_id, locale) = row.ok_or_else(|| StoreError::NotFound(format!("person \"{person}\"")))?;
        Ok(Profile {
            id,
            name,
            unit_id,
            locale: locale.filter(|l| !l.is_empty()),
        })
    }

    pub async fn set_locale(&self, person: &str, locale: &str) -> Result<()> {
        sqlx::query("UPDATE people SET locale = $2 WHERE id = $1")
            .bind(person)
            .bind(locale)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_password(&self, person: &str, password: &str) -> Result<()> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(StoreError::Invalid(format!(
                "a password needs at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        self.profile(person).await?;
        let password = password.to_string();
        let salt_hex = random_hex(16)?;
        let hash = blocking(move || {
            let salt = SaltString::encode_b64(salt_hex.as_bytes()).expect("16 bytes make a valid salt");
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("cannot hash the password: {e}")))?;
        sqlx::query("UPDATE people SET password_hash = $2 WHERE id = $1")
            .bind(person)
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether `password` is the person's. Nobody (an unknown name) and a person without a
    /// password never match, after the same argon2 work as a real check, so the time taken
    /// does not tell a stranger which names exist.
    pub async fn check_password(&self, person: Option<&str>, password: &str) -> Result<bool> {
        let stored: Option<String> = match person {
            Some(person) => sqlx::query_scalar::<_, Option<String>>("SELECT password_hash FROM people WHERE id = $1")
                .bind(person)
                .fetch_optional(&self.reader)
                .await?
                .flatten(),
            None => None,
        };
        let password = password.to_string();
        Ok(blocking(move || {
            let matches = |hash: &str| {
                PasswordHash::new(hash)
                    .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
                    .unwrap_or(false)
            };
            match stored {
                Some(hash) => matches(&hash),
                None => {
                    matches(&NOBODYS_HASH);
                    false
                }
            }
        })
        .await)
    }

    /// A fresh six-digit one-time code for the person, replacing any earlier one.
    pub async fn issue_sign_in_code(&self, person: &str, now: DateTime<Utc>, ttl: Duration) -> Result<String> {
        let mut raw = [0u8; 4];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Invalid(format!("no randomness: {e}")))?;
        let code = format!("{:06}", u32::from_le_bytes(raw) % 1_000_000);
        sqlx::query(
            "INSERT INTO sign_in_codes (person_id, code_sha256, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (person_id) DO UPDATE SET code_sha256 = excluded.code_sha256, expires_at = excluded.expires_at",
        )
        .bind(person)
        .bind(digest(&format!("{person}:{code}")))
        .bind(millis(now + ttl))
        .execute(&self.pool)
        .await?;
        Ok(code)
    }

    /// Use up the person's one-time code if `code` is it and it has not expired.
    pub async fn redeem_sign_in_code(&self, person: &str, code: &str, now: DateTime<Utc>) -> Result<bool> {
        let used =
            sqlx::query("DELETE FROM sign_in_codes WHERE person_id = $1 AND code_sha256 = $2 AND expires_at > $3")
                .bind(person)
                .bind(digest(&format!("{person}:{}", code.trim())))
                .bind(millis(now))
                .execute(&self.pool)
                .await?;
        Ok(used.rows_affected() == 1)
    }

    /// Take one of `subject`'s `cap` sign-in attempts in the `window` opened by its first;
    /// when they are used up, `Some(end of the window)` and nothing is taken. One upsert,
    /// so attempts made at the same moment are each counted before any is checked.
    pub async fn take_sign_in_attempt(
        &self,
        subject: &str,
        cap: i64,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let taken = sqlx::query(
            "INSERT INTO sign_in_attempts (subject, since, attempts) VALUES ($1, $2, 1) \
             ON CONFLICT (subject) DO UPDATE SET \
               attempts = CASE WHEN sign_in_attempts.since <= $3 THEN 1 ELSE sign_in_attempts.attempts + 1 END, \
               since = CASE WHEN sign_in_attempts.since <= $3 THEN excluded.since ELSE sign_in_attempts.since END \
             WHERE sign_in_attempts.since <= $3 OR sign_in_attempts.attempts < $4",
        )
        .bind(subject)
        .bind(millis(now))
        .bind(millis(now - window))
        .bind(cap)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if taken == 1 {
            return Ok(None);
        }
        let since: i64 = sqlx::query_scalar("SELECT since FROM sign_in_attempts WHERE subject = $1")
            .bind(subject)
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(from_millis(since) + window))
    }

    /// Attempts `subject` has used in its current window (for tests and the logs).
    pub async fn sign_in_attempts(&self, subject: &str) -> Result<i64> {
        let used: Option<i64> = sqlx::query_scalar("SELECT attempts FROM sign_in_attempts WHERE subject = $1")
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        Ok(used.unwrap_or(0))
    }

    /// A sign-in succeeded: forget its account's attempts, give its address back the one
    /// it took (colleagues behind one address sign in all day), and drop windows older than
    /// `before`.
    pub async fn signed_in(&self, account: &str, address: &str, before: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM sign_in_attempts WHERE subject = $1 OR since < $2")
            .bind(account)
            .bind(millis(before))
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE sign_in_attempts SET attempts = attempts - 1 WHERE subject = $1 AND attempts > 0")
            .bind(address)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Open a session; returns the cookie value (shown once) and the session.
    pub async fn create_session(&self, person: &str, now: DateTime<Utc>, ttl: Duration) -> Result<(String, Session)> {
        // The person's expired sessions go as a new one comes, so the table stays small.
        sqlx::query("DELETE FROM sessions WHERE person_id = $1 AND expires_at <= $2")
            .bind(person)
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        let cookie = random_hex(32)?;
        let session = Session {
            person: person.to_string(),
            csrf: random_hex(32)?,
            expires_at: now + ttl,
        };
        sqlx::query(
            "INSERT INTO sessions (id_sha256, person_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(digest(&cookie))
        .bind(person)
        .bind(&session.csrf)
        .bind(millis(now))
        .bind(millis(session.expires_at))
        .execute(&self.pool)
        .await?;
        Ok((cookie, session))
    }

    /// The live session a cookie stands for.
    pub async fn session(&self, cookie: &str, now: DateTime<Utc>) -> Result<Option<Session>> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT person_id, csrf, expires_at FROM sessions WHERE id_sha256 = $1 AND expires_at > $2")
                .bind(digest(cookie))
                .bind(millis(now))
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|(person, csrf, expires)| Session {
            person,
            csrf,
            expires_at: from_millis(expires),
        }))
    }

    pub async fn end_session(&self, cookie: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1")
            .bind(digest(cookie))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
