//! The policy reference (`docs/reference/policy.md`) and the parser stay in step: its field
//! index has a row for every field the parser accepts, and no row for one it does not.

use std::collections::BTreeSet;

use signoff_engine::policy::fields;

const REFERENCE: &str = include_str!("../../../../docs/reference/policy.md");

fn accepted() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |prefix: &str, names: &[&str]| out.extend(names.iter().map(|n| format!("{prefix}{n}")));
    add("", fields::DOCUMENT);
    add("separation_of_duties.", fields::SEPARATION);
    add("resubmission.", fields::RESUBMISSION);
    add("notify.", fields::NOTIFY);
    add("owners.", fields::OWNERS);
    add("steps[].", fields::STEP);
    add("steps[].approvers.", fields::APPROVERS);
    add("steps[].escalation[].", fields::ESCALATION);
    add("steps[].escalation[].to.", fields::APPROVERS);
    add("steps[].edits.", fields::EDITS);
    add("steps[].notify.", fields::NOTIFY);
    out
}

fn documented() -> BTreeSet<String> {
    let index = &REFERENCE[REFERENCE.find("## Field index").expect("a field index section")..];
    let index = &index[..index[3..].find("\n## ").map_or(index.len(), |i| i + 3)];
    index
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(path, _)| path.to_string()))
        .collect()
}

#[test]
fn every_parser_field_is_documented_and_nothing_else() {
    let (accepted, documented) = (accepted(), documented());
    let missing: Vec<_> = accepted.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&accepted).collect();
    assert!(missing.is_empty(), "fields the parser accepts but docs/reference/policy.md lacks: {missing:?}");
    assert!(extra.is_empty(), "fields documented that the parser does not accept: {extra:?}");
}

#[test]
fn the_reference_documents_every_timeout_action() {
    for action in ["approve", "reject", "expire", "escalate"] {
        assert!(REFERENCE.contains(&format!("`{action}`")), "{action}");
    }
}
