//! Deterministic object names. Duplicate deliveries of one alert, and repeated reconciles of
//! one attempt, must produce the same name so the API server collapses them with a 409.

use sha2::{Digest, Sha256};

/// Longest name of an object whose name also becomes a label value (Jobs, Incidents).
pub const MAX_NAME: usize = 63;
const SLUG_MAX: usize = 30;

/// Lowercase DNS-1123 slug of `s`: runs of other characters become one `-`, at most `max`
/// characters, never starting or ending with `-`. Empty input gives `alert`.
pub fn slug(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(max);
    let mut dash = false;
    for c in s.chars() {
        if out.len() >= max {
            break;
        }
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "alert".to_owned()
    } else {
        out
    }
}

fn short_hash(parts: &[&str], hex_len: usize) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut s = String::with_capacity(hex_len);
    for b in digest.iter() {
        if s.len() >= hex_len {
            break;
        }
        s.push_str(&format!("{b:02x}"));
    }
    s.truncate(hex_len);
    s
}

/// Name of the Incident for one alert occurrence:
/// `<alertname-slug>-<fingerprint>-<hash(startsAt)>`, at most 63 characters.
///
/// The same alert re-firing later has a new `startsAt`, hence a new Incident; re-sends of the
/// same occurrence map to the same name. A fingerprint that is not 16 hex digits (never sent by
/// Alertmanager) is hashed so the name stays valid.
pub fn incident_name(alertname: &str, fingerprint: &str, starts_at: &str) -> String {
    let fp = if fingerprint.len() == 16 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        fingerprint.to_ascii_lowercase()
    } else {
        short_hash(&[fingerprint], 16)
    };
    format!(
        "{}-{}-{}",
        slug(alertname, SLUG_MAX),
        fp,
        short_hash(&[starts_at], 8)
    )
}

/// Name of the Job for one attempt of an incident: readable prefix, a hash of the full incident
/// name (so truncation cannot make two incidents collide), and the attempt number.
pub fn job_name(incident: &str, attempt: u32) -> String {
    let suffix = format!("-{}-a{attempt}", short_hash(&[incident], 8));
    let keep = MAX_NAME.saturating_sub(suffix.len()).min(40);
    let prefix: String = incident.chars().take(keep).collect();
    format!("{}{suffix}", prefix.trim_end_matches('-'))
}

/// Whether `s` is a valid DNS-1123 label (what Kubernetes requires of most names).
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_names_are_deterministic_and_valid() {
        let a = incident_name("HighDiskUsage", "1a2b3c4d5e6f7a8b", "2026-11-28T01:00:00Z");
        let b = incident_name("HighDiskUsage", "1a2b3c4d5e6f7a8b", "2026-11-28T01:00:00Z");
        assert_eq!(a, b);
        assert!(a.starts_with("highdiskusage-1a2b3c4d5e6f7a8b-"), "{a}");
        assert!(is_dns1123_label(&a), "{a}");
    }

    #[test]
    fn a_refire_with_a_new_start_gets_a_new_incident() {
        let a = incident_name("X", "1a2b3c4d5e6f7a8b", "2026-11-28T01:00:00Z");
        let b = incident_name("X", "1a2b3c4d5e6f7a8b", "2026-11-28T02:00:00Z");
        assert_ne!(a, b);
    }

    #[test]
    fn hostile_and_long_alertnames_still_give_valid_names() {
        for name in [
            "",
            "---",
            "ÜberAlert💥",
            "a".repeat(500).as_str(),
            "../../etc/passwd",
            "Name With Spaces_and_underscores",
        ] {
            let n = incident_name(name, "ffffffffffffffff", "t");
            assert!(is_dns1123_label(&n), "{name:?} -> {n}");
        }
        let n = incident_name("x", "not-a-fingerprint!", "t");
        assert!(is_dns1123_label(&n), "{n}");
    }

    #[test]
    fn job_names_fit_and_differ_per_attempt_and_incident() {
        let inc = incident_name(&"k".repeat(80), "0123456789abcdef", "t");
        let j1 = job_name(&inc, 1);
        let j2 = job_name(&inc, 2);
        assert_ne!(j1, j2);
        assert!(is_dns1123_label(&j1) && is_dns1123_label(&j2), "{j1} {j2}");
        let other = incident_name(&"k".repeat(80), "0123456789abcdee", "t");
        assert_ne!(job_name(&other, 1), j1);
    }
}
