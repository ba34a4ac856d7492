//! Parsing, validation and Incident building over every real Alertmanager capture and every
//! kind of bad input, without a cluster.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{fixture, webhook_fixtures};
use salve_api::incident::{MAX_ALERT_PAIRS, MAX_ANNOTATION_VALUE, MAX_LABEL_VALUE};
use salve_api::keys;
use salve_webhook::alertmanager::{self, AlertGroup};
use salve_webhook::build::{self, GroupContext, TRUNCATION_NOTE};
use salve_webhook::payload::{self, Status};
use serde_json::{Value, json};

/// An expected message and the mutation that provokes it.
type Case = (&'static str, fn(&mut Value));

fn group(p: &payload::Payload) -> GroupContext {
    GroupContext {
        receiver: p.receiver.clone(),
        group_key: p.group_key.clone(),
        external_url: p.external_url.clone(),
    }
}

fn invalid(body: &[u8]) -> String {
    match payload::parse(body).and_then(|p| payload::check_all(&p).map(|_| ())) {
        Ok(()) => panic!("accepted: {}", String::from_utf8_lossy(body)),
        Err(e) => e.to_string(),
    }
}

fn mutated(name: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture(name)).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn every_capture_parses_and_every_alert_in_it_validates() {
    for (name, bytes) in webhook_fixtures() {
        let p = payload::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let checked = payload::check_all(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(checked.len(), p.alerts.len(), "{name}");
        assert!(!checked.is_empty(), "{name}");
        for c in &checked {
            let inc = build::incident(c, &group(&p), "ns");
            let n = inc.metadata.name.clone().unwrap();
            assert!(salve_api::names::is_dns1123_label(&n), "{name}: {n}");
            assert!(
                inc.metadata.annotations.is_none(),
                "{name}: nothing in a real capture needs truncating"
            );
        }
    }
}

#[test]
fn a_firing_alert_becomes_an_incident_carrying_the_whole_alert() {
    let p = payload::parse(&fixture("webhook-firing-single.json")).unwrap();
    assert_eq!(p.status, Status::Firing);
    let c = payload::check_all(&p).unwrap().remove(0);
    let inc = build::incident(&c, &group(&p), "salve");
    assert_eq!(
        inc.metadata.name.as_deref(),
        Some(
            salve_api::names::incident_name(
                "NodeFilesystemSpaceFillingUp",
                "0914bba24938a788",
                "2026-11-28T00:11:26.568Z"
            )
            .as_str()
        )
    );
    assert_eq!(inc.metadata.namespace.as_deref(), Some("salve"));
    let labels = inc.metadata.labels.clone().unwrap();
    assert_eq!(
        labels[keys::ALERTNAME_LABEL],
        "NodeFilesystemSpaceFillingUp"
    );
    assert_eq!(labels[keys::FINGERPRINT_LABEL], "0914bba24938a788");
    assert_eq!(labels[keys::MANAGED_BY_LABEL], "salve");
    let s = &inc.spec;
    assert_eq!(s.fingerprint, "0914bba24938a788");
    assert_eq!(s.receiver, "salve");
    assert_eq!(
        s.group_key,
        "{}:{alertname=\"NodeFilesystemSpaceFillingUp\", instance=\"web-3:9100\"}"
    );
    assert_eq!(s.external_url, "http://alertmanager.monitoring.svc:9093");
    assert_eq!(s.alert.name, "NodeFilesystemSpaceFillingUp");
    assert_eq!(s.alert.labels.len(), 7);
    assert_eq!(s.alert.labels["mountpoint"], "/");
    assert_eq!(
        s.alert.annotations["runbook_url"],
        "https://runbooks.prometheus-operator.dev/runbooks/node/nodefilesystemspacefillingup"
    );
    assert_eq!(
        s.alert.generator_url.as_deref(),
        Some("http://prometheus.monitoring.svc:9090/graph?g0.expr=vector%281%29&g0.tab=1")
    );
    assert_eq!(s.alert.starts_at.0.to_string(), "2026-11-28T00:11:26.568Z");
    assert!(!s.dry_run);
}

#[test]
fn the_webhook_and_the_api_v2_name_one_occurrence_the_same() {
    // The webhook sends startsAt with microseconds, the API v2 with milliseconds.
    let p = payload::parse(&fixture("webhook-firing-group-of-3.json")).unwrap();
    let from_webhook = payload::check_all(&p).unwrap();
    let groups: Vec<AlertGroup> =
        serde_json::from_slice(&fixture("api-v2-alert-groups.json")).unwrap();
    let from_api = alertmanager::select_group(groups, "salve", &p.group_labels);
    assert_eq!(from_api.len(), 2);
    for api_alert in from_api {
        let fp = api_alert.fingerprint.clone();
        let raw_start = api_alert.starts_at.clone();
        let a = payload::check_at(api_alert.into_webhook_alert(), "api").unwrap();
        let w = from_webhook
            .iter()
            .find(|w| w.alert.fingerprint == fp)
            .unwrap();
        assert_ne!(w.alert.starts_at, raw_start, "the two encodings differ");
        assert_eq!(build::incident_name(&a), build::incident_name(w), "{fp}");
    }
}

#[test]
fn a_resolved_alert_names_the_incident_its_firing_alert_created() {
    let firing = payload::parse(&fixture("webhook-firing-single.json")).unwrap();
    let resolved = payload::parse(&fixture("webhook-resolved-single.json")).unwrap();
    let f = payload::check_all(&firing).unwrap().remove(0);
    let r = payload::check_all(&resolved).unwrap().remove(0);
    assert_eq!(r.alert.status, Status::Resolved);
    assert_eq!(build::incident_name(&f), build::incident_name(&r));
    assert_eq!(r.alert.ends_at, "2026-11-28T00:16:28.568Z");
    assert!(r.ends_at.is_some());
}

#[test]
fn a_mixed_payload_holds_firing_and_resolved_alerts() {
    let p = payload::parse(&fixture("webhook-mixed-firing-resolved.json")).unwrap();
    let c = payload::check_all(&p).unwrap();
    let statuses: Vec<Status> = c.iter().map(|a| a.alert.status).collect();
    assert_eq!(
        statuses,
        vec![Status::Firing, Status::Resolved, Status::Firing]
    );
    assert_eq!(p.status, Status::Firing);
}

#[test]
fn truncated_captures_say_how_many_alerts_were_left_out() {
    for name in [
        "webhook-firing-truncated-group.json",
        "webhook-resolved-truncated-group.json",
    ] {
        let p = payload::parse(&fixture(name)).unwrap();
        assert_eq!(p.truncated_alerts, 2, "{name}");
        assert_eq!(p.alerts.len(), 5, "{name}");
        assert_eq!(
            p.group_labels,
            BTreeMap::from([
                ("alertname".to_owned(), "SystemdUnitFailed".to_owned()),
                ("instance".to_owned(), "db-1:9100".to_owned())
            ])
        );
    }
}

#[test]
fn the_group_query_filters_on_receiver_and_every_group_label() {
    let base = url::Url::parse("http://am.example:9093/prefix/").unwrap();
    let labels = BTreeMap::from([
        ("alertname".to_owned(), "Disk \"full\"".to_owned()),
        ("instance".to_owned(), "db-1:9100".to_owned()),
    ]);
    let u = alertmanager::groups_url(&base, "team.a", &labels);
    assert_eq!(u.path(), "/prefix/api/v2/alerts/groups");
    let q: Vec<(String, String)> = u.query_pairs().into_owned().collect();
    assert!(
        q.contains(&("receiver".into(), "^(?:team\\.a)$".into())),
        "{q:?}"
    );
    assert!(q.contains(&("filter".into(), "alertname=\"Disk \\\"full\\\"\"".into())));
    assert!(q.contains(&("filter".into(), "instance=\"db-1:9100\"".into())));
    assert!(q.contains(&("silenced".into(), "false".into())));
}

#[test]
fn the_captured_group_list_parses_and_only_the_exact_group_is_kept() {
    let groups: Vec<AlertGroup> =
        serde_json::from_slice(&fixture("api-v2-alert-groups.json")).unwrap();
    assert_eq!(groups.len(), 2);
    let only_name = BTreeMap::from([("alertname".to_owned(), "HostOutOfMemory".to_owned())]);
    assert!(alertmanager::select_group(groups.clone(), "salve", &only_name).is_empty());
    let k8s = BTreeMap::from([("alertname".to_owned(), "KubePodCrashLooping".to_owned())]);
    assert_eq!(
        alertmanager::select_group(groups.clone(), "salve", &k8s).len(),
        1
    );
    assert!(alertmanager::select_group(groups, "other", &k8s).is_empty());
}

#[test]
fn invalid_json_is_refused_as_invalid_json() {
    let msg = invalid(br#"{"receiver": "salve", "#);
    assert!(msg.starts_with("invalid JSON: "), "{msg}");
    let msg = invalid(b"\xff\xfe not json");
    assert!(msg.starts_with("invalid JSON: "), "{msg}");
    let mut trailing = fixture("webhook-firing-single.json");
    trailing.extend_from_slice(b" {}");
    let msg = invalid(&trailing);
    assert!(
        msg.starts_with("invalid JSON: trailing characters"),
        "{msg}"
    );
}

#[test]
fn an_unknown_payload_version_is_refused_naming_the_supported_one() {
    let body = mutated("webhook-firing-single.json", |v| v["version"] = json!("5"));
    assert_eq!(
        invalid(&body),
        "version: unsupported webhook version \"5\" (salve understands version \"4\")"
    );
}

#[test]
fn a_missing_alertname_is_refused_with_its_path() {
    let body = mutated("webhook-firing-truncated-group.json", |v| {
        v["alerts"][3]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("alertname");
    });
    assert_eq!(invalid(&body), "alerts[3].labels.alertname missing");
    let body = mutated("webhook-firing-truncated-group.json", |v| {
        v["alerts"][0]["labels"]["alertname"] = json!(" ");
    });
    assert_eq!(invalid(&body), "alerts[0].labels.alertname is empty");
}

#[test]
fn missing_fields_are_refused_with_their_path() {
    let cases: [Case; 5] = [
        ("alerts[1].fingerprint missing", |v| {
            v["alerts"][1]
                .as_object_mut()
                .unwrap()
                .remove("fingerprint");
        }),
        ("alerts[2].startsAt missing", |v| {
            v["alerts"][2].as_object_mut().unwrap().remove("startsAt");
        }),
        ("alerts[0].labels missing", |v| {
            v["alerts"][0].as_object_mut().unwrap().remove("labels");
        }),
        ("version missing", |v| {
            v.as_object_mut().unwrap().remove("version");
        }),
        ("alerts missing", |v| {
            v.as_object_mut().unwrap().remove("alerts");
        }),
    ];
    for (want, f) in cases {
        let body = mutated("webhook-firing-group-of-3.json", f);
        assert_eq!(invalid(&body), want);
    }
}

#[test]
fn mistyped_fields_are_refused_with_their_path_and_the_expected_type() {
    let cases: [Case; 6] = [
        (
            "truncatedAlerts: invalid type: string \"2\", expected u64",
            |v| v["truncatedAlerts"] = json!("2"),
        ),
        (
            "alerts[1].labels.severity: invalid type: integer `3`, expected a string",
            |v| v["alerts"][1]["labels"]["severity"] = json!(3),
        ),
        (
            "alerts[0].status: unknown variant `exploded`, expected `firing` or `resolved`",
            |v| v["alerts"][0]["status"] = json!("exploded"),
        ),
        ("alerts: invalid type: map, expected a sequence", |v| {
            v["alerts"] = json!({})
        }),
        (
            "alerts[2].annotations: invalid type: string \"x\", expected a map",
            |v| v["alerts"][2]["annotations"] = json!("x"),
        ),
        ("receiver: invalid type: null, expected a string", |v| {
            v["receiver"] = Value::Null
        }),
    ];
    for (want, f) in cases {
        let body = mutated("webhook-firing-group-of-3.json", f);
        let msg = invalid(&body);
        assert!(msg.starts_with(want), "want {want:?}, got {msg:?}");
    }
    assert_eq!(
        invalid(b"[1,2,3]"),
        "payload: expected a JSON object, got an array"
    );
    let msg = invalid(b"\"just a string\"");
    assert!(msg.starts_with("payload: invalid type: string"), "{msg}");
}

#[test]
fn invalid_values_are_refused_with_their_path() {
    let body = mutated("webhook-firing-single.json", |v| {
        v["alerts"][0]["startsAt"] = json!("yesterday")
    });
    assert_eq!(
        invalid(&body),
        "alerts[0].startsAt \"yesterday\" is not an RFC 3339 time"
    );
    let body = mutated("webhook-firing-single.json", |v| {
        v["alerts"][0]["fingerprint"] = json!("not-a-fingerprint")
    });
    assert_eq!(
        invalid(&body),
        "alerts[0].fingerprint \"not-a-fingerprint\" is not 16 lowercase hex digits"
    );
    let body = mutated("webhook-resolved-single.json", |v| {
        v["alerts"][0].as_object_mut().unwrap().remove("endsAt");
    });
    assert_eq!(
        invalid(&body),
        "alerts[0].endsAt missing (required for a resolved alert)"
    );
    let body = mutated("webhook-resolved-single.json", |v| {
        v["alerts"][0]["endsAt"] = json!("soon")
    });
    assert_eq!(
        invalid(&body),
        "alerts[0].endsAt \"soon\" is not an RFC 3339 time"
    );
    // A hostile value is quoted, but cut, in the message.
    let body = mutated("webhook-firing-single.json", |v| {
        v["alerts"][0]["startsAt"] = json!("x".repeat(10_000))
    });
    assert!(invalid(&body).len() < 200);
}

#[test]
fn an_oversized_alert_is_bounded_to_fit_an_incident_and_the_cuts_are_noted() {
    let body = mutated("webhook-firing-single.json", |v| {
        let a = &mut v["alerts"][0];
        a["labels"]["alertname"] = json!(format!("Disk Full 💥 {}", "x".repeat(1000)));
        for i in 0..100 {
            a["labels"][format!("extra_{i:03}")] = json!("v".repeat(2000));
        }
        a["labels"]["k".repeat(300)] = json!("long key");
        a["annotations"]["description"] = json!("é".repeat(100_000));
        a["generatorURL"] = json!(format!("http://p/{}", "q".repeat(9000)));
    });
    let p = payload::parse(&body).unwrap();
    let mut ctx = group(&p);
    ctx.group_key = "g".repeat(5000);
    let c = payload::check_all(&p).unwrap().remove(0);
    let inc = build::incident(&c, &ctx, "salve");
    let s = &inc.spec;
    assert_eq!(s.alert.labels.len(), MAX_ALERT_PAIRS);
    assert!(
        s.alert.labels.contains_key("alertname"),
        "alertname is always kept"
    );
    assert!(s.alert.labels.keys().all(|k| k.len() <= build::MAX_KEY));
    for v in s.alert.labels.values() {
        assert!(v.chars().count() <= 1100, "{}", v.len());
        assert!(v.len() <= MAX_LABEL_VALUE + 40);
    }
    let d = &s.alert.annotations["description"];
    assert!(
        d.ends_with(&format!(
            "…[truncated {} bytes]",
            200_000 - MAX_ANNOTATION_VALUE
        )),
        "{}",
        &d[d.len() - 40..]
    );
    assert!(d.chars().count() <= 4200);
    assert!(s.alert.name.len() <= 253 && s.alert.name.contains("…[truncated "));
    assert!(s.alert.generator_url.as_ref().unwrap().len() <= 4096);
    assert!(s.group_key.len() <= 1024 && s.group_key.ends_with("bytes]"));
    let label = &inc.metadata.labels.as_ref().unwrap()[keys::ALERTNAME_LABEL];
    assert!(
        label.len() <= 63 && label.starts_with("Disk_Full_"),
        "{label}"
    );
    let note = &inc.metadata.annotations.as_ref().unwrap()[TRUNCATION_NOTE];
    for want in [
        "labels:",
        "pair(s) dropped",
        "annotations: 1 value(s) truncated",
        "alertname truncated",
        "generatorURL truncated",
        "groupKey truncated",
        "longer than 253",
    ] {
        assert!(note.contains(want), "{want:?} not in {note}");
    }
    let size = serde_json::to_vec(&inc).unwrap().len();
    assert!(size < 512 * 1024, "{size} bytes");
}
