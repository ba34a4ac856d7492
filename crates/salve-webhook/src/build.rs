//! One alert → one Incident object. Pure: no client, no clock.
//!
//! Alert content is untrusted and unbounded; an Incident is neither. Every string is fitted
//! to the CRD's limits (long values cut with a visible `…[truncated N bytes]` marker, pairs past
//! [`MAX_ALERT_PAIRS`] dropped) and every cut is noted in the
//! [`TRUNCATION_NOTE`] annotation, so the API server never refuses an Incident for its size and
//! a reader can see what was shortened.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use salve_api::incident::{MAX_ALERT_PAIRS, MAX_ANNOTATION_VALUE, MAX_LABEL_VALUE};
use salve_api::{AlertSnapshot, Incident, IncidentSpec, keys};

use crate::payload::CheckedAlert;

/// Annotation listing what the shim shortened or dropped to fit the alert into an Incident.
pub const TRUNCATION_NOTE: &str = "salve.dev/webhook-truncated";

/// Longest label or annotation key kept (Kubernetes' own limit for a qualified name's prefix);
/// longer keys are dropped, since a cut key could collide with another.
pub const MAX_KEY: usize = 253;
/// Schema limits of the other spec strings (see `salve_api::IncidentSpec`).
const MAX_ALERTNAME: usize = 253;
const MAX_RECEIVER: usize = 253;
const MAX_GROUP_KEY: usize = 1024;
const MAX_EXTERNAL_URL: usize = 2048;
const MAX_GENERATOR_URL: usize = 4096;
/// Longest note kept in [`TRUNCATION_NOTE`].
const MAX_NOTE: usize = 2048;

/// The group an alert was delivered in: the part of the payload every Incident records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupContext {
    pub receiver: String,
    pub group_key: String,
    pub external_url: String,
}

/// The Incident's deterministic name: equal for every delivery of one alert occurrence.
pub fn incident_name(alert: &CheckedAlert) -> String {
    salve_api::names::incident_name(
        &alert.alertname,
        &alert.alert.fingerprint,
        &alert.starts_at_key,
    )
}

/// Builds the Incident for one firing alert.
pub fn incident(alert: &CheckedAlert, group: &GroupContext, namespace: &str) -> Incident {
    let mut notes = Vec::new();
    let labels = bound_pairs(&alert.alert.labels, MAX_LABEL_VALUE, "labels", &mut notes);
    let annotations = bound_pairs(
        &alert.alert.annotations,
        MAX_ANNOTATION_VALUE,
        "annotations",
        &mut notes,
    );
    let name = fit(&alert.alertname, MAX_ALERTNAME, "alertname", &mut notes);
    let generator_url = (!alert.alert.generator_url.is_empty()).then(|| {
        fit(
            &alert.alert.generator_url,
            MAX_GENERATOR_URL,
            "generatorURL",
            &mut notes,
        )
    });
    let spec = IncidentSpec {
        fingerprint: alert.alert.fingerprint.clone(),
        alert: AlertSnapshot {
            name,
            labels,
            annotations,
            starts_at: Time(alert.starts_at),
            generator_url,
        },
        receiver: fit(&group.receiver, MAX_RECEIVER, "receiver", &mut notes),
        group_key: fit(&group.group_key, MAX_GROUP_KEY, "groupKey", &mut notes),
        external_url: fit(
            &group.external_url,
            MAX_EXTERNAL_URL,
            "externalURL",
            &mut notes,
        ),
        dry_run: false,
    };
    let mut meta_labels = BTreeMap::new();
    meta_labels.insert(
        keys::ALERTNAME_LABEL.to_owned(),
        label_value(&alert.alertname),
    );
    meta_labels.insert(
        keys::FINGERPRINT_LABEL.to_owned(),
        alert.alert.fingerprint.clone(),
    );
    meta_labels.insert(
        keys::MANAGED_BY_LABEL.to_owned(),
        keys::MANAGED_BY_VALUE.to_owned(),
    );
    let annotations = (!notes.is_empty()).then(|| {
        let mut note = notes.join("; ");
        cut_in_place(&mut note, MAX_NOTE);
        BTreeMap::from([(TRUNCATION_NOTE.to_owned(), note)])
    });
    let mut inc = Incident::new(&incident_name(alert), spec);
    inc.metadata = ObjectMeta {
        name: Some(incident_name(alert)),
        namespace: Some(namespace.to_owned()),
        labels: Some(meta_labels),
        annotations,
        ..ObjectMeta::default()
    };
    inc
}

/// `s` made a valid label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending alphanumeric (other characters become `_`). May be empty.
pub fn label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The truncation marker appended to a value cut by `dropped` bytes.
pub fn marker(dropped: usize) -> String {
    format!("…[truncated {dropped} bytes]")
}

/// `s` cut to at most `keep` bytes (on a character boundary) plus a marker saying how much was
/// dropped. Unchanged when it fits.
pub fn truncate(s: &str, keep: usize) -> (String, Option<usize>) {
    if s.len() <= keep {
        return (s.to_owned(), None);
    }
    let mut cut = keep;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = s.len() - cut;
    (format!("{}{}", &s[..cut], marker(dropped)), Some(dropped))
}

/// `s` fitted into `max` bytes *including* the marker (for fields whose schema limit leaves no
/// room above the kept length).
fn fit(s: &str, max: usize, what: &str, notes: &mut Vec<String>) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let keep = max.saturating_sub(marker(s.len()).len());
    let (v, dropped) = truncate(s, keep);
    if let Some(d) = dropped {
        notes.push(format!("{what} truncated by {d} bytes"));
    }
    v
}

fn cut_in_place(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// At most [`MAX_ALERT_PAIRS`] pairs with keys of at most [`MAX_KEY`] bytes, values cut past
/// `max_value` bytes. `alertname` is always kept first; the rest in key order, so every replica
/// bounds the same alert the same way.
fn bound_pairs(
    pairs: &BTreeMap<String, String>,
    max_value: usize,
    what: &str,
    notes: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut long_keys = 0usize;
    let mut cut_values = Vec::new();
    let mut dropped = Vec::new();
    let ordered = pairs
        .get_key_value("alertname")
        .into_iter()
        .chain(pairs.iter().filter(|(k, _)| k.as_str() != "alertname"));
    for (k, v) in ordered {
        if k.len() > MAX_KEY {
            long_keys += 1;
            continue;
        }
        if out.len() >= MAX_ALERT_PAIRS {
            dropped.push(k.as_str());
            continue;
        }
        let (v, cut) = truncate(v, max_value);
        if let Some(n) = cut {
            cut_values.push(format!("{} by {n} bytes", clip_key(k)));
        }
        out.insert(k.clone(), v);
    }
    if !cut_values.is_empty() {
        notes.push(format!(
            "{what}: {} value(s) truncated ({})",
            cut_values.len(),
            cut_values.join(", ")
        ));
    }
    if !dropped.is_empty() {
        let shown: Vec<String> = dropped.iter().take(5).map(|k| clip_key(k)).collect();
        notes.push(format!(
            "{what}: {} pair(s) dropped past the limit of {MAX_ALERT_PAIRS} ({}{})",
            dropped.len(),
            shown.join(", "),
            if dropped.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    if long_keys > 0 {
        notes.push(format!(
            "{what}: {long_keys} pair(s) dropped for a key longer than {MAX_KEY} bytes"
        ));
    }
    out
}

fn clip_key(k: &str) -> String {
    truncate(k, 40).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_sanitized_to_what_kubernetes_accepts() {
        assert_eq!(
            label_value("NodeFilesystemSpaceFillingUp"),
            "NodeFilesystemSpaceFillingUp"
        );
        assert_eq!(label_value("Disk full: /var"), "Disk_full___var");
        assert_eq!(label_value("💥boom💥"), "boom");
        assert_eq!(label_value("___"), "");
        assert_eq!(label_value(&"a".repeat(100)).len(), 63);
        assert_eq!(label_value(&format!("{}-x", "a".repeat(62))).len(), 62);
    }

    #[test]
    fn truncation_cuts_on_a_character_boundary_and_says_how_much() {
        let (v, d) = truncate("héllo wörld", 2);
        assert_eq!(v, "h…[truncated 12 bytes]");
        assert_eq!(d, Some(12));
        assert_eq!(truncate("short", 10), ("short".to_owned(), None));
    }

    #[test]
    fn fitted_fields_never_exceed_their_limit_even_with_the_marker() {
        let mut notes = Vec::new();
        let long = "x".repeat(10_000);
        let v = fit(&long, 253, "receiver", &mut notes);
        assert!(v.len() <= 253, "{}", v.len());
        assert!(v.contains("…[truncated "));
        assert_eq!(notes.len(), 1);
    }
}
