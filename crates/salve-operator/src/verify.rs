//! Did the alert really clear? Asks, in order: Prometheus (re-evaluating the expression from the
//! alert's generatorURL; an empty result means cleared), then Alertmanager API v2 (is this
//! fingerprint still active?). The shim's resolved mark is read by the state machine itself.

use std::time::Duration;

use salve_api::Incident;
use salve_core::Verification;
use tracing::{info, warn};

/// Which source answered a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The alert's expression, re-evaluated.
    Prometheus,
    /// Alertmanager API v2: is the fingerprint still active?
    Alertmanager,
}

/// A verification verdict, with who gave it and what they saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// What the state machine acts on.
    pub verdict: Verification,
    /// The source that answered (`None`: none could).
    pub source: Option<Source>,
    /// One line for status and Events, e.g. ``Prometheus: `up == 0` returned 0 series``.
    pub detail: String,
}

/// The number of series in a Prometheus instant-query answer. Alerting expressions are
/// vectors; any other answer is not a verdict.
fn series(body: &serde_json::Value) -> Result<usize, String> {
    if body["status"] != "success" {
        return Err(format!("Prometheus answered {}", body["status"]));
    }
    match (
        body["data"]["resultType"].as_str(),
        body["data"]["result"].as_array(),
    ) {
        (Some("vector" | "matrix"), Some(r)) => Ok(r.len()),
        (t, _) => Err(format!(
            "Prometheus answered a {} result, not a vector",
            t.unwrap_or("missing")
        )),
    }
}

/// The verification sources that are configured.
#[derive(Clone, Debug)]
pub struct Verifier {
    http: reqwest::Client,
    prometheus: Option<url::Url>,
    alertmanager: Option<url::Url>,
}

/// The PromQL expression of a Prometheus graph URL (`…/graph?g0.expr=…`).
pub fn expr_from_generator_url(generator: &str) -> Option<String> {
    let url = url::Url::parse(generator).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "g0.expr")
        .map(|(_, v)| v.into_owned())
        .filter(|e| !e.is_empty())
}

/// `path` under `base`, keeping every segment of `base`: a Prometheus or Alertmanager served
/// under a route prefix (`http://host/prometheus`, no trailing slash) is asked at
/// `http://host/prometheus/api/v1/query`, not at `http://host/api/v1/query`.
pub fn endpoint(base: &url::Url, path: &str) -> Result<url::Url, String> {
    let mut base = base.clone();
    base.set_query(None);
    base.set_fragment(None);
    if !base.path().ends_with('/') {
        let dir = format!("{}/", base.path());
        base.set_path(&dir);
    }
    base.join(path.trim_start_matches('/'))
        .map_err(|e| e.to_string())
}

/// A value quoted inside an Alertmanager matcher (`alertname="…"`).
fn matcher_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A request error without its URL (a base URL may carry credentials).
fn http_error(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

impl Verifier {
    /// A verifier with the given sources (either may be absent).
    pub fn new(prometheus: Option<url::Url>, alertmanager: Option<url::Url>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            prometheus,
            alertmanager,
        }
    }

    /// Asks the configured sources; `Unknown` when none could answer.
    pub async fn check(&self, inc: &Incident) -> Verification {
        self.answer(inc).await.verdict
    }

    /// Asks the configured sources, in order, and says which one answered and what it saw
    /// (for the incident's status: an on-call reading "Resolved" wants to know who said so).
    pub async fn answer(&self, inc: &Incident) -> Answer {
        if let (Some(prom), Some(expr)) = (
            &self.prometheus,
            inc.spec
                .alert
                .generator_url
                .as_deref()
                .and_then(expr_from_generator_url),
        ) {
            match self.prometheus_query(prom, &expr).await {
                Ok(series) => {
                    let verdict = if series > 0 {
                        Verification::StillFiring
                    } else {
                        Verification::Cleared
                    };
                    info!(source = %"prometheus", ?verdict, series, "verification answered");
                    return Answer {
                        verdict,
                        source: Some(Source::Prometheus),
                        detail: format!("Prometheus: `{expr}` returned {series} series"),
                    };
                }
                Err(e) => warn!(error = %e, "Prometheus verification failed; trying Alertmanager"),
            }
        }
        if let Some(am) = &self.alertmanager {
            match self.alertmanager_active(am, inc).await {
                Ok(active) => {
                    let verdict = if active {
                        Verification::StillFiring
                    } else {
                        Verification::Cleared
                    };
                    info!(source = %"alertmanager", ?verdict, "verification answered");
                    let fp = &inc.spec.fingerprint;
                    return Answer {
                        verdict,
                        source: Some(Source::Alertmanager),
                        detail: if active {
                            format!("Alertmanager: alert {fp} is still active")
                        } else {
                            format!("Alertmanager: alert {fp} is no longer active")
                        },
                    };
                }
                Err(e) => warn!(error = %e, "Alertmanager verification failed"),
            }
        }
        Answer {
            verdict: Verification::Unknown,
            source: None,
            detail: "no verification source answered".into(),
        }
    }

    /// GET with a query string, failing on a non-2xx status, decoding JSON.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: url::Url,
        query: &[(&str, &str)],
    ) -> Result<T, String> {
        let resp = self
            .http
            .get(url)
            .query(query)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        resp.map_err(http_error)?.json().await.map_err(http_error)
    }

    /// How many series the expression returns now.
    async fn prometheus_query(&self, base: &url::Url, expr: &str) -> Result<usize, String> {
        let url = endpoint(base, "api/v1/query")?;
        let body: serde_json::Value = self.get_json(url, &[("query", expr)]).await?;
        series(&body)
    }

    async fn alertmanager_active(&self, base: &url::Url, inc: &Incident) -> Result<bool, String> {
        let url = endpoint(base, "api/v2/alerts")?;
        let filter = format!("alertname=\"{}\"", matcher_value(&inc.spec.alert.name));
        let alerts: Vec<serde_json::Value> = self
            .get_json(url, &[("active", "true"), ("filter", filter.as_str())])
            .await?;
        Ok(alerts
            .iter()
            .any(|a| a["fingerprint"] == inc.spec.fingerprint.as_str()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_expression_comes_from_the_generator_url() {
        let g = "http://prometheus.monitoring.svc:9090/graph?g0.expr=vector%281%29&g0.tab=1";
        assert_eq!(expr_from_generator_url(g).as_deref(), Some("vector(1)"));
        assert_eq!(expr_from_generator_url("not a url"), None);
        assert_eq!(expr_from_generator_url("http://p/graph?g0.tab=1"), None);
    }

    #[test]
    fn endpoints_keep_the_route_prefix() {
        for (base, want) in [
            ("http://p:9090", "http://p:9090/api/v1/query"),
            ("http://p:9090/", "http://p:9090/api/v1/query"),
            ("http://h/prometheus", "http://h/prometheus/api/v1/query"),
            ("http://h/prometheus/", "http://h/prometheus/api/v1/query"),
            ("http://h/a/b?x=1#f", "http://h/a/b/api/v1/query"),
        ] {
            let base = url::Url::parse(base).unwrap();
            assert_eq!(endpoint(&base, "api/v1/query").unwrap().as_str(), want);
            assert_eq!(endpoint(&base, "/api/v1/query").unwrap().as_str(), want);
        }
    }

    #[test]
    fn matcher_values_are_quoted() {
        assert_eq!(matcher_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(matcher_value("plain"), "plain");
    }

    #[test]
    fn only_a_vector_answer_is_a_verdict() {
        let vector = |n: usize| {
            serde_json::json!({"status": "success", "data": {"resultType": "vector",
                "result": vec![serde_json::json!({"metric": {}, "value": [1, "1"]}); n]}})
        };
        assert_eq!(series(&vector(0)), Ok(0));
        assert_eq!(series(&vector(2)), Ok(2));
        let scalar = serde_json::json!({"status": "success",
            "data": {"resultType": "scalar", "result": [1, "1"]}});
        assert!(series(&scalar).is_err());
        let error = serde_json::json!({"status": "error", "error": "parse error"});
        assert!(series(&error).is_err());
    }
}
