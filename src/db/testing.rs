//! A throwaway PostgreSQL database per test: created with a unique name on the server that
//! `SUSTAINBOT_TEST_DATABASE_URL` names (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped when the handle is dropped (even when the test fails).
//!
//! Without a reachable server a test prints `SKIPPED: PostgreSQL not reachable` and returns, unless
//! `CI` is set or `SUSTAINBOT_REQUIRE_POSTGRES=1`: then it fails. The library's unit tests and the
//! integration tests (`tests/it/helpers`, by path) share this file, so it uses sqlx and std only.

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test.
pub struct TestDb {
    name: String,
    url: String,
    admin: String,
}

fn admin_url() -> String {
    std::env::var("SUSTAINBOT_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
}

fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("SUSTAINBOT_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// `url` with its database name replaced by `name` (the query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".to_owned()),
    }
}

impl TestDb {
    /// A new, empty database; `None` (after saying so) when PostgreSQL is not reachable and not
    /// required.
    pub async fn create() -> Option<TestDb> {
        let admin = admin_url();
        let mut conn = match connect(&admin).await {
            Ok(conn) => conn,
            Err(e) if required() => {
                panic!("PostgreSQL is required (CI or SUSTAINBOT_REQUIRE_POSTGRES=1) but not reachable at {admin}: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: PostgreSQL not reachable at {admin} ({e}); set SUSTAINBOT_TEST_DATABASE_URL");
                return None;
            }
        };
        let name = format!("sustainbot_test_{}", uuid::Uuid::new_v4().simple());
        if let Err(e) = conn
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
        {
            panic!("cannot create the test database {name}: {e}");
        }
        let _ = conn.close().await;
        Some(TestDb {
            url: with_database(&admin, &name),
            name,
            admin,
        })
    }

    /// The URL of the test's database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    /// Drops the database (closing whatever is still connected to it), on a thread of its own:
    /// this may run inside a test's runtime, which must not be blocked on.
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = connect(&admin).await?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_options_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "t2"),
            "postgresql://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t3"),
            "postgres://h:5432/t3"
        );
    }
}
