//! The store conformance suite (`sobre_collector::store::conformance`) on
//! a real PostgreSQL: the same checks the collector's unit tests run on
//! SQLite, each on a database of its own.

use sobre_collector::store::{Location, conformance};
use sobre_tests::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = Postgres::start(&dir.path().join("pg")).await;
    let mut urls = Vec::new();
    for i in 0..conformance::CHECKS.len() {
        let name = format!("check{i}");
        pg.create_database(&name).await;
        urls.push(pg.url_for(&name));
    }
    let data_dir = dir.path().join("data");
    // The store is blocking: run the suite off the async workers.
    let ran = tokio::task::spawn_blocking(move || {
        let mut next = urls.into_iter();
        conformance::run(&mut || {
            let url = next.next().expect("one database per check");
            let location = Location {
                data_dir: data_dir.clone(),
                sync_full: true,
                postgres_url: Some(url),
            };
            Box::new(move || location.open().expect("open the PostgreSQL store"))
        })
    })
    .await
    .expect("join");
    let ran = ran.unwrap_or_else(|f| panic!("{f}\n{}", pg.log()));
    assert_eq!(ran.len(), conformance::CHECKS.len());
}
