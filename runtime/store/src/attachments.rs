//! Uploaded files, stored by the SHA-256 of their bytes. Forms refer to them as
//! `sha256:<hex>`; the same file uploaded twice is kept once.

use crate::db::{Store, millis};
use crate::error::Result;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub struct Attachment {
    pub content_type: String,
    pub content: Vec<u8>,
}

impl Store {
    /// Keep `content` and return its reference, `sha256:<hex>`. The caller has checked its
    /// size and type.
    pub async fn put_attachment(
        &self,
        content: &[u8],
        content_type: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let sha = hex::encode(Sha256::digest(content));
        sqlx::query(
            "INSERT INTO attachments (sha256, content_type, size, content, uploaded_by, at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&sha)
        .bind(content_type)
        .bind(content.len() as i64)
        .bind(content)
        .bind(by)
        .bind(millis(now))
        .execute(&self.pool)
        .await?;
        Ok(format!("sha256:{sha}"))
    }

    /// The file a `sha256:<hex>` reference (or the bare hex) names.
    pub async fn attachment(&self, reference: &str) -> Result<Option<Attachment>> {
        let sha = reference.strip_prefix("sha256:").unwrap_or(reference);
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT content_type, content FROM attachments WHERE sha256 = $1")
                .bind(sha)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(content_type, content)| Attachment { content_type, content }))
    }
}
