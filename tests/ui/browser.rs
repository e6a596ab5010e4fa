//! The dashboard in a real browser: the release of `serve` (API and workers)
//! on SQLite, driven through WebDriver (Debian's `chromium-driver`) in headless
//! Chromium, against a GitHub mock (wiremock serving the recorded issues
//! page). Signs in (a wrong token refused), picks a tenant, searches and
//! filters the catalogue, tests GitHub with a wrong and a right token (the
//! wrong one shows GitHub's own words and stores nothing), connects, watches
//! the backfill's Signals counted and listed, disables and enables, syncs,
//! checks a second tenant sees nothing, disconnects after confirming; no
//! console errors on the way. It writes the screenshots in `docs/screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install
//! chromium chromium-driver`): without them it says so and passes, unless
//! `POBLYSH_REQUIRE_BROWSER=1` (set by `.ci/run`), where it fails.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::api::harness::{Server, send};
use crate::sync::monitoring::{bad_credentials, issues};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser tests can run here; panics where they must
/// (`POBLYSH_REQUIRE_BROWSER=1`) and cannot.
pub fn browser_available() -> bool {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("POBLYSH_REQUIRE_BROWSER").is_none(),
            "POBLYSH_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver"
        );
        eprintln!(
            "SKIPPED: the browser tests need {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
    }
    present
}

/// A chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed and waited for on drop, whatever happens next.
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// The browser's console since the last call (chromedriver's log endpoint).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

async fn console_errors(client: &Client) -> Vec<String> {
    let log = client.issue_cmd(BrowserLog).await.unwrap();
    log.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The console since the last look holds only the browser's note of the
/// page answering `status` (the error page itself, which this step expects).
async fn only_the_expected_answer(client: &Client, status: u16) {
    let note = format!("the server responded with a status of {status}");
    let errors = console_errors(client).await;
    assert!(
        errors.iter().all(|e| e.contains(&note)),
        "console errors: {errors:#?}"
    );
}

/// Waits (up to 30 s: the suite runs beside it) until `css` matches an element whose text contains `text`.
async fn wait_text(client: &Client, css: &str, text: &str) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        if let Ok(e) = client.find(Locator::Css(css)).await {
            last = e.text().await.unwrap_or_default();
            if last.contains(text) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "`{css}` never contained {text:?} (last: {last:?}) on {}",
        client.current_url().await.unwrap()
    );
}

async fn fill(client: &Client, css: &str, value: &str) {
    let e = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"));
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// Waits (up to 30 s) until the browser's address contains `part` (the page a
/// submitted form asked for is there, not the one before it).
async fn until_url(client: &Client, part: &str) {
    for _ in 0..300 {
        if client.current_url().await.unwrap().as_str().contains(part) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the address never contained {part:?}");
}

/// Waits (up to 30 s) until the browser is no longer on `path` (a form it
/// submitted was answered).
async fn left(client: &Client, path: &str) {
    for _ in 0..300 {
        if client.current_url().await.unwrap().path() != path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("still on {path} after 30 s");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"))
        .click()
        .await
        .unwrap();
}

async fn cards(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for card in client.find_all(Locator::Css(".card")).await.unwrap() {
        out.push(
            card.attr("data-provider")
                .await
                .unwrap()
                .unwrap_or_default(),
        );
    }
    out
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let path = format!("{}/docs/screenshots/{name}.png", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(&path, png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_connects_watches_and_disconnects_github() {
    if !browser_available() {
        return;
    }
    let github = MockServer::start().await;
    let page = issues(&[20, 40, 60].map(chrono::Duration::minutes));
    let recorded = page.as_array().unwrap().len();
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .and(header("authorization", "Bearer ghp_right_token_value"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resources": {}})))
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/rate_limit"))
        .respond_with(bad_credentials())
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo-org/hello/issues"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&github)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
    let server = Server::start_all(
        dir,
        database_url,
        &[("POBLYSH_ALLOW_PRIVATE_NETWORKS", "true")],
    )
    .await;
    let base = server.base.clone();
    let driver = driver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());

    // Signing in: a wrong token is refused, the right one signs in.
    client.goto(&format!("{base}/ui")).await.unwrap();
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/ui/login")
    );
    fill(&client, "#token", "not-the-operator-token").await;
    click(&client, "form[action='/ui/login'] button").await;
    wait_text(&client, "#login-error", "not an operator token").await;
    only_the_expected_answer(&client, 401).await;
    fill(&client, "#token", crate::api::harness::TOKEN).await;
    click(&client, "form[action='/ui/login'] button").await;
    wait_text(&client, "h1", "Choose a tenant").await;

    // A tenant: a bad id is refused, then A.
    fill(&client, "#tenant-id", "not-a-uuid").await;
    click(&client, "main form[action='/ui/tenant'] button.primary").await;
    wait_text(&client, "#tenant-error", "UUID").await;
    only_the_expected_answer(&client, 400).await;
    fill(&client, "#tenant-id", &a.to_string()).await;
    click(&client, "main form[action='/ui/tenant'] button.primary").await;
    wait_text(&client, "[data-testid=empty]", "No connections yet").await;
    wait_text(&client, "[data-testid=tenant]", &a.to_string()).await;

    // The catalogue: everything, then by words, then by category.
    client.goto(&format!("{base}/ui/catalogue")).await.unwrap();
    let all = cards(&client).await;
    assert!(
        all.len() >= 15 && all.contains(&"github".to_owned()),
        "{all:?}"
    );
    fill(&client, "#q", "git").await;
    click(&client, "form.filters button").await;
    until_url(&client, "q=git").await;
    assert_eq!(cards(&client).await, ["github"]);
    client.goto(&format!("{base}/ui/catalogue")).await.unwrap();
    client
        .find(Locator::Css("#category"))
        .await
        .unwrap()
        .select_by_value("communication")
        .await
        .unwrap();
    click(&client, "form.filters button").await;
    until_url(&client, "category=communication").await;
    let communication = cards(&client).await;
    assert!(
        communication.contains(&"slack".to_owned())
            && !communication.contains(&"github".to_owned()),
        "{communication:?}"
    );
    client.goto(&format!("{base}/ui/catalogue")).await.unwrap();
    screenshot(&client, "catalogue").await;

    // Setting up GitHub: a wrong token tested, then the right one, then connect.
    click(&client, ".card[data-provider=github] a.button").await;
    wait_text(&client, "h1", "Connect GitHub").await;
    fill(
        &client,
        "[name='credentials.token']",
        "ghp_wrong_token_value",
    )
    .await;
    fill(&client, "[name='config.repos']", "octo-org/hello").await;
    fill(&client, "[name='config.baseUrl']", &github.uri()).await;
    click(&client, "button[data-test]").await;
    let refused = wait_text(&client, "[data-testid=test-result]", "Not healthy").await;
    assert!(
        refused.contains("Bad credentials") && refused.contains("401"),
        "{refused}"
    );
    assert!(!refused.contains("ghp_wrong_token_value"), "{refused}");
    let (_, stored) = send(server.tenant(a, Method::GET, "/connections")).await;
    assert_eq!(stored["connections"], json!([]), "a test stores nothing");
    fill(
        &client,
        "[name='credentials.token']",
        "ghp_right_token_value",
    )
    .await;
    click(&client, "button[data-test]").await;
    wait_text(&client, "[data-testid=test-result]", "Healthy").await;
    screenshot(&client, "setup").await;
    click(&client, "form#setup button.primary").await;
    wait_text(&client, "[data-testid=notice]", "Connected").await;

    // The backfill's Signals, counted and listed (the page refreshes itself).
    wait_text(&client, "[data-testid=signals-24h]", &recorded.to_string()).await;
    wait_text(&client, "[data-testid=last-sync]", "succeeded").await;
    wait_text(&client, "[data-testid=health]", "Healthy").await;
    let listed = client
        .find_all(Locator::Css("[data-testid=signals] tbody tr"))
        .await
        .unwrap();
    assert_eq!(listed.len(), recorded);
    screenshot(&client, "connection").await;
    let connection = client.current_url().await.unwrap();

    // Disable, enable, sync now.
    click(&client, "[data-testid=toggle]").await;
    wait_text(&client, "[data-testid=notice]", "Disabled").await;
    wait_text(&client, "[data-testid=toggle]", "Disabled").await;
    let (_, list) = send(server.tenant(a, Method::GET, "/connections")).await;
    assert_eq!(list["connections"][0]["enabled"], false);
    click(&client, "[data-testid=toggle]").await;
    wait_text(&client, "[data-testid=notice]", "Enabled").await;
    let (_, list) = send(server.tenant(a, Method::GET, "/connections")).await;
    assert_eq!(list["connections"][0]["enabled"], true);
    click(&client, "form[action$='/sync'] button").await;
    wait_text(&client, "[data-testid=notice]", "sync is queued").await;
    wait_text(&client, "[data-testid=jobs]", "manual").await;

    // Tenant B sees none of A's.
    client.goto(&format!("{base}/ui/tenant")).await.unwrap();
    fill(&client, "#tenant-id", &b.to_string()).await;
    click(&client, "main form[action='/ui/tenant'] button.primary").await;
    wait_text(&client, "[data-testid=empty]", "No connections yet").await;
    client
        .goto(&format!("{base}/ui/catalogue?q=github"))
        .await
        .unwrap();
    wait_text(
        &client,
        ".card[data-provider=github] [data-testid=status]",
        "Not configured",
    )
    .await;
    client.goto(connection.as_str()).await.unwrap();
    wait_text(&client, "main", "no such connection").await;
    only_the_expected_answer(&client, 404).await;
    // Back to A from the recent tenants.
    client.goto(&format!("{base}/ui/tenant")).await.unwrap();
    click(
        &client,
        &format!("ul.recent form:has(input[value='{a}']) button"),
    )
    .await;
    // The form's answer must land before the next page is asked for, or it
    // lands on top of it.
    left(&client, "/ui/tenant").await;
    client
        .goto(&format!("{base}/ui/catalogue?q=github"))
        .await
        .unwrap();
    wait_text(
        &client,
        ".card[data-provider=github] [data-testid=status]",
        "Connected",
    )
    .await;

    // Disconnect, after confirming.
    client.goto(connection.as_str()).await.unwrap();
    click(&client, "a.button.danger").await;
    wait_text(&client, "h1", "Disconnect").await;
    click(&client, "[data-testid=confirm-delete]").await;
    wait_text(&client, "[data-testid=empty]", "No connections yet").await;
    let (_, list) = send(server.tenant(a, Method::GET, "/connections")).await;
    assert_eq!(list["connections"], json!([]));

    // Signing out ends the session.
    click(&client, "form[action='/ui/logout'] button").await;
    wait_text(&client, "h1", "Sign in").await;
    client
        .goto(&format!("{base}/ui/connections"))
        .await
        .unwrap();
    wait_text(&client, "h1", "Sign in").await;

    let errors = console_errors(&client).await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    client.close().await.unwrap();
}
