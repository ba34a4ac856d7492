//! The HTTP surface without a cluster: authentication, content type, size limits, error
//! bodies, health endpoints, TLS, the secrecy of the token in logs, and that no input — random
//! bytes or a mutated capture — can panic the shim. Persistence goes to a Kubernetes endpoint
//! where nothing listens, so a valid payload must be answered 503 with Retry-After.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TOKEN, config, fixture, state, webhook_fixtures};
use salve_webhook::handlers::router;
use serde_json::Value;
use tower::ServiceExt;

/// Every log line any test of this binary writes, as JSON text (the production format).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        let sub = salve_webhook::logging::subscriber(
            move || writer.clone(),
            tracing_subscriber::EnvFilter::new("trace"),
        );
        tracing::subscriber::set_global_default(sub).unwrap();
        buf
    })
    .clone()
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn post(body: impl Into<Body>, token: Option<&str>, content_type: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/alert");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, v)
}

#[tokio::test]
async fn a_request_without_the_token_or_with_a_wrong_one_is_refused_401() {
    captured_logs();
    let st = state(config());
    let app = router(st.clone());
    let body = fixture("webhook-firing-single.json");
    for token in [None, Some("wrong-token"), Some("")] {
        let (status, headers, v) =
            send(&app, post(body.clone(), token, Some("application/json"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(v["error"], "missing or invalid bearer token");
    }
    assert_eq!(st.metrics.rejected("Unauthorized"), 3);
    assert_eq!(st.metrics.api_calls("create"), 0);
}

#[tokio::test]
async fn a_wrong_content_type_is_refused_400_naming_it() {
    let app = router(state(config()));
    let body = fixture("webhook-firing-single.json");
    let (status, _, v) = send(&app, post(body.clone(), Some(TOKEN), Some("text/plain"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"],
        "content-type must be application/json, got \"text/plain\""
    );
    let (status, _, v) = send(&app, post(body, Some(TOKEN), None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["error"],
        "content-type must be application/json, got \"none\""
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_413_declared_or_not() {
    let mut c = config();
    c.max_body_bytes = 1000;
    let st = state(c);
    let app = router(st.clone());
    let body = fixture("webhook-firing-single.json");
    assert!(body.len() > 1000);
    // With Content-Length: refused before reading.
    let mut req = post(body.clone(), Some(TOKEN), Some("application/json"));
    req.headers_mut().insert(
        header::CONTENT_LENGTH,
        body.len().to_string().parse().unwrap(),
    );
    let (status, _, v) = send(&app, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"], "request body exceeds the limit of 1000 bytes");
    // Streamed without a length: refused while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let streamed = Body::from_stream(futures::stream::iter(chunks));
    let (status, _, _) = send(&app, post(streamed, Some(TOKEN), Some("application/json"))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(st.metrics.rejected("BodyTooLarge"), 2);
}

#[tokio::test]
async fn more_alerts_than_the_limit_are_refused_413() {
    let mut c = config();
    c.max_alerts = 2;
    let app = router(state(c));
    let (status, _, v) = send(
        &app,
        post(
            fixture("webhook-firing-group-of-3.json"),
            Some(TOKEN),
            Some("application/json"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"], "payload has 3 alerts; the limit is 2");
}

#[tokio::test]
async fn bad_input_is_refused_400_with_a_json_body_naming_the_problem() {
    let st = state(config());
    let app = router(st.clone());
    let mut v: Value =
        serde_json::from_slice(&fixture("webhook-firing-truncated-group.json")).unwrap();
    v["alerts"][3]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("alertname");
    let cases = [
        (b"{not json".to_vec(), "invalid JSON: "),
        (
            serde_json::to_vec(&v).unwrap(),
            "alerts[3].labels.alertname missing",
        ),
        (br#"{"version":"3"}"#.to_vec(), "groupKey missing"),
    ];
    for (body, want) in cases {
        let (status, headers, v) = send(
            &app,
            post(body, Some(TOKEN), Some("application/json; charset=utf-8")),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.starts_with(want), "want {want:?}, got {msg:?}");
    }
    assert_eq!(st.metrics.rejected("InvalidJson"), 1);
    assert_eq!(st.metrics.rejected("InvalidField"), 2);
    assert_eq!(
        st.metrics.api_calls("create"),
        0,
        "a bad payload writes nothing"
    );
}

#[tokio::test]
async fn a_valid_payload_is_answered_503_with_retry_after_while_the_api_server_is_unreachable() {
    let st = state(config());
    let app = router(st.clone());
    let (status, headers, v) = send(
        &app,
        post(
            fixture("webhook-firing-group-of-3.json"),
            Some(TOKEN),
            Some("application/json"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "5");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("Kubernetes API unavailable"),
        "{v}"
    );
    assert_eq!(st.metrics.received("firing"), 3);
    assert_eq!(st.metrics.incidents_created.get(), 0);
}

#[tokio::test]
async fn health_is_ok_readiness_follows_the_api_server_and_metrics_are_exposed() {
    let st = state(config());
    let app = router(st.clone());
    let (status, _, _) = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    send(&app, post(b"{}".to_vec(), None, None)).await;
    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for want in [
        "salve_webhook_rejects_total{reason=\"Unauthorized\"} 1",
        "# TYPE salve_webhook_incidents_created counter",
        "# TYPE salve_webhook_request_duration_seconds histogram",
        "salve_webhook_request_duration_seconds_count{code=\"401\"} 1",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
}

/// A tiny deterministic PRNG (SplitMix64): reproducible mutations without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn random_value(r: &mut Rng, depth: u32) -> Value {
    match r.below(if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(r.below(2) == 0),
        2 => Value::from(r.next() as i64),
        3 => Value::from(-1.5e300),
        4 => Value::String(String::new()),
        5 => {
            let len = r.below(300);
            Value::String(
                (0..len)
                    .map(|_| char::from_u32(r.below(0x11000) as u32).unwrap_or('\u{fffd}'))
                    .collect(),
            )
        }
        6 => Value::Array(
            (0..r.below(4))
                .map(|_| random_value(r, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..r.below(4))
                .map(|i| (format!("k{i}"), random_value(r, depth + 1)))
                .collect(),
        ),
    }
}

/// Replaces, removes or retypes one random node of `v`.
fn mutate(v: &mut Value, r: &mut Rng) {
    match v {
        Value::Object(m) if !m.is_empty() && r.below(4) != 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[r.below(keys.len())];
            match r.below(5) {
                0 => {
                    m.remove(k);
                }
                1 => {
                    m.insert(k.clone(), random_value(r, 0));
                }
                _ => {
                    if let Some(child) = m.get_mut(k) {
                        mutate(child, r);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() && r.below(4) != 0 => {
            let i = r.below(a.len());
            match r.below(4) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let dup = a[i].clone();
                    a.push(dup);
                }
                _ => mutate(&mut a[i], r),
            }
        }
        other => *other = random_value(r, 0),
    }
}

#[tokio::test]
async fn no_input_panics_the_shim_random_bytes_or_mutated_captures() {
    let mut c = config();
    c.request_timeout_seconds = 2;
    let st = state(c);
    let app = router(st.clone());
    let captures: Vec<Value> = webhook_fixtures()
        .into_iter()
        .map(|(_, b)| serde_json::from_slice(&b).unwrap())
        .collect();
    let mut r = Rng(0x5a17e);
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..1500 {
        let body: Vec<u8> = match i % 3 {
            0 => (0..r.below(2048)).map(|_| r.next() as u8).collect(),
            1 => {
                let mut v = captures[r.below(captures.len())].clone();
                for _ in 0..=r.below(4) {
                    mutate(&mut v, &mut r);
                }
                serde_json::to_vec(&v).unwrap()
            }
            _ => {
                // Byte-level damage to a capture: flips, cuts, insertions.
                let mut b = serde_json::to_vec(&captures[r.below(captures.len())]).unwrap();
                for _ in 0..=r.below(3) {
                    let at = r.below(b.len());
                    match r.below(3) {
                        0 => b[at] = r.next() as u8,
                        1 => b.truncate(at),
                        _ => {
                            const NASTY: &[u8] = b"\"{}[]:,\\\x00";
                            b.insert(at, NASTY[r.below(NASTY.len())])
                        }
                    }
                    if b.is_empty() {
                        break;
                    }
                }
                b
            }
        };
        // Also through the pure layers directly, which must not panic either.
        if let Ok(p) = salve_webhook::payload::parse(&body)
            && let Ok(checked) = salve_webhook::payload::check_all(&p)
        {
            for a in &checked {
                let _ = salve_webhook::build::incident(a, &Default::default(), "ns");
            }
        }
        let resp = app
            .clone()
            .oneshot(post(body, Some(TOKEN), Some("application/json")))
            .await
            .unwrap();
        *seen.entry(resp.status().as_u16()).or_default() += 1;
        assert!(
            matches!(resp.status().as_u16(), 200 | 400 | 413 | 503),
            "unexpected status {}",
            resp.status()
        );
    }
    // The mutations reach both the validation and the persistence paths.
    assert!(seen.get(&400).copied().unwrap_or(0) > 100, "{seen:?}");
    assert!(seen.get(&503).copied().unwrap_or(0) > 10, "{seen:?}");
}

#[tokio::test]
async fn the_token_never_reaches_the_logs() {
    let logs = captured_logs();
    let secret = "s3cr3t-T0KEN-never-logged-7f2a";
    let wrong = "wr0ng-T0KEN-never-logged-9c1b";
    let mut c = config();
    c.token_file = common::token_file(secret);
    let st = state(c);
    let app = router(st.clone());
    for (token, body) in [
        (Some(secret), fixture("webhook-firing-single.json")),
        (Some(secret), b"{broken".to_vec()),
        (Some(wrong), fixture("webhook-firing-single.json")),
        (None, fixture("webhook-firing-single.json")),
    ] {
        send(&app, post(body, token, Some("application/json"))).await;
    }
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.contains("refused a webhook request") && text.contains("webhook request failed"),
        "the requests were logged:\n{text}"
    );
    assert!(!text.contains(secret), "the token leaked into the logs");
    assert!(
        !text.contains(wrong),
        "a presented token leaked into the logs"
    );
    assert!(
        !text.contains("Bearer s3cr3t"),
        "an Authorization header leaked"
    );
}

#[tokio::test]
async fn with_a_certificate_and_key_the_shim_serves_https_only() {
    let dir = common::token_file(TOKEN).parent().unwrap().to_path_buf();
    let (ca, cert, key) = (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(&dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    ]);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext",
        "-out",
        "tls.crt",
    ]);
    let mut c = config();
    c.tls_cert = Some(cert.clone());
    c.tls_key = Some(key);
    let server = salve_webhook::start(c, common::dead_client())
        .await
        .unwrap();
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    let resp = client
        .post(format!("{}/alert", server.url()))
        .header("content-type", "application/json")
        .body(fixture("webhook-firing-single.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", server.addr()))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_captured_alertmanager_request_headers_pass_authentication_and_content_checks() {
    let st = state(config());
    let app = router(st.clone());
    let captured = String::from_utf8(fixture("webhook-request-headers.txt")).unwrap();
    let mut req = Request::post("/alert");
    for line in captured.lines().filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(": ").unwrap();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("host") {
            continue; // describe the captured body, not this one
        }
        req = req.header(name, value);
    }
    let (status, _, v) = send(
        &app,
        req.body(Body::from(fixture("webhook-firing-single.json")))
            .unwrap(),
    )
    .await;
    // Past authentication and every input check: only the (absent) API server is missing.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(st.metrics.received("firing"), 1);
}
