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

    /// Whether `password` is the person's. A person without a password never matches.
    pub async fn check_password(&self, person: &str, password: &str) -> Result<bool> {
        let stored: Option<Option<String>> = sqlx::query_scalar("SELECT password_hash FROM people WHERE id = $1")
            .bind(person)
            .fetch_optional(&self.reader)
            .await?;
        let Some(stored) = stored.flatten() else {
            return Ok(false);
        };
        let password = password.to_string();
        Ok(blocking(move || {
            PasswordHash::new(&stored)
                .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false)
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

    pub async fn record_sign_in_failure(&self, subjects: &[&str], now: DateTime<Utc>) -> Result<()> {
        for subject in subjects {
            sqlx::query("INSERT INTO sign_in_failures (subject, at) VALUES ($1, $2)")
                .bind(*subject)
                .bind(millis(now))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Failures for `subject` since `since`, and when the oldest of them was.
    pub async fn sign_in_failures(&self, subject: &str, since: DateTime<Utc>) -> Result<(i64, Option<DateTime<Utc>>)> {
        let (count, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(at) FROM sign_in_failures WHERE subject = $1 AND at > $2")
                .bind(subject)
                .bind(millis(since))
                .fetch_one(&self.reader)
                .await?;
        Ok((count, oldest.map(from_millis)))
    }

    /// Forget a subject's failures (after it signs in) and everyone's older than `before`.
    pub async fn clear_sign_in_failures(&self, subject: &str, before: DateTime<Utc>) -> Result<()> {
        sqlx::query("DELETE FROM sign_in_failures WHERE subject = $1 OR at < $2")
            .bind(subject)
            .bind(millis(before))
            .execute(&self.pool)
            .await?;
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
