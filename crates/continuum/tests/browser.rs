//! The clinician web app in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`, Debian packages `chromium` and `chromium-driver`, which `.ci/run`
//! installs). Sign in → search a Synthea patient → open the chart → allergies in the banner →
//! the HbA1c trend → write and sign a note → the note at the top of the timeline. Each step
//! leaves a screenshot in `test-artifacts/browser/` at the workspace root.
//!
//! The test fails, never skips, when `chromedriver` is missing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use test_support::clinic;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thirtyfour::prelude::*;
use thirtyfour::session::http::{Body, HttpClient};
use thirtyfour::{ChromeCapabilities, ChromiumLikeCapabilities};

const CHROMEDRIVER: &str = "chromedriver";

/// WebDriver's HTTP calls made with the workspace's reqwest (thirtyfour's own client would
/// bring a second major version of reqwest).
#[derive(Clone)]
struct WebDriverHttp(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for WebDriverHttp {
    async fn send(&self, request: http::Request<Body<'_>>) -> WebDriverResult<http::Response<bytes::Bytes>> {
        let (parts, body) = request.into_parts();
        let mut outgoing = self.0.request(parts.method, parts.uri.to_string()).headers(parts.headers);
        if let Body::Json(json) = body {
            outgoing = outgoing.json(json);
        }
        let answer = outgoing.send().await.map_err(|e| WebDriverError::RequestFailed(e.to_string()))?;
        let mut response = http::Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            response = response.header(name, value);
        }
        let body = answer.bytes().await.map_err(|e| WebDriverError::RequestFailed(e.to_string()))?;
        response.body(body).map_err(|e| WebDriverError::HttpError(e.to_string()))
    }

    async fn new(&self) -> Arc<dyn HttpClient> {
        Arc::new(WebDriverHttp(reqwest::Client::new()))
    }
}

/// A `chromedriver` child, killed when dropped.
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

fn start_chromedriver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {CHROMEDRIVER} ({e}): install the Debian packages chromium and chromium-driver")
        });
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::blocking::get(format!("{url}/status")).map(|r| !r.status().is_success()).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver { child, url }
}

/// Where the screenshots go.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Clicks what leads to another page and waits until the browser has left this one.
async fn follow(browser: &WebDriver, element: WebElement) {
    let page = browser.find(By::Css("html")).await.unwrap();
    element.click().await.unwrap();
    page.wait_until().stale().await.unwrap();
}

/// Waits for an element (pages load after a click).
async fn wait_for(browser: &WebDriver, css: &str) -> WebElement {
    browser.query(By::Css(css)).wait(Duration::from_secs(10), Duration::from_millis(50)).first().await.unwrap()
}

#[test]
fn a_clinician_signs_in_finds_a_patient_reads_the_chart_and_signs_a_note() {
    let clinic = clinic::clinic();
    let driver = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let shots = artifacts();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let mut capabilities = ChromeCapabilities::new();
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ] {
            capabilities.add_arg(arg).unwrap();
        }
        capabilities.add_arg(&format!("--user-data-dir={}", profile.path().display())).unwrap();
        if std::path::Path::new("/usr/bin/chromium").exists() {
            capabilities.set_binary("/usr/bin/chromium").unwrap();
        }
        let browser = WebDriver::builder(driver.url.as_str(), capabilities)
            .client(WebDriverHttp(reqwest::Client::new()))
            .connect()
            .await
            .expect("a Chromium session");
        let shot = |name: &'static str| {
            let path = shots.join(name);
            let browser = browser.clone();
            async move { browser.screenshot(&path).await.unwrap() }
        };

        // 1. Sign in: the app sends an unknown visitor to its sign-in form.
        browser.goto(format!("{}/app", clinic.origin)).await.unwrap();
        wait_for(&browser, "#username").await.send_keys("doc").await.unwrap();
        browser.find(By::Css("#password")).await.unwrap().send_keys(clinic::PASSWORD).await.unwrap();
        shot("01-sign-in.png").await;
        follow(&browser, browser.find(By::Css("form button[type=submit]")).await.unwrap()).await;
        let heading = wait_for(&browser, "main h1").await;
        assert_eq!(heading.text().await.unwrap(), "Find a patient");

        // 2. Search by name.
        browser.find(By::Css("#name")).await.unwrap().send_keys("Barry").await.unwrap();
        follow(&browser, browser.find(By::Css("form[role=search] button")).await.unwrap()).await;
        let result = wait_for(&browser, "main table a").await;
        assert_eq!(result.text().await.unwrap(), "Barry Wolf");
        shot("02-search.png").await;

        // 3. The chart opens on the summary, the banner on top.
        follow(&browser, result).await;
        let name = wait_for(&browser, ".banner .patient-name").await;
        assert_eq!(name.text().await.unwrap(), "Barry Wolf");

        // 4. Allergies in the banner: none recorded yet, and said so; an allergy recorded
        //    from the list page appears in the banner.
        let allergies = browser.find(By::Css("#banner-allergies")).await.unwrap();
        assert_eq!(allergies.text().await.unwrap(), "Allergies: Not recorded");
        shot("03-chart-summary.png").await;

        // Keyboard first: the first Tab reaches the skip link, and the page has no script.
        browser.find(By::Css("body")).await.unwrap().send_keys(Key::Tab).await.unwrap();
        let focused = browser.active_element().await.unwrap();
        assert_eq!(focused.text().await.unwrap(), "Skip to content");
        let scripts = browser.find_all(By::Css("script")).await.unwrap();
        assert!(scripts.is_empty(), "the pages need no JavaScript");
        // The Content-Security-Policy (style-src 'self') lets the app's one stylesheet apply.
        let styled = browser
            .execute(
                "return [document.styleSheets.length, document.styleSheets[0].cssRules.length, \
                 getComputedStyle(document.querySelector('a.skip')).position];",
                Vec::new(),
            )
            .await
            .unwrap();
        let styled = styled.json();
        assert_eq!(styled[0], 1, "the stylesheet loaded under the policy: {styled}");
        assert!(styled[1].as_u64().unwrap() > 10, "{styled}");
        assert_ne!(styled[2], "static", "its rules apply (the skip link is positioned): {styled}");
        // At 200% zoom (half the CSS width) the chart still fits: nothing scrolls sideways.
        browser.set_window_rect(0, 0, 640, 1000).await.unwrap();
        let overflow = browser
            .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", Vec::new())
            .await
            .unwrap();
        assert!(
            overflow.json().as_i64().unwrap() <= 0,
            "no sideways scrolling at 640 CSS pixels: {:?}",
            overflow.json()
        );
        shot("03b-summary-at-200-percent.png").await;
        browser.set_window_rect(0, 0, 1280, 1000).await.unwrap();
        follow(&browser, browser.find(By::LinkText("Problems, allergies, medications")).await.unwrap()).await;
        wait_for(&browser, "#substance").await.send_keys("Penicillin").await.unwrap();
        browser.find(By::Css("#reaction")).await.unwrap().send_keys("Hives").await.unwrap();
        follow(&browser, browser.find(By::XPath("//button[text()='Add allergy']")).await.unwrap()).await;
        follow(&browser, browser.find(By::LinkText("Summary")).await.unwrap()).await;
        let allergies = wait_for(&browser, "#banner-allergies").await;
        assert_eq!(allergies.text().await.unwrap(), "Allergies: Penicillin");
        shot("04-allergy-in-banner.png").await;

        // 5. The HbA1c trend: an SVG chart whose points carry their values, and the table.
        follow(&browser, browser.find(By::LinkText("Trends")).await.unwrap()).await;
        wait_for(&browser, "nav[aria-label=Measures]").await;
        follow(&browser, browser.find(By::LinkText("Hemoglobin A1c")).await.unwrap()).await;
        let title = wait_for(&browser, "#trend-title").await;
        assert!(title.text().await.unwrap().starts_with("Hemoglobin A1c"));
        let points = browser.find_all(By::Css("#trend-chart svg .point")).await.unwrap();
        assert_eq!(points.len(), 10, "Barry's ten HbA1c results");
        let rows = browser.find_all(By::Css("#trend-table tbody tr")).await.unwrap();
        assert_eq!(rows.len(), 10);
        let first_row = rows[0].text().await.unwrap();
        assert!(first_row.contains('%'), "{first_row}");
        // Keyboard users reach the points too.
        points[0].focus().await.unwrap();
        let focused = browser.active_element().await.unwrap();
        assert_eq!(focused.attr("class").await.unwrap().as_deref(), Some("point"));
        shot("05-hba1c-trend.png").await;

        // 6. Write and sign a SOAP note.
        follow(&browser, browser.find(By::LinkText("New note")).await.unwrap()).await;
        let title = wait_for(&browser, "#title").await;
        title.clear().await.unwrap();
        title.send_keys("Diabetes follow-up (browser)").await.unwrap();
        browser
            .find(By::Css("#section0"))
            .await
            .unwrap()
            .send_keys("Feels well; checks sugars at home.")
            .await
            .unwrap();
        browser.find(By::Css("#section2")).await.unwrap().send_keys("Prediabetes, HbA1c stable.").await.unwrap();
        browser
            .find(By::Css("#section3"))
            .await
            .unwrap()
            .send_keys("Diet and exercise; repeat HbA1c in 6 months.")
            .await
            .unwrap();
        shot("06-note-form.png").await;
        follow(&browser, browser.find(By::XPath("//button[text()='Sign note']")).await.unwrap()).await;
        let note = wait_for(&browser, "article.note").await;
        let text = note.text().await.unwrap();
        assert!(text.contains("Signed") && text.contains("repeat HbA1c in 6 months"), "{text}");
        shot("07-signed-note.png").await;

        // 7. The note is the newest entry of the timeline.
        follow(&browser, browser.find(By::LinkText("Timeline")).await.unwrap()).await;
        let first = wait_for(&browser, "#timeline li").await;
        let entry = first.text().await.unwrap();
        assert!(entry.contains("Note: Diabetes follow-up (browser) — signed"), "{entry}");
        assert!(entry.contains("Source: "), "{entry}");
        shot("08-timeline.png").await;

        browser.quit().await.unwrap();
    });
    for shot in ["01-sign-in.png", "04-allergy-in-banner.png", "05-hba1c-trend.png", "08-timeline.png"] {
        let bytes = std::fs::read(artifacts().join(shot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
}
