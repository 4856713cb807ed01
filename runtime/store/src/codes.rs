//! Check-in codes (proof of presence): an organiser's screen shows a QR code the server
//! signed for one instance and state, valid for a few minutes; a volunteer's phone scans it
//! and sends it with the check-in form. HMAC-SHA256 under a key kept in the database, so
//! every server shares it and codes survive restarts.

use crate::db::{Store, millis};
use crate::error::{Result, StoreError};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex characters of the MAC kept in a code (128 bits): short enough for a small QR code.
const MAC_HEX: usize = 32;

#[derive(Clone)]
pub struct CodeKey(Vec<u8>);

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    Missing,
    Invalid,
    Expired,
}

impl CodeError {
    /// The message id (`admin-ui/locales`) saying what went wrong: the field error of a
    /// form is an id when the person who reads it needs their own language.
    pub fn message(self) -> &'static str {
        match self {
            CodeError::Missing => "err-code-missing",
            CodeError::Invalid => "err-code-invalid",
            CodeError::Expired => "err-code-expired",
        }
    }
}

impl CodeKey {
    /// The key stored in `settings`, created on first use.
    pub(crate) async fn load(store: &Store) -> Result<Self> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Invalid(format!("no randomness for the code key: {e}")))?;
        sqlx::query("INSERT INTO settings (name, value) VALUES ('code_key', $1) ON CONFLICT DO NOTHING")
            .bind(hex::encode(fresh))
            .execute(&store.pool)
            .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE name = 'code_key'")
            .fetch_one(&store.pool)
            .await?;
        let key = hex::decode(stored).map_err(|e| StoreError::Invalid(format!("stored code key: {e}")))?;
        Ok(Self(key))
    }

    fn mac(&self, instance: &str, state: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{instance}\n{state}\n{expires}").as_bytes());
        mac
    }

    /// `"{expires in ms}.{mac}"`.
    pub fn sign(&self, instance: &str, state: &str, expires: DateTime<Utc>) -> String {
        let expires = millis(expires);
        let tag = hex::encode(self.mac(instance, state, expires).finalize().into_bytes());
        format!("{expires}.{}", &tag[..MAC_HEX])
    }

    pub fn verify(&self, code: &str, instance: &str, state: &str, now: DateTime<Utc>) -> Result<(), CodeError> {
        let (expires, tag) = code.trim().split_once('.').ok_or(CodeError::Invalid)?;
        let expires: i64 = expires.parse().map_err(|_| CodeError::Invalid)?;
        let tag = hex::decode(tag).map_err(|_| CodeError::Invalid)?;
        if tag.len() * 2 != MAC_HEX {
            return Err(CodeError::Invalid);
        }
        // Checked before the expiry, so an altered expiry reads as invalid, not expired.
        self.mac(instance, state, expires)
            .verify_truncated_left(&tag)
            .map_err(|_| CodeError::Invalid)?;
        if millis(now) > expires {
            return Err(CodeError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_for_its_instance_and_state_until_it_expires() {
        let key = CodeKey(vec![7; 32]);
        let now = DateTime::parse_from_rfc3339("2026-06-01T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let code = key.sign("i1", "check_in", now + chrono::Duration::minutes(2));
        assert_eq!(key.verify(&code, "i1", "check_in", now), Ok(()));
        assert_eq!(key.verify(&code, "i2", "check_in", now), Err(CodeError::Invalid));
        assert_eq!(key.verify(&code, "i1", "other", now), Err(CodeError::Invalid));
        let later = now + chrono::Duration::minutes(3);
        assert_eq!(key.verify(&code, "i1", "check_in", later), Err(CodeError::Expired));
        let (_, tag) = code.split_once('.').unwrap();
        let stretched = format!("{}.{tag}", millis(later) + 60_000);
        assert_eq!(key.verify(&stretched, "i1", "check_in", later), Err(CodeError::Invalid));
        assert_eq!(key.verify("garbage", "i1", "check_in", now), Err(CodeError::Invalid));
        assert_eq!(
            CodeKey(vec![8; 32]).verify(&code, "i1", "check_in", now),
            Err(CodeError::Invalid)
        );
    }
}
