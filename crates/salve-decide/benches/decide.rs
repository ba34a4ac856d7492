//! `make bench-decide`: prompt tokens for catalogs of 10, 50 and 200 entries (tiktoken-rs), and
//! the latency of rules-path decisions (p50/p99). Prints a report; asserts nothing.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use prometheus_client::registry::Registry;
use salve_api::Risk;
use salve_decide::prompt::build_prompt;
use salve_decide::redact::Redactor;
use salve_decide::schema::answer_schema;
use salve_decide::testing::{alert, catalog, entry, filesystem_alert, generated_catalog};
use salve_decide::{DecideConfig, DecisionEngine, OutcomeKind, PromptLimits, check_catalogs};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o200k = tiktoken_rs::o200k_base()?;
    let cl100k = tiktoken_rs::cl100k_base()?;
    let redactor = Redactor::with_defaults()?;
    let a = filesystem_alert();

    println!(
        "prompt size for alert {} (system + user + answer schema)",
        a.name
    );
    println!(
        "{:>8} {:>11} {:>14} {:>15} {:>10} {:>16}",
        "entries", "candidates", "o200k tokens", "cl100k tokens", "estimate", "check_catalogs"
    );
    for n in [10usize, 50, 200] {
        let started = Instant::now();
        let report = check_catalogs(&[generated_catalog(n)]);
        let check = started.elapsed();
        let candidates = report.candidates(&a);
        let prompt = build_prompt(&a, &candidates, &redactor, &PromptLimits::default());
        let schema = serde_json::to_string(&answer_schema(&candidates))?;
        let count = |bpe: &tiktoken_rs::CoreBPE| {
            [
                prompt.system.as_str(),
                prompt.user.as_str(),
                schema.as_str(),
            ]
            .iter()
            .map(|t| bpe.encode_with_special_tokens(t).len())
            .sum::<usize>()
        };
        println!(
            "{n:>8} {:>11} {:>14} {:>15} {:>10} {:>13.1} ms",
            candidates.len(),
            count(&o200k),
            count(&cl100k),
            prompt.estimated_tokens(&answer_schema(&candidates)),
            check.as_secs_f64() * 1e3
        );
    }

    // Rules path: one candidate among 201 entries, decided without an LLM.
    let mut tmp = entry(
        "clear_tmp",
        Risk::Low,
        json!({"type": "object", "properties": {"host": {"type": "string", "pattern": "^[a-z0-9.-]+$"}}, "required": ["host"]}),
    );
    tmp.match_.alertnames = vec!["TmpDirFull".into()];
    tmp.target_param = Some("host".into());
    tmp.params_from_labels
        .insert("host".into(), "{{ labels.instance | host }}".into());
    let catalogs = [generated_catalog(200), catalog("tmp", vec![tmp])];
    let report = check_catalogs(&catalogs);
    let tmp_alert = alert(
        "TmpDirFull",
        &[("instance", "web-3:9100"), ("severity", "warning")],
        &[("summary", "/tmp is full")],
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut registry = Registry::default();
    let engine = DecisionEngine::new(DecideConfig::default(), &mut registry)?;
    let now = Timestamp::now();

    let runs = 5000;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let out = runtime.block_on(engine.decide_with(&tmp_alert, &report, now));
        samples.push(started.elapsed());
        assert_eq!(out.kind, OutcomeKind::RulesMatched);
    }
    samples.sort();
    println!();
    println!("rules-path decide_with (201 entries, report reused), {runs} runs:");
    println!(
        "  p50 {}  p99 {}  max {}",
        micros(percentile(&samples, 0.5)),
        micros(percentile(&samples, 0.99)),
        micros(percentile(&samples, 1.0))
    );

    let runs = 2000;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let d = runtime.block_on(engine.decide(&tmp_alert, &catalogs));
        samples.push(started.elapsed());
        assert_eq!(d.playbook.as_deref(), Some("clear_tmp"));
    }
    samples.sort();
    println!(
        "rules-path decide (201 entries, catalogs fingerprinted, report cached), {runs} runs:"
    );
    println!(
        "  p50 {}  p99 {}  max {}",
        micros(percentile(&samples, 0.5)),
        micros(percentile(&samples, 0.99)),
        micros(percentile(&samples, 1.0))
    );
    Ok(())
}
