//! The local control plane really runs Jobs: kube-controller-manager's job controller plus the
//! scheduler and kwok's fake node move a batch/v1 Job to Complete, or to Failed when its pod
//! fails. Later issues (the remediation Jobs) depend on both.
#![allow(clippy::unwrap_used)]

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;
use salve_tests::{admin, eventually, namespace};
use serde_json::json;

fn job(name: &str, fail: bool) -> Job {
    let mut labels = json!({"app.kubernetes.io/managed-by": "salve-tests"});
    if fail {
        // kwok's chaos stage fails the container of pods carrying this label.
        labels["pod-container-running-failed.stage.kwok.x-k8s.io"] = json!("true");
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 120,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "runner", "image": "salve-runner:test", "command": ["true"]}]
                }
            }
        }
    }))
    .unwrap()
}

async fn wait_condition(api: &Api<Job>, name: &str, cond: &str) -> Job {
    eventually(60, &format!("Job {name} to reach {cond}"), || async {
        let j = api.get(name).await.ok()?;
        let done = j
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == cond && c.status == "True");
        done.then_some(j)
    })
    .await
}

#[tokio::test]
async fn a_job_reaches_complete_through_the_job_controller_and_kwok() {
    let client = admin().await;
    let ns = namespace(&client, "job-ok").await;
    let api: Api<Job> = Api::namespaced(client, &ns);
    api.create(&PostParams::default(), &job("remediate-ok", false))
        .await
        .unwrap();
    let j = wait_condition(&api, "remediate-ok", "Complete").await;
    let st = j.status.unwrap();
    assert_eq!(st.succeeded, Some(1));
    assert!(st.completion_time.is_some());
}

#[tokio::test]
async fn a_job_whose_pod_fails_reaches_failed() {
    let client = admin().await;
    let ns = namespace(&client, "job-fail").await;
    let api: Api<Job> = Api::namespaced(client, &ns);
    api.create(&PostParams::default(), &job("remediate-fail", true))
        .await
        .unwrap();
    let j = wait_condition(&api, "remediate-fail", "Failed").await;
    let st = j.status.unwrap();
    assert_eq!(st.failed, Some(1));
    assert_eq!(st.succeeded.unwrap_or(0), 0);
    let failed = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(
        failed.reason.as_deref(),
        Some("BackoffLimitExceeded"),
        "{failed:?}"
    );
}
