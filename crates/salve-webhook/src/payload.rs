//! The Alertmanager webhook payload (version 4): parsing and validation.
//!
//! Parsing goes through `serde_path_to_error`, so a mistyped or missing field is reported with
//! its path (`alerts[2].startsAt missing`, `truncatedAlerts: invalid type: string "2", expected
//! u64`). Validation then checks what serde cannot: the alertname label, the fingerprint's
//! shape, the timestamps. Every alert of a payload is validated before anything is written, so
//! a bad payload writes nothing.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use crate::error::Reject;

/// The only webhook payload version salve understands.
pub const SUPPORTED_VERSION: &str = "4";

/// Firing or resolved, for a payload or one alert.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    /// The wire name (metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One webhook delivery: a notification for one alert group.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// Payload format version; must be "4".
    pub version: String,
    /// Alertmanager's key of the group.
    pub group_key: String,
    /// How many alerts Alertmanager left out because of the receiver's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// Firing if any alert of the group fires.
    pub status: Status,
    /// The receiver this notification went to.
    pub receiver: String,
    /// The labels the group is grouped by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert of the group has.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert of the group has.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's external URL.
    #[serde(rename = "externalURL", default)]
    pub external_url: String,
    /// The alerts of the group (at most `max_alerts` of them).
    pub alerts: Vec<Alert>,
}

/// One alert as Alertmanager delivers it.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339, as sent.
    pub starts_at: String,
    /// RFC 3339, as sent; `0001-01-01T00:00:00Z` while firing.
    #[serde(default)]
    pub ends_at: String,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    /// Alertmanager's fingerprint of the label set (16 hex digits).
    pub fingerprint: String,
}

/// An alert that passed validation, with the values derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedAlert {
    pub alert: Alert,
    /// The `alertname` label (non-empty).
    pub alertname: String,
    /// `startsAt`, parsed.
    pub starts_at: Timestamp,
    /// `startsAt` in Alertmanager API v2's own format (UTC, millisecond precision): the
    /// webhook sends nanoseconds, the API v2 milliseconds, and both must name one occurrence
    /// the same.
    pub starts_at_key: String,
    /// `endsAt` parsed, for resolved alerts.
    pub ends_at: Option<Timestamp>,
}

/// Parses a request body into a payload, naming the path of any problem.
pub fn parse(body: &[u8]) -> Result<Payload, Reject> {
    // serde would read a struct from an array of its fields in order; a payload is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Reject::Invalid(
            "payload: expected a JSON object, got an array".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let payload: Payload = serde_path_to_error::deserialize(&mut de).map_err(describe)?;
    // Trailing garbage after the object is invalid JSON too.
    de.end().map_err(|e| Reject::Syntax(e.to_string()))?;
    if payload.version != SUPPORTED_VERSION {
        return Err(Reject::Version(payload.version));
    }
    Ok(payload)
}

fn describe(e: serde_path_to_error::Error<serde_json::Error>) -> Reject {
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            Reject::Syntax(inner.to_string())
        }
        serde_json::error::Category::Io | serde_json::error::Category::Data => {
            let msg = inner.to_string();
            // "missing field `x` at line 1 column 9" at path `alerts[3]` reads better as
            // "alerts[3].x missing".
            if let Some(rest) = msg.strip_prefix("missing field `")
                && let Some(end) = rest.find('`')
            {
                let field = &rest[..end];
                return Reject::Invalid(if path == "." {
                    format!("{field} missing")
                } else {
                    format!("{path}.{field} missing")
                });
            }
            if path == "." {
                Reject::Invalid(format!("payload: {msg}"))
            } else {
                Reject::Invalid(format!("{path}: {msg}"))
            }
        }
    }
}

/// Validates one alert (at `index` in the payload, for messages).
pub fn check(alert: Alert, index: usize) -> Result<CheckedAlert, Reject> {
    check_at(alert, &format!("alerts[{index}]"))
}

/// Validates one alert; `at` names it in messages.
pub fn check_at(alert: Alert, at: &str) -> Result<CheckedAlert, Reject> {
    let alertname = match alert.labels.get("alertname") {
        None => return Err(Reject::Invalid(format!("{at}.labels.alertname missing"))),
        Some(n) if n.trim().is_empty() => {
            return Err(Reject::Invalid(format!("{at}.labels.alertname is empty")));
        }
        Some(n) => n.clone(),
    };
    if alert.fingerprint.len() != 16
        || !alert
            .fingerprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Reject::Invalid(format!(
            "{at}.fingerprint {:?} is not 16 lowercase hex digits",
            clip(&alert.fingerprint)
        )));
    }
    let starts_at: Timestamp = alert.starts_at.parse().map_err(|_| {
        Reject::Invalid(format!(
            "{at}.startsAt {:?} is not an RFC 3339 time",
            clip(&alert.starts_at)
        ))
    })?;
    let ends_at = match alert.status {
        Status::Firing => None,
        Status::Resolved => {
            if alert.ends_at.is_empty() {
                return Err(Reject::Invalid(format!(
                    "{at}.endsAt missing (required for a resolved alert)"
                )));
            }
            let t: Timestamp = alert.ends_at.parse().map_err(|_| {
                Reject::Invalid(format!(
                    "{at}.endsAt {:?} is not an RFC 3339 time",
                    clip(&alert.ends_at)
                ))
            })?;
            Some(t)
        }
    };
    Ok(CheckedAlert {
        starts_at_key: millis_key(starts_at),
        alertname,
        starts_at,
        ends_at,
        alert,
    })
}

/// `t` as Alertmanager's API v2 writes it: UTC, exactly three fractional digits, truncated.
pub fn millis_key(t: Timestamp) -> String {
    let ms = t.as_millisecond();
    match Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        // Unreachable for a parsed timestamp; keep the full form rather than fail.
        Err(_) => t.to_string(),
    }
}

/// A value quoted in an error message, cut so a hostile one cannot flood logs or responses.
fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// Validates every alert of a payload; the first problem refuses the whole payload.
pub fn check_all(payload: &Payload) -> Result<Vec<CheckedAlert>, Reject> {
    payload
        .alerts
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, a)| check(a, i))
        .collect()
}
