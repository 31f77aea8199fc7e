use std::path::Path;

use super::*;
use crate::identity::Actor;

/// The example SoT with its policies files replaced (paths relative to it).
fn example_with(files: &[(&str, &str)]) -> std::result::Result<crate::sot::Sot, String> {
    let overrides = files
        .iter()
        .map(|(p, t)| (std::path::PathBuf::from(p), t.to_string()))
        .collect();
    crate::sot::load_with(Path::new("sot"), &overrides).map_err(|e| e.to_string())
}

fn person(name: &str) -> Actor {
    Actor::Person {
        name: name.into(),
        key: "test".into(),
    }
}

/// Ask `sot`'s policies whether `actor` may `action` (with `agent`) on `nodes`.
fn ask(
    sot: &crate::sot::Sot,
    actor: &Actor,
    action: &str,
    agent: Option<&str>,
    nodes: &[&str],
) -> Answer {
    let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    sot.policies
        .as_deref()
        .unwrap()
        .decide(
            &Question {
                actor,
                action,
                agent,
                nodes: &nodes,
                context: JobContext::now(nodes.len(), true),
            },
            sot,
        )
        .unwrap()
}

fn ada() -> Actor {
    person("ada")
}

#[test]
fn the_example_policies_pass_their_own_tests() {
    let sot = example_with(&[]).unwrap();
    let policies = sot
        .policies
        .as_deref()
        .expect("the example SoT ships policies");
    assert!(policies.len() >= 8, "{:?}", policies);
    let results = policies.run_tests(&sot);
    assert!(results.len() >= 15);
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_deploy_to_a_mixed_target_is_decided_per_node() {
    let sot = example_with(&[]).unwrap();
    let policies = sot.policies.as_deref().unwrap();
    let answer = ask(
        &sot,
        &person("linus"),
        "deploy",
        Some("invoice-extractor"),
        &["gw-eu-01", "gw-us-01"],
    );
    assert!(!answer.allowed());
    assert!(answer.nodes[0].allowed, "{:?}", answer.nodes[0]);
    let us = &answer.nodes[1];
    assert!(!us.allowed);
    assert!(us.policies.contains(&"model-jurisdiction".to_string()));
    let reason = us.reason(policies);
    assert!(reason.contains("policies/guardrails.cedar:"), "{reason}");
    assert!(reason.contains("may not serve"), "{reason}");
}

#[test]
fn a_policy_that_does_not_parse_is_reported_at_its_line_and_column() {
    let err = example_with(&[(
        "policies/extra.cedar",
        "// one\n@id(\"broken\")\npermit (principal, action, resource) when { principal.nosuch == };\n",
    )])
    .unwrap_err();
    assert!(err.contains("policies/extra.cedar:3:"), "{err}");
}

#[test]
fn strict_validation_refuses_an_unguarded_tag_and_names_the_policy() {
    let err = example_with(&[(
        "policies/extra.cedar",
        "@id(\"unguarded\")\nforbid (principal, action, resource)\nwhen { resource.getTag(\"env\") == \"prod\" };\n",
    )])
    .unwrap_err();
    assert!(err.contains("policies/extra.cedar:"), "{err}");
    assert!(err.contains("unguarded"), "{err}");
}

#[test]
fn a_policy_without_an_id_and_a_duplicate_id_are_errors() {
    let err = example_with(&[(
        "policies/extra.cedar",
        "permit (principal, action, resource);\n\n@id(\"anyone-reads\")\npermit (principal, action, resource);\n",
    )])
    .unwrap_err();
    assert!(err.contains("policies/extra.cedar:1:1"), "{err}");
    assert!(err.contains("has no `@id"), "{err}");
    assert!(err.contains("`anyone-reads` is also used"), "{err}");
}

#[test]
fn a_forbid_that_errors_at_run_time_still_denies() {
    // Overflow is the error strict validation cannot rule out.
    let sot = example_with(&[(
        "policies/extra.cedar",
        "@id(\"overflowing\")\nforbid (principal, action, resource)\nwhen { (context.targets + 1) * 9223372036854775807 > 1 };\n",
    )])
    .unwrap();
    let policies = sot.policies.as_deref().unwrap();
    let answer = ask(&sot, &ada(), "play", None, &["gpu-us-01"]);
    let node = &answer.nodes[0];
    assert!(
        !node.allowed,
        "an erroring forbid must not open a hole: {node:?}"
    );
    assert!(!node.errors.is_empty());
    assert!(node.reason(policies).contains("counts as a denial"));
}

#[test]
fn a_failing_policy_test_names_the_test_and_the_decision() {
    let sot = example_with(&[(
        "policies/tests.toml",
        "[[test]]\nname = \"wrong on purpose\"\nactor = \"grace\"\naction = \"exec\"\nnode = \"gpu-eu-01\"\nexpect = \"allow\"\n",
    )])
    .unwrap();
    let results = sot.policies.as_deref().unwrap().run_tests(&sot);
    assert_eq!(results.len(), 1);
    assert!(!results[0].passed);
    assert_eq!(results[0].line, 3);
    let problem = results[0].problem.as_deref().unwrap();
    assert!(problem.contains("expected allow, got deny"), "{problem}");
}

#[test]
fn a_test_naming_an_unknown_node_is_a_sot_error() {
    let err = example_with(&[(
        "policies/tests.toml",
        "[[test]]\nname = \"t\"\nactor = \"grace\"\naction = \"exec\"\nnode = \"nope\"\nexpect = \"allow\"\n",
    )])
    .unwrap_err();
    assert!(err.contains("policies/tests.toml:5:8"), "{err}");
}

#[test]
fn a_policy_that_names_a_node_is_decided_for_that_node_alone() {
    // gw-eu-01 and gw-eu-02 have the same groups and tags: decisions are
    // shared between such nodes only while no policy can tell them apart.
    let sot = example_with(&[(
        "policies/extra.cedar",
        "@id(\"not-this-one\")\nforbid (principal, action, resource == Maestro::Node::\"gw-eu-02\");\n",
    )])
    .unwrap();
    let answer = ask(
        &sot,
        &person("linus"),
        "deploy",
        Some("invoice-extractor"),
        &["gw-eu-01", "gw-eu-02"],
    );
    assert!(answer.nodes[0].allowed, "{:?}", answer.nodes[0]);
    assert!(!answer.nodes[1].allowed);
    assert_eq!(answer.nodes[1].policies, vec!["not-this-one".to_string()]);
}

#[test]
fn the_approval_rule_is_read_from_maestro_toml_and_bad_values_are_located() {
    let settings = std::fs::read_to_string("sot/maestro.toml").unwrap();
    let sot = example_with(&[(
        "maestro.toml",
        &settings.replace("min_autonomy = \"L4\"", "min_autonomy = \"L3\""),
    )])
    .unwrap();
    assert_eq!(sot.settings.approvals.min_autonomy.0, 3);
    assert_eq!(sot.settings.approvals.quorum, 2);
    let bad = settings
        .replace("quorum = 2", "quorum = 0")
        .replace("expires = \"24h\"", "expires = \"soon\"");
    let err = example_with(&[("maestro.toml", &bad)]).unwrap_err();
    let line = bad.lines().position(|l| l.starts_with("quorum")).unwrap() + 1;
    assert!(err.contains(&format!("maestro.toml:{line}:10")), "{err}");
    assert!(err.contains("1 to 10, not 0"), "{err}");
    assert!(err.contains("not \"soon\""), "{err}");
}
