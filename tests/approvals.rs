//! Approvals are authenticated by the API server: the ValidatingAdmissionPolicy shipped in
//! charts/salve/files/approval-policy.yaml lets only members of the approver group set
//! salve.dev/approve or salve.dev/cancel, and requires the recorded approver to be the user the
//! API server authenticated. Two real users with client certificates: alice (salve-approvers)
//! and bob (developers).
#![allow(clippy::unwrap_used)]

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use salve_api::Incident;
use salve_tests::{admin, client_for, eventually, install_crds, namespace, yaml};
use serde_json::json;

async fn apply<K>(api: &Api<K>, name: &str, obj: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply("salve-tests").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
}

/// Installs the policy, a binding limited to namespaces labelled for this test, its parameter
/// ConfigMap, and RBAC letting both users patch incidents (RBAC alone would let bob approve).
async fn install_policy(client: &Client, ns: &str) {
    let policy: ValidatingAdmissionPolicy = yaml("charts/salve/files/approval-policy.yaml");
    apply(
        &Api::<ValidatingAdmissionPolicy>::all(client.clone()),
        "salve-approvals",
        serde_json::to_value(&policy).unwrap(),
    )
    .await;
    let nsapi: Api<Namespace> = Api::all(client.clone());
    nsapi
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"salve.dev/approval-test": "true"}}})),
        )
        .await
        .unwrap();
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        "salve-approvals",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "salve-approvals", "namespace": ns},
               "data": {"approverGroup": "salve-approvers"}}),
    )
    .await;
    apply(
        &Api::<ValidatingAdmissionPolicyBinding>::all(client.clone()),
        "salve-approvals-test",
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": "salve-approvals-test"},
            "spec": {
                "policyName": "salve-approvals",
                "validationActions": ["Deny"],
                "paramRef": {"name": "salve-approvals", "parameterNotFoundAction": "Deny"},
                "matchResources": {"namespaceSelector": {"matchLabels": {"salve.dev/approval-test": "true"}}}
            }
        }),
    )
    .await;
    apply(
        &Api::<ClusterRole>::all(client.clone()),
        "salve-incident-editor-test",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "salve-incident-editor-test"},
               "rules": [{"apiGroups": ["salve.dev"], "resources": ["incidents"], "verbs": ["get", "list", "watch", "patch", "update"]}]}),
    )
    .await;
    apply(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        "salve-incident-editor-test",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "salve-incident-editor-test"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "salve-incident-editor-test"},
               "subjects": [
                   {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "salve-approvers"},
                   {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "developers"}]}),
    )
    .await;
}

fn annotate(pairs: &[(&str, &str)]) -> Patch<serde_json::Value> {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    Patch::Merge(json!({"metadata": {"annotations": map}}))
}

fn refusal(r: Result<Incident, kube::Error>) -> String {
    match r {
        Ok(_) => panic!("the API server accepted the change"),
        Err(kube::Error::Api(s)) => format!("{} {}", s.code, s.message),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn only_approvers_may_approve_and_the_approver_is_who_the_api_server_saw() {
    let root = admin().await;
    install_crds(&root).await;
    let ns = namespace(&root, "approvals").await;
    install_policy(&root, &ns).await;
    let mut inc: Incident = yaml("examples/incident.yaml");
    inc.metadata.namespace = Some(ns.clone());
    let name = inc.metadata.name.clone().unwrap();
    Api::<Incident>::namespaced(root.clone(), &ns)
        .create(&PostParams::default(), &inc)
        .await
        .unwrap();

    let bob: Api<Incident> = Api::namespaced(client_for("bob.kubeconfig").await, &ns);
    let alice: Api<Incident> = Api::namespaced(client_for("alice.kubeconfig").await, &ns);
    let pp = PatchParams::default();

    // Policies take effect asynchronously: probe with server-side dry runs (admission runs,
    // nothing is stored) until bob's approval is refused.
    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let bob_approves = annotate(&[
        ("salve.dev/approve", "true"),
        ("salve.dev/approved-by", "bob"),
    ]);
    eventually(30, "the approval policy to be enforced", || async {
        bob.patch(&name, &dry, &bob_approves)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let msg = refusal(bob.patch(&name, &pp, &bob_approves).await);
    assert!(msg.starts_with("403"), "{msg}");
    assert!(msg.contains("only members of group salve-approvers may approve or cancel salve incidents; bob is not"), "{msg}");

    // bob may not cancel either.
    let msg = refusal(
        bob.patch(
            &name,
            &pp,
            &annotate(&[
                ("salve.dev/cancel", "true"),
                ("salve.dev/cancelled-by", "bob"),
            ]),
        )
        .await,
    );
    assert!(msg.contains("bob is not"), "{msg}");

    // alice may not approve in someone else's name, nor without naming herself.
    let msg = refusal(
        alice
            .patch(
                &name,
                &pp,
                &annotate(&[
                    ("salve.dev/approve", "true"),
                    ("salve.dev/approved-by", "bob"),
                ]),
            )
            .await,
    );
    assert!(
        msg.contains("set salve.dev/approved-by=alice together with salve.dev/approve"),
        "{msg}"
    );
    let msg = refusal(
        alice
            .patch(&name, &pp, &annotate(&[("salve.dev/approve", "true")]))
            .await,
    );
    assert!(msg.contains("set salve.dev/approved-by=alice"), "{msg}");

    // alice approves as herself: accepted and recorded.
    let ok = alice
        .patch(
            &name,
            &pp,
            &annotate(&[
                ("salve.dev/approve", "true"),
                ("salve.dev/approved-by", "alice"),
                ("salve.dev/reason", "disk at 98%"),
            ]),
        )
        .await
        .unwrap();
    let ann = ok.metadata.annotations.unwrap();
    assert_eq!(ann["salve.dev/approved-by"], "alice");

    // bob cannot take the approval away or rewrite who gave it, but may edit other annotations.
    let msg = refusal(
        bob.patch(&name, &pp, &annotate(&[("salve.dev/approved-by", "bob")]))
            .await,
    );
    assert!(msg.contains("bob is not"), "{msg}");
    bob.patch(&name, &pp, &annotate(&[("team", "storage")]))
        .await
        .unwrap();
}
