//! Prompt size, counted with a real tokenizer (tiktoken-rs, o200k_base and cl100k_base, whose
//! BPE tables ship inside the crate): candidate filtering keeps prompts small however large the
//! catalogs grow.

use salve_decide::hygiene::ValidEntry;
use salve_decide::prompt::{Prompt, build_prompt};
use salve_decide::redact::Redactor;
use salve_decide::schema::answer_schema;
use salve_decide::testing::{GENERATED_ALERTNAMES, alert, filesystem_alert, generated_catalog};
use salve_decide::{PromptLimits, check_catalogs};
use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Tokens of everything the model reads: both messages and the answer schema.
fn count(bpe: &CoreBPE, prompt: &Prompt, schema: &Value) -> usize {
    let schema = serde_json::to_string(schema).expect("schema json");
    [
        prompt.system.as_str(),
        prompt.user.as_str(),
        schema.as_str(),
    ]
    .iter()
    .map(|t| bpe.encode_with_special_tokens(t).len())
    .sum()
}

#[test]
fn with_a_200_entry_catalog_the_prompt_for_a_real_alert_stays_under_2000_tokens() {
    let o200k = tiktoken_rs::o200k_base().expect("o200k_base is embedded");
    let cl100k = tiktoken_rs::cl100k_base().expect("cl100k_base is embedded");
    let report = check_catalogs(&[generated_catalog(200)]);
    assert_eq!(
        report.catalogs[0].valid.len(),
        200,
        "{:?}",
        report.catalogs[0].problems
    );
    let a = filesystem_alert();
    let candidates: Vec<&ValidEntry> = report.candidates(&a);
    assert_eq!(
        candidates.len(),
        5,
        "5 of 200 entries match NodeFilesystemSpaceFillingUp"
    );
    let prompt = build_prompt(
        &a,
        &candidates,
        &Redactor::with_defaults().expect("redactor"),
        &PromptLimits::default(),
    );
    let schema = answer_schema(&candidates);
    let tokens = count(&o200k, &prompt, &schema);
    let tokens_cl100k = count(&cl100k, &prompt, &schema);
    println!(
        "200-entry catalog, 5 candidates: {tokens} tokens (o200k_base), {tokens_cl100k} (cl100k_base)"
    );
    assert!(tokens <= 2000, "{tokens} tokens");
    assert!(tokens_cl100k <= 2000, "{tokens_cl100k} tokens");
    // The engine's cheap estimate (used for the per-decision cap) errs on the high side.
    let estimate = prompt.estimated_tokens(&schema) as usize;
    assert!(
        estimate >= tokens && estimate >= tokens_cl100k,
        "estimate {estimate} < {tokens}/{tokens_cl100k}"
    );
}

#[test]
fn every_alert_name_of_the_generated_catalog_gets_a_prompt_under_2000_tokens() {
    let o200k = tiktoken_rs::o200k_base().expect("o200k_base is embedded");
    let report = check_catalogs(&[generated_catalog(200)]);
    let redactor = Redactor::with_defaults().expect("redactor");
    for name in GENERATED_ALERTNAMES {
        let a = alert(
            name,
            &[
                ("instance", "node-17.prod.example.com:9100"),
                ("job", "node"),
                ("severity", "critical"),
                ("namespace", "payments"),
            ],
            &[
                ("summary", "Something on node-17 needs attention."),
                (
                    "description",
                    "The condition has held for 15 minutes on node-17.prod.example.com; see the runbook.",
                ),
                (
                    "runbook_url",
                    "https://runbooks.example.com/alerts/some-alert",
                ),
            ],
        );
        let candidates = report.candidates(&a);
        assert!(
            (5..=6).contains(&candidates.len()),
            "{name}: {} candidates",
            candidates.len()
        );
        let prompt = build_prompt(&a, &candidates, &redactor, &PromptLimits::default());
        let schema = answer_schema(&candidates);
        let tokens = count(&o200k, &prompt, &schema);
        assert!(tokens <= 2000, "{name}: {tokens} tokens");
        assert!(
            prompt.estimated_tokens(&schema) as usize >= tokens,
            "{name}: estimate below the real count"
        );
    }
}
