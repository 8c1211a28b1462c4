//! The web console end to end: a real collector fed by two real agents
//! (one scanning a tree with a duplicate); each page renders their data,
//! in French by default and in English when asked, and passes the browser
//! check (phone, desktop, no JavaScript, axe, under 100 KB, nothing
//! third-party; screenshots kept in `target/test-artefacts/console/`);
//! the forms acknowledge and snooze a finding, create and start a
//! campaign, and a form posted from another site is refused.

use crate::PATIENCE;
use crate::browser::MAX_BYTES;
use sobre_tests::browser::{PageCheck, check_page_with};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};
use std::path::PathBuf;

/// Browser check with screenshots kept as artefacts, named after the page.
async fn check(url: String, name: &str) -> PageCheck {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artefacts/console")
        .join(name);
    tokio::task::spawn_blocking(move || check_page_with(&url, MAX_BYTES, Some(&dir)))
        .await
        .expect("check_page")
}

struct Site {
    base: String,
    client: reqwest::Client,
    /// The admin token, sent as the sign-in cookie with every form.
    token: String,
}

impl Site {
    async fn page(&self, path: &str, lang: Option<&str>) -> String {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(l) = lang {
            r = r.header("accept-language", l);
        }
        let r = r.send().await.expect("GET");
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_owned();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        r.text().await.expect("body")
    }

    /// A form POST as a browser on `origin` would send it; status and
    /// Location or body.
    async fn post(&self, path: &str, origin: &str, body: &str) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", format!("sobre_token={}", self.token))
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        let loc = r
            .headers()
            .get("location")
            .map(|l| l.to_str().expect("location").to_owned());
        (status, loc.unwrap_or(r.text().await.unwrap_or_default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_show_the_fleet_and_their_forms_act_on_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("home");
    std::fs::create_dir_all(tree.join("Documents")).expect("mkdir");
    let content = vec![7u8; 300_000];
    std::fs::write(tree.join("Documents/rapport.pdf"), &content).expect("w");
    std::fs::write(tree.join("Documents/Copie de rapport.pdf"), &content).expect("w");
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            // A 300 kB duplicate is enough for a finding; nudges leave at once.
            extra_toml: "[detect]\nbloat_min_bytes = 1000\n[nudge]\nquiet_start_hour = 0\n\
                         quiet_end_hour = 0\ndispatch_interval_s = 1\n"
                .into(),
            ..Default::default()
        },
    )
    .await;
    let mut o = AgentOpts::new("ws-a", Transport::Mqtt);
    o.interval_ms = 1000;
    o.extra_toml = "group = \"dsi\"".into();
    o.storage_toml = Some(format!(
        "enabled = true\nfirst_delay_ms = 0\nbackground = false\nroots = [\"{}\"]",
        tree.display()
    ));
    let mut a = Agent::start(&dir.path().join("a"), &o, c.mqtt, c.grpc);
    let mut o = AgentOpts::new("srv-b", Transport::Grpc);
    o.interval_ms = 1000;
    o.extra_toml = "group = \"rh\"".into();
    let mut b = Agent::start(&dir.path().join("b"), &o, c.mqtt, c.grpc);

    // Data: inventories, a few samples each, the scan, then a detection
    // pass that finds the duplicate.
    for id in ["ws-a", "srv-b"] {
        c.wait_samples(id, 3, PATIENCE).await;
    }
    wait_for("ws-a's storage summary", PATIENCE, || async {
        (c.get_status("/api/v1/agents/ws-a/storage").await.0 == 200).then_some(())
    })
    .await;
    let hostname = c.get("/api/v1/agents/ws-a").await["hostname"]
        .as_str()
        .expect("hostname")
        .to_owned();
    let base = format!("http://127.0.0.1:{}", c.http);
    assert_eq!(c.post_admin("/api/v1/detect", None).await.status(), 200);
    let findings = c.get("/api/v1/findings?kind=bloat").await;
    let finding = findings[0]["id"]
        .as_str()
        .expect("a bloat finding")
        .to_owned();
    assert_eq!(findings[0]["agent_id"], "ws-a", "{findings}");
    let fleet = c.get("/api/v1/storage").await;
    assert_eq!(fleet["reclaimable_bytes"], 300_000, "{fleet}");
    let nudge = wait_for("the bloat nudge delivered", PATIENCE, || async {
        let n = c.get("/api/v1/agents/ws-a/nudges").await;
        (!n[0]["delivered_ms"].is_null()).then(|| n[0]["title"].as_str().map(String::from))?
    })
    .await;

    let site = Site {
        base: base.clone(),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        token: c.admin_token(),
    };

    // Forms need the admin token: without it, the sign-in page; with a
    // wrong one, refused; with the right one, an HttpOnly, SameSite=Strict
    // cookie that the forms then carry.
    let anonymous = site
        .client
        .post(format!("{base}/campaigns/x/start"))
        .header("origin", &base)
        .send()
        .await
        .expect("POST");
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.headers()["location"], "/login?back=%2F");
    let login = site.page("/login", None).await;
    assert!(
        login.contains("type=\"password\"") && login.contains("admin.token"),
        "{login}"
    );
    let (st, body) = site
        .post("/login", &base, "token=nope&back=%2Ffindings")
        .await;
    assert_eq!(st, 401, "{body}");
    let signed = site
        .client
        .post(format!("{base}/login"))
        .header("origin", &base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}&back=%2Ffindings", site.token))
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status(), 303);
    assert_eq!(signed.headers()["location"], "/findings");
    let cookie = signed.headers()["set-cookie"].to_str().expect("cookie");
    assert!(
        cookie.starts_with(&format!("sobre_token={}", site.token))
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    // Fleet overview: French by default, both machines, the storage.
    let home = site.page("/", None).await;
    assert!(
        home.starts_with("<!doctype html><html lang=\"fr\">"),
        "{home}"
    );
    for s in [
        "<strong>2 / 2</strong>machines en ligne",
        "href=\"/machines/ws-a\"",
        "href=\"/machines/srv-b\"",
        &hostname,
        "<strong>300 ko</strong>de stockage récupérable",
        "Stockage à libérer",
        "href=\"/api\"",
        "CO2e sur 7 jours",
    ] {
        assert!(home.contains(s), "{s:?} not in {home}");
    }
    assert!(!home.contains("<script"), "no script");
    // English by the browser's language, and by the switch.
    let en = site.page("/", Some("en-GB,en;q=0.9,fr;q=0.5")).await;
    assert!(
        en.contains("<strong>300 kB</strong>of storage to reclaim"),
        "{en}"
    );
    assert!(en.contains("href=\"/?lang=fr\""), "the switch: {en}");
    let en = site.page("/?lang=en", Some("fr")).await;
    assert!(
        en.contains("machines online") && en.contains("href=\"/findings?lang=en\""),
        "{en}"
    );

    // A machine: inventory, charts of its samples, storage, finding, nudge.
    let m = site.page("/machines/ws-a", None).await;
    for s in [
        format!("<h1>{hostname}</h1>"),
        "<dd>dsi</dd>".into(),
        "Processeur, dernière heure".into(),
        "Puissance, dernière heure".into(),
        "<svg viewBox".into(),
        "<th scope=\"row\">Doublons</th><td class=\"n\">1</td><td class=\"n\">300 ko</td>".into(),
        "Stockage à libérer".into(),
        sobre_html(&nudge),
    ] {
        assert!(m.contains(&s), "{s:?} not in {m}");
    }
    assert_eq!(c.get_status("/machines/nobody").await.0, 404);

    // Findings: the filter, the evidence, and the forms.
    let f = site.page("/findings?kind=bloat&state=open", None).await;
    assert!(f.contains("<option value=\"bloat\" selected>"), "{f}");
    assert!(
        f.contains("<dt>reclaimable bytes</dt><dd>300 ko</dd>"),
        "{f}"
    );
    let none = site.page("/findings?kind=idle_server", None).await;
    assert!(
        none.contains("0 constat(s)") && !none.contains("class=\"card\""),
        "{none}"
    );
    let ack = format!("/findings/{finding}/acknowledge");
    let (st, evil) = site
        .post(&ack, "http://evil.example", "back=%2Ffindings")
        .await;
    assert_eq!(st, 403, "{evil}");
    assert!(
        evil.contains("Refusé") && evil.contains("evil.example"),
        "{evil}"
    );
    assert_eq!(
        c.get("/api/v1/findings?kind=bloat").await[0]["state"],
        "open"
    );
    let (st, loc) = site
        .post(&ack, &base, "back=%2Ffindings%3Fkind%3Dbloat")
        .await;
    assert_eq!(
        (st, loc.as_str()),
        (303, "/findings?kind=bloat&done=acknowledged")
    );
    assert_eq!(
        c.get("/api/v1/findings?kind=bloat").await[0]["state"],
        "acknowledged"
    );
    let done = site.page(&loc, None).await;
    assert!(
        done.contains("Constat pris en compte.") && done.contains("pris en compte"),
        "{done}"
    );
    let (st, loc) = site
        .post(
            &format!("/findings/{finding}/snooze?lang=en"),
            &base,
            "days=30&back=%2Fmachines%2Fws-a",
        )
        .await;
    assert_eq!(
        (st, loc.as_str()),
        (303, "/machines/ws-a?done=snoozed&lang=en")
    );
    let v = &c.get("/api/v1/findings?kind=bloat").await[0];
    assert_eq!(v["state"], "snoozed", "{v}");
    let days =
        (v["snoozed_until_ms"].as_i64().expect("until") - sobre_tests::now_ms()) / 86_400_000;
    assert!((29..=30).contains(&days), "{v}");

    // Campaigns: created and started by forms, refused from elsewhere.
    let (st, loc) = site
        .post(
            "/campaigns",
            &base,
            "name=Clean+Up+Day+%C3%A9t%C3%A9&id=cud&starts=2030-03-20T09%3A00&ends=2030-03-21T18%3A00\
             &groups=dsi&sites=&hosts=&rescan_minutes=60&factor=ccf-ssd",
        )
        .await;
    assert_eq!((st, loc.as_str()), (303, "/campaigns?done=created#c-cud"));
    let (st, body) = site
        .post("/campaigns", &base, "name=x&id=x&starts=soon&ends=later")
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("is not a date"), "{body}");
    let list = site.page("/campaigns", None).await;
    assert!(
        list.contains("Clean Up Day été") && list.contains("à venir"),
        "{list}"
    );
    assert!(
        list.contains("href=\"/api/v1/campaigns/cud/report.html?lang=fr\""),
        "{list}"
    );
    let r = site
        .client
        .post(format!("{base}/campaigns/cud/start"))
        .header("cookie", format!("sobre_token={}", site.token))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    assert_eq!(c.get("/api/v1/campaigns/cud").await["state"], "planned");
    let (st, loc) = site.post("/campaigns/cud/start", &base, "").await;
    assert_eq!((st, loc.as_str()), (303, "/campaigns?done=started#c-cud"));
    assert_eq!(c.get("/api/v1/campaigns/cud").await["state"], "running");
    let (st, body) = site.post("/campaigns/cud/start", &base, "").await;
    assert_eq!(st, 409, "{body}");
    let home = site.page("/", None).await;
    assert!(home.contains("Clean Up Day été</a> — en cours"), "{home}");
    let list = site.page("/campaigns", None).await;
    assert!(
        list.contains("Progression") && list.contains("Terminer maintenant"),
        "{list}"
    );

    // Every page in a real browser.
    for (name, path) in [
        ("overview", "/"),
        ("overview-en", "/?lang=en"),
        ("machine", "/machines/ws-a"),
        ("findings", "/findings"),
        ("campaigns", "/campaigns"),
    ] {
        let check = check(format!("{base}{path}"), name).await;
        let problems = check.problems();
        assert!(problems.is_empty(), "{path}: {problems:#?}");
        for v in &check.viewports {
            assert_eq!(v.status, Some(200), "{path}: {v:#?}");
            let shot = v.screenshot.as_ref().expect("screenshot");
            assert!(
                std::fs::metadata(shot)
                    .map(|m| m.len() > 0)
                    .unwrap_or(false),
                "{shot:?}"
            );
            eprintln!(
                "console page {path}: {} {}x{} {} bytes",
                v.name, v.width, v.height, v.bytes
            );
        }
        assert!(check.viewport("phone-nojs").is_some_and(|v| !v.javascript));
    }
    assert!(a.stop().await.success());
    assert!(b.stop().await.success());
}

/// The nudge's title as the page writes it (HTML-escaped).
fn sobre_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
