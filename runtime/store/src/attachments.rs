//! Uploaded files, stored by the SHA-256 of their bytes. Forms refer to them as
//! `sha256:<hex>`; the same file uploaded twice is kept once.

use crate::db::{Store, millis};
use crate::error::Result;
use crate::scope::Scope;
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
        sqlx::query("INSERT INTO attachment_uploaders (sha256, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&sha)
            .bind(by)
            .execute(&self.pool)
            .await?;
        Ok(format!("sha256:{sha}"))
    }

    /// The file a `sha256:<hex>` reference (or the bare hex) names, if the scope's person
    /// may read it: they uploaded it, or it is referred to by `instance`, which they may read.
    /// Knowing a hash is not enough (a hash travels in links and logs).
    pub async fn attachment_for(
        &self,
        reference: &str,
        scope: &Scope,
        instance: Option<&str>,
    ) -> Result<Option<Attachment>> {
        let sha = reference.strip_prefix("sha256:").unwrap_or(reference);
        let row: Option<(String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT a.content_type, a.content, \
             (SELECT COUNT(*) FROM attachment_uploaders u WHERE u.sha256 = a.sha256 AND u.person_id = $2) \
             FROM attachments a WHERE a.sha256 = $1",
        )
        .bind(sha)
        .bind(scope.person())
        .fetch_optional(&self.reader)
        .await?;
        let Some((content_type, content, mine)) = row else {
            return Ok(None);
        };
        let allowed = mine > 0
            || match instance {
                Some(id) => self.refers_to(id, sha).await? && self.may_read(scope, id).await?,
                None => false,
            };
        Ok(allowed.then_some(Attachment { content_type, content }))
    }

    /// Whether the instance's data holds the reference `sha256:<sha>` (a form's file field).
    async fn refers_to(&self, instance: &str, sha: &str) -> Result<bool> {
        let data: Option<String> = sqlx::query_scalar("SELECT data FROM instances WHERE id = $1")
            .bind(instance)
            .fetch_optional(&self.reader)
            .await?;
        Ok(data.is_some_and(|d| d.contains(&format!("\"sha256:{sha}\""))))
    }
}
