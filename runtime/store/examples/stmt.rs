use std::time::Instant;
#[tokio::main]
async fn main() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await.unwrap();
    sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT)").execute(&pool).await.unwrap();
    let n = 20000;
    let t = Instant::now();
    for _ in 0..n { let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await.unwrap(); }
    println!("any pool select: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let mut conn = pool.acquire().await.unwrap();
    let t = Instant::now();
    for _ in 0..n { let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await.unwrap(); }
    println!("any conn select: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let t = Instant::now();
    for i in 0..n { sqlx::query("INSERT INTO t VALUES ($1, $2)").bind(i.to_string()).bind("x").execute(&mut *conn).await.unwrap(); }
    println!("any conn insert autocommit(sync=FULL default): {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let t = Instant::now();
    for i in n..2*n { sqlx::query("INSERT INTO t VALUES ($1, $2)").bind(i.to_string()).bind("x").execute(&mut *tx).await.unwrap(); }
    println!("any insert in tx: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    tx.commit().await.unwrap();
    drop(conn);
    let spool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    let t = Instant::now();
    for _ in 0..n { let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&spool).await.unwrap(); }
    println!("native sqlite pool select: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
