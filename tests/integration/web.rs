//! The web view (`GET /` of `swarm serve --listen`) in a real browser: headless Chromium driven
//! through chromedriver (WebDriver). A person enters the token, starts a run from the blueprints
//! page and watches its nodes turn green, cancels a second run, signals a waiting third; the
//! page is checked at a phone's width too. Screenshots go to `$CARGO_TARGET_TMPDIR/web/`.
//!
//! `scripts/browser-setup` (sourced by scripts/test and .ci/run) installs Debian's `chromium`
//! and `chromium-driver`. Without them the test fails, unless `SWARM_NO_BROWSER` says why they
//! could not be installed: then it says so and is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::util::DEADLINE;
use crate::util::bin::write;
use crate::util::http::{Served, request};
use crate::util::live::Killed;

const SCRIPT: &str = r#"local swarm = require("swarm")
local F = swarm.flow
swarm.expose(swarm.blueprint({
  id = "quick",
  agents = { a = function(i) return 1 end, b = function(i) return 2 end, c = function(i) return 3 end },
  flow = F.seq({
    F.step({ agent = "a", out = "$.a" }),
    F.step({ agent = "b", out = "$.b" }),
    F.step({ agent = "c", out = "$.c" }),
  }),
}))
swarm.expose(swarm.blueprint({
  id = "paced",
  agents = { tick = function(i) swarm.sleep(150); return i end },
  flow = F.seq((function()
    local steps = {}
    for i = 1, 8 do steps[i] = F.step({ agent = "tick", input = i, out = "$.s" .. i }) end
    return steps
  end)()),
}))
swarm.expose(swarm.blueprint({
  id = "approval",
  agents = { draft = function(input) return "draft" end },
  flow = F.seq({
    F.step({ agent = "draft", out = "$.draft" }),
    F.wait({ signal = "approve", out = "$.approval" }),
  }),
}))
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `check` (a JavaScript expression) in the page until it is true.
async fn until(client: &Client, what: &str, check: &str) {
    let start = Instant::now();
    loop {
        // The page may be between views (nothing rendered yet): that is "not yet".
        let v = client
            .execute(&format!("try {{ return !!({check}); }} catch (e) {{ return false; }}"), vec![])
            .await
            .unwrap();
        if v == json!(true) {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "the page never showed {what} ({check})");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(artifacts().join(name), png).unwrap();
}

#[tokio::test]
async fn a_person_logs_in_starts_watches_cancels_and_signals_runs_in_the_browser() {
    let (chromium, driver) = (Path::new("/usr/bin/chromium"), Path::new("/usr/bin/chromedriver"));
    if !chromium.exists() || !driver.exists() {
        match std::env::var("SWARM_NO_BROWSER") {
            Ok(why) => {
                eprintln!("SKIPPED: the web view's browser test: Chromium could not be installed here ({why})");
                return;
            }
            Err(_) => panic!(
                "no /usr/bin/chromium or /usr/bin/chromedriver: run the tests with scripts/test, which installs them"
            ),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.lua", SCRIPT);
    let api = Served::start_with(dir.path(), &["serve", "s.lua", "--listen", "127.0.0.1:0"], &[]);
    let crate::util::http::Addr::Tcp(addr) = &api.addr else { unreachable!() };
    let page = format!("http://{addr}/");

    // The page itself needs no token and holds none.
    let html = request(&api.addr, "GET", "/", None, b"");
    assert_eq!(html.status, 200);
    assert!(html.header("content-type").unwrap().starts_with("text/html"));
    assert!(html.header("content-security-policy").unwrap().contains("default-src 'none'"));
    assert!(html.body.len() < 300 * 1024, "page weight {} bytes", html.body.len());
    assert!(!html.text().contains("http://") && !html.text().contains("https://"), "nothing is fetched from elsewhere");

    let port = free_port();
    let _driver = Killed(
        Command::new(driver).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < DEADLINE, "chromedriver never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");

    // Log in once: the token goes to session storage, never into the URL.
    client.goto(&page).await.unwrap();
    until(&client, "the token form", "document.querySelector('#token').offsetParent !== null").await;
    client.find(Locator::Css("#token")).await.unwrap().send_keys(&api.token).await.unwrap();
    client.find(Locator::Css("#save-token")).await.unwrap().click().await.unwrap();
    until(&client, "the runs page", "document.querySelector('#runs')").await;
    shot(&client, "runs.png").await;

    // Start a run from the blueprints page and watch its three steps turn green.
    client.goto(&format!("{page}#/blueprints")).await.unwrap();
    until(&client, "the start button", "document.querySelector('[data-start=quick]')").await;
    shot(&client, "blueprints.png").await;
    client.find(Locator::Css("[data-start=quick]")).await.unwrap().click().await.unwrap();
    until(&client, "the run page", "location.hash.startsWith('#/runs/r-')").await;
    until(
        &client,
        "three green steps",
        "document.querySelectorAll('.graph .node.step').length === 3 && [...document.querySelectorAll('.graph .node.step')].every(n => n.classList.contains('s-pass'))",
    )
    .await;
    until(&client, "the run finished", "document.querySelector('h2 .badge.s-finished')").await;
    let labels = client
        .execute("return [...document.querySelectorAll('.graph .node.step > .label')].map(l => l.textContent);", vec![])
        .await
        .unwrap();
    assert_eq!(labels, json!(["a", "b", "c"]), "each step's box names its agent");
    shot(&client, "run-finished.png").await;
    let url = client.current_url().await.unwrap();
    assert!(!url.as_str().contains(&api.token), "the token is in the URL: {url}");

    // A second run waits; cancel it with the button.
    let second = api.start_run(json!("approval"), json!({}));
    api.wait_status(&second, "waiting");
    client.goto(&format!("{page}#/runs/{second}")).await.unwrap();
    until(&client, "what the run waits for", "document.querySelector('#waits').textContent.includes('approve')").await;
    client.find(Locator::Css("#cancel")).await.unwrap().click().await.unwrap();
    until(&client, "the run cancelled", "document.querySelector('h2 .badge.s-cancelled')").await;
    assert_eq!(api.wait_status(&second, "cancelled")["status"], "cancelled");

    // A third waits; signal it with a JSON value.
    let third = api.start_run(json!("approval"), json!({}));
    api.wait_status(&third, "waiting");
    client.goto(&format!("{page}#/runs/{third}")).await.unwrap();
    until(&client, "the waiting node", "document.querySelector('.graph .node.wait.s-waiting')").await;
    shot(&client, "run-waiting.png").await;
    client.find(Locator::Css("#signal-name")).await.unwrap().send_keys("approve").await.unwrap();
    client.find(Locator::Css("#signal-value")).await.unwrap().send_keys(r#"{"ok": true}"#).await.unwrap();
    client.find(Locator::Css("#signal")).await.unwrap().click().await.unwrap();
    until(&client, "the signalled run finished", "document.querySelector('h2 .badge.s-finished')").await;
    assert_eq!(api.wait_status(&third, "finished")["ctx"]["approval"], json!({"ok": true}));

    // A figure, not a check: how long after a step finishes its box changes colour. The page
    // counts the step's finished attempts; the events say when each finished.
    let paced = api.start_run(json!("paced"), json!({}));
    client.goto(&format!("{page}#/runs/{paced}")).await.unwrap();
    until(&client, "the paced run's graph", "document.querySelector('.graph .node.step')").await;
    client
        .execute(
            "window.seen = []; for (const box of document.querySelectorAll('.graph .node.step')) {\
               let done = box.classList.contains('s-pass');\
               new MutationObserver(() => { if (!done && box.classList.contains('s-pass')) { done = true; window.seen.push(Date.now()); } })\
                 .observe(box, { attributes: true }); }",
            vec![],
        )
        .await
        .unwrap();
    until(&client, "the paced run finished", "document.querySelector('h2 .badge.s-finished')").await;
    let seen = client.execute("return window.seen;", vec![]).await.unwrap();
    let events = request(&api.addr, "GET", &format!("/v1/runs/{paced}/events"), Some(&api.token), b"").text();
    let finished: Vec<u64> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter(|e| e["kind"] == "attempt_finished")
        .filter_map(|e| e["at_ms"].as_u64())
        .collect();
    // Steps finish in order, so the n-th box to turn green is the n-th attempt to finish.
    let mut passes: Vec<u64> = seen.as_array().unwrap().iter().filter_map(|p| p.as_u64()).collect();
    passes.sort();
    let mut lags: Vec<u64> =
        finished.iter().rev().zip(passes.iter().rev()).map(|(at, p)| p.saturating_sub(*at)).collect();
    lags.sort();
    if !lags.is_empty() {
        eprintln!(
            "web view: a step's box repainted {} ms (p50) / {} ms (max) after its attempt finished, over {} steps; page {} bytes",
            lags[lags.len() / 2],
            lags[lags.len() - 1],
            lags.len(),
            html.body.len()
        );
    }

    // A phone's width: nothing runs off the side.
    client.set_window_size(390, 844).await.unwrap();
    client.goto(&format!("{page}#/runs")).await.unwrap();
    until(&client, "the runs page", "document.querySelectorAll('#runs tbody tr').length >= 3").await;
    let quick_steps = client
        .execute("return [...document.querySelectorAll('#runs tbody tr')].map(r => r.lastChild.textContent);", vec![])
        .await
        .unwrap();
    assert!(quick_steps.as_array().unwrap().iter().any(|s| s == "3"), "the runs list counts steps: {quick_steps}");
    let wide = client.execute("return document.documentElement.scrollWidth <= window.innerWidth + 1;", vec![]).await;
    assert_eq!(wide.unwrap(), json!(true), "the runs page is wider than a phone");
    shot(&client, "runs-phone.png").await;

    client.close().await.unwrap();
    assert!(!api.swarm.stderr().contains(&api.token), "the token is in the server's log");
}
