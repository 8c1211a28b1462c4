//! Time-series servers of the test's own: Debian's InfluxDB 1.6 and
//! VictoriaMetrics, each on free loopback ports with its data in a temp
//! dir (never a system service), restartable on the same port and data.

use crate::PATIENCE;
use serde_json::Value;
use sobre_tests::{free_port, wait_for};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) const DB: &str = "sobre";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Influx,
    Victoria,
}

/// A time-series server of our own on a free loopback port.
pub(crate) struct Server {
    kind: Kind,
    pub(crate) port: u16,
    dir: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
}

fn exe(candidates: &[&str], package: &str) -> String {
    candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| {
            panic!("{package} is not installed: apt-get install {package} (tests/run does it)")
        })
}

impl Server {
    pub(crate) async fn influxdb(dir: &Path) -> Server {
        let (port, rpc) = (free_port(), free_port());
        std::fs::create_dir_all(dir).expect("influx dir");
        let d = dir.display();
        std::fs::write(
            dir.join("influxdb.conf"),
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n  max-row-limit = 0\n\
                 [monitor]\n  store-enabled = false\n\
                 [continuous_queries]\n  enabled = false\n\
                 [logging]\n  level = \"warn\"\n"
            ),
        )
        .expect("influxdb.conf");
        let mut s = Server {
            kind: Kind::Influx,
            port,
            dir: dir.to_owned(),
            child: None,
            http: sobre_tests::http_client(),
        };
        s.restart().await;
        let r = s
            .http
            .post(s.url(&format!("/query?q=CREATE+DATABASE+{DB}")))
            .send()
            .await
            .expect("CREATE DATABASE");
        assert!(r.status().is_success(), "CREATE DATABASE: {}", r.status());
        s
    }

    pub(crate) async fn victoria(dir: &Path) -> Server {
        std::fs::create_dir_all(dir).expect("vm dir");
        let mut s = Server {
            kind: Kind::Victoria,
            port: free_port(),
            dir: dir.to_owned(),
            child: None,
            http: sobre_tests::http_client(),
        };
        s.restart().await;
        s
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// (Re)starts the process on the same port and data, and waits for
    /// its health endpoint.
    pub(crate) async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log");
        let mut cmd = match self.kind {
            Kind::Influx => {
                let mut c =
                    Command::new(exe(&["/usr/bin/influxd", "/usr/sbin/influxd"], "influxdb"));
                c.arg("-config").arg(self.dir.join("influxdb.conf"));
                c
            }
            Kind::Victoria => {
                let mut c = Command::new(exe(
                    &["/usr/bin/victoria-metrics", "/usr/sbin/victoria-metrics"],
                    "victoria-metrics",
                ));
                c.arg(format!(
                    "-storageDataPath={}",
                    self.dir.join("data").display()
                ))
                .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
                .arg("-retentionPeriod=100y")
                .arg("-loggerLevel=WARN");
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
        self.child = Some(cmd.spawn().expect("start the server"));
        let (url, client) = (
            self.url(match self.kind {
                Kind::Influx => "/ping",
                Kind::Victoria => "/health",
            }),
            self.http.clone(),
        );
        wait_for("the time-series server's health endpoint", PATIENCE, || {
            let (url, client) = (url.clone(), client.clone());
            async move {
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }

    /// Orderly stop (SIGTERM), waiting for the exit.
    pub(crate) async fn stop(&mut self) {
        let mut c = self.child.take().expect("running");
        sobre_tests::sigterm(c.id());
        sobre_tests::procs::wait_exit(&mut c, PATIENCE).await;
    }

    /// InfluxQL; the result's first statement.
    pub(crate) async fn query(&self, q: &str) -> Value {
        let url = reqwest::Url::parse_with_params(
            &self.url("/query"),
            &[("db", DB), ("epoch", "ms"), ("q", q)],
        )
        .expect("query url");
        let v: Value = self
            .http
            .get(url)
            .send()
            .await
            .expect("GET /query")
            .json()
            .await
            .expect("query JSON");
        let r = v["results"][0].clone();
        assert!(r.get("error").is_none(), "InfluxQL error for {q}:\n{v}");
        r
    }

    /// `SELECT "seq" FROM "usage"` for one agent: every seq the server has.
    pub(crate) async fn seqs(&self, agent: &str) -> Vec<u64> {
        let r = self
            .query(&format!(
                "SELECT \"seq\" FROM \"usage\" WHERE \"agent\" = '{agent}'"
            ))
            .await;
        let mut out: Vec<u64> = r["series"][0]["values"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|row| row[1].as_u64()).collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
