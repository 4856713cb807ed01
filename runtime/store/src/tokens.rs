//! API bearer tokens for integrations and admin tools. Only a token's SHA-256 is stored,
//! so a leaked database does not leak usable tokens.

use crate::accounts::digest;
use crate::db::{Store, millis};
use crate::error::{Result, StoreError};
use chrono::Utc;

impl Store {
    /// Issue a token for a person; `secret` is 32 random bytes from the caller. Returns the
    /// token, shown once.
    pub async fn create_token(&self, person_id: &str, label: &str, secret: [u8; 32]) -> Result<String> {
        self.actor(person_id).await?;
        let token = format!("cf_{}", hex::encode(secret));
        sqlx::query("INSERT INTO api_tokens (token_sha256, person_id, label, created_at) VALUES ($1, $2, $3, $4)")
            .bind(digest(&token))
            .bind(person_id)
            .bind(label)
            .bind(millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(token)
    }

    /// The person a live token belongs to.
    pub async fn person_for_token(&self, token: &str) -> Result<String> {
        sqlx::query_scalar("SELECT person_id FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL")
            .bind(digest(token))
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::NotFound("token".into()))
    }

    pub async fn revoke_token(&self, token: &str) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE token_sha256 = $1")
            .bind(digest(token))
            .bind(millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
