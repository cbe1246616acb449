//! The dashboard page in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver, the `fantoccini` crate) against `forlop serve --demo`. Every test fails on a
//! console error or a request to another host, and writes a screenshot of its view to
//! `target/tmp/screenshots/` (docs/images/ holds copies for the documentation).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;

/// Finds chromedriver, installing Debian's `chromium` and `chromium-driver` first when they are
/// missing and we may (as `.ci/run` does).
pub(crate) fn chromedriver() -> PathBuf {
    let found =
        || ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].iter().map(PathBuf::from).find(|p| p.exists());
    if let Some(p) = found() {
        return p;
    }
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = found() {
        return p;
    }
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "chromium", "chromium-driver"][..]] {
        let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "apt-get {args:?} failed: the dashboard tests need chromium and chromium-driver"
        );
    }
    found().expect("chromium-driver installed, yet no chromedriver")
}

/// A headless Chromium session, its chromedriver killed when dropped.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    origin: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// chromedriver's log endpoint (not in W3C WebDriver, so fantoccini has no call for it).
#[derive(Debug)]
pub(crate) struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "type": "browser" }).to_string()))
    }
}

impl Browser {
    async fn start(server: &Server) -> Browser {
        Browser::start_at(&server.url).await
    }

    /// A session whose pages are expected on `origin` (`assert_clean` holds them to it).
    pub(crate) async fn start_at(origin: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // Bounded wait for chromedriver to listen.
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--window-size=1280,800", "--lang=nb-NO"] }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        Browser { client, driver, origin: origin.to_owned() }
    }

    async fn open(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.origin)).await.expect("navigate");
        self.rendered(path.split('?').next().unwrap()).await;
    }

    /// Goes to `path` inside the page, as its links do: the token stays in the page's memory
    /// (a reload forgets it, by design).
    async fn visit(&self, path: &str) {
        self.client
            .execute(
                "history.pushState(null, '', arguments[0]); dispatchEvent(new PopStateEvent('popstate'))",
                vec![json!(path)],
            )
            .await
            .expect("navigate in the page");
        self.rendered(path.split('?').next().unwrap()).await;
    }

    /// Waits until the page has rendered `path` (the script marks it on `<body>`).
    async fn rendered(&self, path: &str) {
        let selector = format!("body[data-rendered='{path}']");
        self.client
            .wait()
            .at_most(TIMEOUT)
            .for_element(Locator::Css(&selector))
            .await
            .unwrap_or_else(|e| panic!("{path} rendered: {e}"));
    }

    async fn text(&self, css: &str) -> String {
        let e = self
            .client
            .wait()
            .at_most(TIMEOUT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        e.text().await.expect("text")
    }

    /// The rows of a table (`data-testid`), each as its cells' text.
    async fn rows(&self, testid: &str) -> Vec<Vec<String>> {
        let script = "return [...document.querySelectorAll(`[data-testid='${arguments[0]}'] tbody tr`)].map(r => [...r.cells].map(c => c.textContent.trim()))";
        let v = self.client.execute(script, vec![json!(testid)]).await.expect("read table");
        serde_json::from_value(v).expect("rows")
    }

    /// The value in the row of `testid` whose first cell is `label`.
    async fn cell(&self, testid: &str, label: &str, column: usize) -> String {
        let rows = self.rows(testid).await;
        let row =
            rows.iter().find(|r| r[0] == label).unwrap_or_else(|| panic!("no row {label:?} in {testid}: {rows:?}"));
        row[column].clone()
    }

    /// Presses and releases `key`, as a keyboard user would.
    async fn press(&self, key: Key) {
        let stroke = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key.into() })
            .then(KeyAction::Up { value: key.into() });
        self.client.perform_actions(stroke).await.expect("key press");
    }

    /// Saves a screenshot of the current view for the README, scrolled to `css` if given.
    async fn screenshot_at(&self, name: &str, css: &str) {
        self.client
            .execute("document.querySelector(arguments[0]).scrollIntoView()", vec![json!(css)])
            .await
            .expect("scroll");
        self.screenshot(name).await;
    }

    /// Saves a screenshot of the current view, to look at after a run (never into the
    /// repository's own files).
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Fails on any console error, and on any resource the page loaded from another host.
    async fn assert_clean(&self) {
        let log = self.client.issue_cmd(BrowserLog).await.expect("browser log");
        let severe: Vec<&Value> =
            log.as_array().map(|a| a.iter().filter(|e| e["level"] == "SEVERE").collect()).unwrap_or_default();
        assert!(severe.is_empty(), "console errors: {severe:?}");
        let loaded = self
            .client
            .execute("return performance.getEntriesByType('resource').map(e => e.name)", vec![])
            .await
            .unwrap();
        for url in loaded.as_array().unwrap() {
            let url = url.as_str().unwrap();
            assert!(url.starts_with(&self.origin), "a request to another host: {url}");
        }
    }

    /// Signs out and in again with `token`, through the page's own form.
    async fn sign_in_as(&self, token: &str) {
        self.client.goto(&format!("{}/dashboard/services", self.origin)).await.unwrap();
        self.rendered("/dashboard/services").await;
        let sign_out =
            self.client.find(Locator::XPath("//header//button[text()='Logg ut']")).await.expect("sign-out button");
        sign_out.click().await.unwrap();
        let area = self.client.wait().at_most(TIMEOUT).for_element(Locator::Css("#token")).await.unwrap();
        area.send_keys(token).await.unwrap();
        self.client.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
    }

    async fn close(self) {
        self.assert_clean().await;
        let Browser { client, .. } = &self;
        client.clone().close().await.expect("close the session");
    }
}

async fn demo() -> Server {
    Server::start_with(&["--demo"]).await
}

async fn service_id(s: &Server, name: &str) -> String {
    let services = s.query("{ services { id name } }", json!({})).await;
    services["services"].as_array().unwrap().iter().find(|x| x["name"] == name).expect(name)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

const RPH: &str = "Rask psykisk helsehjelp Gamle Oslo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_for_rph_gamle_oslo_2016_shows_the_published_basis_in_norwegian_and_english() {
    let s = demo().await;
    let rph = service_id(&s, RPH).await;
    let b = Browser::start(&s).await;
    b.open("/dashboard/services?from=2016-01-01&to=2017-01-01").await;
    let services = b.rows("services").await;
    assert!(services.iter().any(|r| r[0] == RPH && r[1] == "Kommunal"), "{services:?}");
    b.screenshot("services").await;

    // Keyboard only: Tab reaches the first report link, Enter opens it.
    let mut reached = false;
    for _ in 0..60 {
        b.press(Key::Tab).await;
        let focused = b.client.execute("return document.activeElement.textContent", vec![]).await.unwrap();
        if focused == json!("Rapport") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab reaches a report link");
    b.press(Key::Enter).await;
    b.client
        .wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css("body[data-rendered$='/report']"))
        .await
        .expect("Enter opens the report");

    b.open(&format!("/dashboard/services/{rph}/report?from=2016-01-01&to=2017-01-01")).await;
    assert!(b.text("[data-testid='who']").await.contains("admin"), "shows who is signed in, and the role");
    assert_eq!(b.text("[data-testid='episodes']").await, "304");
    assert_eq!(b.cell("gender", "Kvinner", 1).await, "199");
    assert_eq!(b.cell("gender", "Menn", 1).await, "101");
    assert_eq!(b.cell("gender", "Ukjent", 1).await, "4");
    assert_eq!(b.cell("referral-sources", "Selvhenvist", 1).await, "236");
    assert_eq!(b.cell("referral-sources", "Annet helsepersonell", 1).await, "30");
    assert_eq!(b.cell("referral-sources", "Pårørende", 1).await, "11");
    let phq9 = b.rows("outcomes").await.into_iter().find(|r| r[0] == "PHQ-9").unwrap();
    assert_eq!((phq9[1].as_str(), phq9[2].as_str(), phq9[3].as_str()), ("13,5", "8,6", "73"), "Norwegian decimals");
    assert_eq!(b.cell("outcomes", "GAD-7", 3).await, "66");
    let waits: u64 = b.rows("waiting-histogram").await.iter().map(|r| r[1].parse::<u64>().unwrap()).sum();
    assert!(waits > 0, "the waiting-time histogram has its table");
    b.screenshot("report").await;
    b.screenshot_at("report-waiting", ".chart").await;

    // At 1280×800, and at 200 % zoom of it (a 640×400 viewport), the page reflows: nothing
    // spills sideways out of the page (wide tables scroll inside their own box).
    for (w, h) in [(640, 400), (1280, 800)] {
        b.client.set_window_size(w, h).await.expect("resize");
        let spill = b
            .client
            .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
            .await
            .unwrap();
        assert!(spill.as_i64().unwrap() <= 0, "at {w}×{h} the page is wider than the window by {spill} px");
    }

    b.client.find(Locator::Css("#lang")).await.unwrap().click().await.unwrap();
    b.rendered(&format!("/dashboard/services/{rph}/report")).await;
    assert_eq!(b.cell("gender", "Women", 1).await, "199", "English one click away");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_sees_small_counts_as_less_than_five_never_as_zero() {
    let s = demo().await;
    let rph = service_id(&s, RPH).await;
    let b = Browser::start(&s).await;
    b.sign_in_as(&s.token("analyst", &[], None)).await;
    b.rendered("/dashboard/services").await;
    assert!(b.text("[data-testid='who']").await.contains("analyst"));
    b.visit(&format!("/dashboard/services/{rph}/report?from=2016-01-01&to=2017-01-01")).await;
    assert_eq!(b.cell("gender", "Ukjent", 1).await, "<5", "4 is below the threshold");
    let women: u64 = b.cell("gender", "Kvinner", 1).await.parse().expect("a large count is shown");
    assert!(women.abs_diff(199) <= 2, "large counts are shown within ±2 of the truth (199): {women}");
    b.screenshot("report-analyst").await;
    // No patient-level view for an analyst: said in words.
    b.visit(&format!("/dashboard/patients/{}", Uuid::new_v4())).await;
    let refused = b.text("[data-testid='error'][data-code='FORBIDDEN']").await;
    assert!(refused.contains("ikke tilgang"), "{refused}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_page_shows_the_segments_and_handovers_that_graphql_returns_and_is_logged() {
    let s = demo().await;
    // A demo patient who moved between care levels and changed therapists.
    let alerts = s.query("{ careAlerts(asOf: \"2016-12-31T00:00:00Z\") { patientId } }", json!({})).await;
    let q = "query($id: UUID!) { patient(id: $id) { continuity { segments { careLevel } handovers { reason patientNotified } } } }";
    let mut chosen = None;
    for a in alerts["careAlerts"].as_array().unwrap() {
        let id: Uuid = a["patientId"].as_str().unwrap().parse().unwrap();
        let p = s.query(q, json!({ "id": id })).await;
        let c = &p["patient"]["continuity"];
        if c["segments"].as_array().unwrap().len() >= 2 && !c["handovers"].as_array().unwrap().is_empty() {
            chosen = Some((id, c.clone()));
            break;
        }
    }
    let (patient, continuity) = chosen.expect("a demo patient with transitions and handovers");
    let b = Browser::start(&s).await;
    b.open(&format!("/dashboard/patients/{patient}")).await;
    let segments = b.rows("segments").await;
    let want: Vec<&str> =
        continuity["segments"].as_array().unwrap().iter().map(|x| x["careLevel"].as_str().unwrap()).collect();
    assert_eq!(segments.len(), want.len(), "one row per segment");
    let drawn = b
        .client
        .execute("return document.querySelectorAll('[data-testid=timeline] [data-segment]').length", vec![])
        .await
        .unwrap();
    assert_eq!(drawn, json!(want.len()), "one bar per segment on the timeline");
    let handovers = b.rows("handovers").await;
    assert_eq!(handovers.len(), continuity["handovers"].as_array().unwrap().len());
    let access = b.rows("access-log").await;
    assert!(
        access.iter().any(|r| r[1] == "Demo admin" || r[1].contains("admin")),
        "the page's own read is in the patient's access log: {access:?}"
    );
    b.screenshot_at("patient", "[data-testid=timeline]").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_alert_appears_live_after_a_mutation_and_errors_are_shown_in_words() {
    let s = demo().await;
    let (service, therapist, patient, episode) = (id(), id(), id(), id());
    s.record("registerService", json!({ "serviceId": service, "name": "Testtjeneste", "careLevel": "MUNICIPAL" }))
        .await;
    s.record("registerTherapist", json!({ "therapistId": therapist, "name": "T" })).await;
    let b = Browser::start(&s).await;
    b.open(&format!("/dashboard/services/{service}/alerts")).await;
    b.client
        .wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css("[data-testid='live-status'][data-connected='true']"))
        .await
        .expect("the live subscription is connected");
    let at = chrono::Utc::now() - chrono::Duration::days(3);
    let t = |days: i64| (at + chrono::Duration::days(days)).to_rfc3339();
    s.record("registerPatient", json!({ "patientId": patient, "birthYear": 1990, "gender": "MALE" })).await;
    s.record(
        "startEpisode",
        json!({ "patientId": patient, "episodeId": episode, "serviceId": service, "startedAt": t(0) }),
    )
    .await;
    s.record(
        "assignTherapist",
        json!({ "patientId": patient, "episodeId": episode, "therapistId": therapist, "assignedAt": t(0) }),
    )
    .await;
    s.record(
        "releaseTherapist",
        json!({ "patientId": patient, "episodeId": episode, "therapistId": therapist, "reason": "SICK_LEAVE",
                "patientNotified": false, "releasedAt": t(1) }),
    )
    .await;
    b.client
        .wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css("[data-testid='alerts'] tr[data-kind='HANDOVER_NOT_NOTIFIED']"))
        .await
        .expect("the alert arrives without a reload");
    b.screenshot("alerts").await;

    b.assert_clean().await;

    // A token the server refuses: said in words, never a blank page. (The browser logs the 401
    // itself as an error, so the console is checked before this.)
    b.sign_in_as("not-a-token").await;
    let error = b.text("[data-testid='error'][data-code='UNAUTHENTICATED']").await;
    assert!(error.contains("Logg inn på nytt"), "{error}");
    b.screenshot("error").await;
    let Browser { client, .. } = &b;
    client.clone().close().await.expect("close");
}
