//! TLS to PostgreSQL: with `sslmode=require` every connection (pool, writer, follower) is
//! encrypted and the server's certificate must chain to the given CA; an untrusted server is
//! refused, never used unauthenticated.

use std::path::Path;

use forlop_store::conformance::sample_event;
use forlop_store::pg_cluster::TestCluster;
use forlop_store::{EventStore, ExpectedVersion, PgOptions, PgStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sslmode_require_every_connection_is_encrypted_and_an_untrusted_server_is_refused() {
    let (pg, ca) = TestCluster::start_with_tls(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("PostgreSQL with TLS");
    let url = format!("{}?sslmode=require", pg.url("postgres"));

    let mut options = PgOptions::new(&url);
    options.ca_file = Some(ca.clone());
    let store = PgStore::open(options).await.expect("open over TLS with the test CA");
    let r = store.append("a", ExpectedVersion::Any, vec![sample_event(0)]).await.unwrap();
    assert_eq!(r.events[0].position, 0);
    store.verify().await.unwrap();

    // Seen from the server: forlop's connections are all TLS.
    let (admin, connection) = tokio_postgres::connect(&pg.url("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    // The follower connects on its own task: wait until the server sees it (or give up).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (encrypted, all) = loop {
        let row = admin
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'forlop'",
                &[],
            )
            .await
            .unwrap();
        let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
        if all >= 2 || std::time::Instant::now() > deadline {
            break (encrypted, all);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(all >= 2, "the pool and the follower are connected ({all})");
    assert_eq!(encrypted, all, "every forlop connection is encrypted");

    // The same server, but its CA not trusted (the system roots only): refused.
    let err = PgStore::open(PgOptions::new(&url)).await.expect_err("an untrusted certificate is refused");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    // A CA file that holds no certificate is a clear error, not an empty trust store.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let mut options = PgOptions::new(&url);
    options.ca_file = Some(empty.path().to_owned());
    let err = PgStore::open(options).await.expect_err("no certificate in the CA file");
    assert!(err.to_string().contains("no certificate"), "{err}");
    // `sslmode=disable` is the explicit opt-out (a local socket, say).
    let plain = PgStore::open(PgOptions::new(format!("{}?sslmode=disable", pg.url("postgres")))).await.unwrap();
    assert_eq!(plain.committed(), 1);
}
