use crate::error::{Result, StoreError};
use crate::migrations::MIGRATIONS;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::time::Duration;

/// SQLite read connections beside the writer: two cores' worth of readers and then some,
/// since a reader mostly waits on the page cache, not the CPU.
const READERS: u32 = 4;

/// Every SQLite connection maps the database file (up to SQLite's compiled-in 2 GiB) and
/// keeps 64 MiB of pages of its own: a city's database is gigabytes, and without these each
/// page a query touches is a `read` system call and a copy from the kernel's cache.
const SQLITE_CACHE: &str = "PRAGMA mmap_size = 2147418112; PRAGMA cache_size = -65536;";

/// PostgreSQL connections per server: reads and writes share them (the database runs each
/// on its own backend process), so a slow read holds one of sixteen, not the only one.
const POSTGRES_CONNECTIONS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool plus what differs between the two databases.
#[derive(Clone, Debug)]
pub struct Store {
    /// Writes (and reads inside a write). On SQLite its one connection is the only writer.
    pub(crate) pool: AnyPool,
    /// Reads that are not part of a write: on SQLite a pool of its own beside the writer
    /// (WAL lets readers and the writer proceed at once, each reader on the last commit), so
    /// a long list never queues a step and a step never queues a page.
    pub(crate) reader: AnyPool,
    pub(crate) backend: Backend,
}

impl Store {
    /// Connect and migrate. `sqlite://path` (created if missing), `sqlite::memory:`, or
    /// `postgres://...`. With PostgreSQL, `schema` isolates the tables (tests use one schema
    /// each so they can run side by side in one database).
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Invalid(format!(
                "unsupported database URL \"{url}\": use sqlite://FILE, sqlite::memory: or postgres://USER@HOST/DB"
            )));
        };
        if let Some(s) = schema
            && !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Invalid(format!("bad schema name \"{s}\"")));
        }
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let (pool, reader) = match backend {
            Backend::Sqlite => {
                create_parent_folder(url)?;
                let url = if url.contains("memory") || url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                // SQLite has one writer; one connection keeps transactions strictly serial and
                // is the only way an in-memory database is shared at all.
                let writer = options
                    .clone()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;").await?;
                            conn.execute(SQLITE_CACHE).await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                let reader = if url.contains("memory") {
                    writer.clone()
                } else {
                    options
                        .max_connections(READERS)
                        .min_connections(0)
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;")
                                    .await?;
                                conn.execute(SQLITE_CACHE).await?;
                                Ok(())
                            })
                        })
                        .connect(&url)
                        .await?
                };
                (writer, reader)
            }
            Backend::Postgres => {
                let schema = schema.map(str::to_string);
                if let Some(s) = &schema {
                    let admin = AnyPoolOptions::new().max_connections(1).connect(url).await?;
                    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                        .execute(&admin)
                        .await?;
                    admin.close().await;
                }
                let pool = options
                    .max_connections(POSTGRES_CONNECTIONS)
                    .after_connect(move |conn, _| {
                        let schema = schema.clone();
                        Box::pin(async move {
                            if let Some(s) = schema {
                                conn.execute(format!("SET search_path TO {s}").as_str()).await?;
                            }
                            // Every statement is prepared once per connection; let PostgreSQL
                            // keep its plan instead of planning again at each execution with
                            // the values bound. A task list's union of scope branches took
                            // 0.6–1 ms to plan and 0.1 ms to run; the generic plan uses the
                            // same index per branch (the plan test checks it).
                            conn.execute("SET plan_cache_mode = force_generic_plan").await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let store = Store { pool, reader, backend };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            // Several servers may start at once against one database.
            sqlx::query("SELECT pg_advisory_lock(727274)")
                .execute(&mut *conn)
                .await?;
        }
        let result = async {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
            for (version, sql) in MIGRATIONS {
                let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *conn)
                    .await?;
                if done.is_some() {
                    continue;
                }
                let sql = match self.backend {
                    Backend::Sqlite => sql.to_string(),
                    Backend::Postgres => sql.replace(" BLOB ", " BYTEA ").replace("\n--postgres ", "\n"),
                };
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                tx.execute(sql.as_str()).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(*version)
                    .bind(Utc::now().timestamp_millis())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(727274)")
                .execute(&mut *conn)
                .await?;
        }
        Ok(result?)
    }
}

/// Published versions never change. Given the SHA-256 already stored for a version (if
/// any): `Ok(true)` to publish it now, `Ok(false)` when these exact bytes are already
/// there, an error when different content claims the same version.
pub(crate) fn first_publication(stored: Option<String>, sha256: &str, what: &str) -> Result<bool> {
    match stored {
        None => Ok(true),
        Some(s) if s == sha256 => Ok(false),
        Some(_) => Err(StoreError::Invalid(format!(
            "{what} is already published with different content; published versions are immutable, so raise the version"
        ))),
    }
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl Store {
    /// Bytes the PostgreSQL database takes on disk (benchmarks print it).
    pub async fn database_size(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&self.reader)
            .await?)
    }

    /// Gather PostgreSQL's planner statistics after a bulk load (autovacuum may lag or be
    /// off). SQLite gathers none: its plans here follow from the indexes alone, as the plan
    /// test checks, and statistics could only change them.
    pub async fn analyze(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("ANALYZE").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Remove a PostgreSQL schema made for a test or a benchmark run.
    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        if self.backend == Backend::Postgres && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// `sqlite://data/civicflow.db` on a new machine: make `data/` so the file can be created.
fn create_parent_folder(url: &str) -> Result<()> {
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Ok(());
    };
    let file = std::path::Path::new(path.split('?').next().unwrap_or(path));
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Invalid(format!("cannot create the data folder {}: {e}", dir.display()))),
        _ => Ok(()),
    }
}
