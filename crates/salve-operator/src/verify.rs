//! Did the alert really clear? Asks, in order: Prometheus (re-evaluating the expression from the
//! alert's generatorURL; an empty result means cleared), then Alertmanager API v2 (is this
//! fingerprint still active?). The shim's resolved mark is read by the state machine itself.

use std::time::Duration;

use salve_api::Incident;
use salve_core::Verification;
use tracing::warn;

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
        if let (Some(prom), Some(expr)) = (
            &self.prometheus,
            inc.spec
                .alert
                .generator_url
                .as_deref()
                .and_then(expr_from_generator_url),
        ) {
            match self.prometheus_query(prom, &expr).await {
                Ok(v) => return v,
                Err(e) => warn!(error = %e, "Prometheus verification failed; trying Alertmanager"),
            }
        }
        if let Some(am) = &self.alertmanager {
            match self.alertmanager_active(am, inc).await {
                Ok(v) => return v,
                Err(e) => warn!(error = %e, "Alertmanager verification failed"),
            }
        }
        Verification::Unknown
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
        resp.map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())
    }

    async fn prometheus_query(&self, base: &url::Url, expr: &str) -> Result<Verification, String> {
        let url = base.join("api/v1/query").map_err(|e| e.to_string())?;
        let body: serde_json::Value = self.get_json(url, &[("query", expr)]).await?;
        if body["status"] != "success" {
            return Err(format!("Prometheus answered {}", body["status"]));
        }
        let firing = body["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        Ok(if firing {
            Verification::StillFiring
        } else {
            Verification::Cleared
        })
    }

    async fn alertmanager_active(
        &self,
        base: &url::Url,
        inc: &Incident,
    ) -> Result<Verification, String> {
        let url = base.join("api/v2/alerts").map_err(|e| e.to_string())?;
        let filter = format!("alertname=\"{}\"", inc.spec.alert.name.replace('"', "\\\""));
        let alerts: Vec<serde_json::Value> = self
            .get_json(url, &[("active", "true"), ("filter", filter.as_str())])
            .await?;
        let still = alerts
            .iter()
            .any(|a| a["fingerprint"] == inc.spec.fingerprint.as_str());
        Ok(if still {
            Verification::StillFiring
        } else {
            Verification::Cleared
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expression_comes_from_the_generator_url() {
        let g = "http://prometheus.monitoring.svc:9090/graph?g0.expr=vector%281%29&g0.tab=1";
        assert_eq!(expr_from_generator_url(g).as_deref(), Some("vector(1)"));
        assert_eq!(expr_from_generator_url("not a url"), None);
        assert_eq!(expr_from_generator_url("http://p/graph?g0.tab=1"), None);
    }
}
