//! The SoT as Cedar entities: `Person` in their `Team`s, `Node` in its
//! `Group`s with its tags as Cedar tags, `Agent` (autonomy, model, owner
//! team, tags) and `Model` (provider, jurisdictions). Built once per SoT
//! load and checked against the schema.

use std::collections::{BTreeSet, HashSet};
use std::str::FromStr;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use super::NAMESPACE;
use crate::sot::model::Sot;

/// `Maestro::KIND::"id"`.
pub(super) fn uid(kind: &str, id: &str) -> EntityUid {
    let name = EntityTypeName::from_str(&format!("{NAMESPACE}::{kind}"))
        .expect("maestro's entity type names are valid");
    EntityUid::from_type_name_and_id(name, EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_string())
}

/// Every entity of `sot`. Fails only when the SoT holds a value the
/// schema refuses (the caller reports it against the schema file).
pub(super) fn build(
    sot: &Sot,
) -> std::result::Result<Vec<Entity>, Box<cedar_policy::EntityAttrEvaluationError>> {
    let mut out = Vec::new();
    let mut teams = BTreeSet::new();
    for person in sot.people.values() {
        teams.extend(person.teams.iter().cloned());
        let parents: Vec<EntityUid> = person.teams.iter().map(|t| uid("Team", t)).collect();
        out.push(Entity::new_with_tags(
            uid("Person", &person.name),
            [("email".to_string(), string(&person.email))],
            parents,
            [],
        )?);
    }
    // Agents' owners are teams too, even with nobody in them yet.
    teams.extend(sot.agents.values().filter_map(|a| a.owner.clone()));
    for team in &teams {
        out.push(Entity::new_no_attrs(uid("Team", team), HashSet::new()));
    }
    for group in sot.groups.keys() {
        out.push(Entity::new_no_attrs(uid("Group", group), HashSet::new()));
    }
    for node in &sot.nodes {
        let parents: Vec<EntityUid> = node.groups.iter().map(|g| uid("Group", g)).collect();
        let tags: Vec<(String, RestrictedExpression)> = node
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), string(v)))
            .collect();
        out.push(Entity::new_with_tags(
            uid("Node", &node.name),
            [("name".to_string(), string(&node.name))],
            parents,
            tags,
        )?);
    }
    for model in sot.models.values() {
        out.push(Entity::new_with_tags(
            uid("Model", &model.name),
            [
                ("provider".to_string(), string(&model.provider)),
                (
                    "jurisdictions".to_string(),
                    RestrictedExpression::new_set(model.jurisdictions.iter().map(|j| string(j))),
                ),
            ],
            [],
            [],
        )?);
    }
    for agent in sot.agents.values() {
        let mut attrs = vec![
            (
                "autonomy".to_string(),
                RestrictedExpression::new_long(i64::from(agent.autonomy.0)),
            ),
            (
                "model".to_string(),
                RestrictedExpression::new_entity_uid(uid("Model", &agent.model)),
            ),
        ];
        if let Some(owner) = &agent.owner {
            attrs.push((
                "owner".to_string(),
                RestrictedExpression::new_entity_uid(uid("Team", owner)),
            ));
        }
        let tags: Vec<(String, RestrictedExpression)> = agent
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), string(v)))
            .collect();
        out.push(Entity::new_with_tags(
            uid("Agent", &agent.name),
            attrs,
            [],
            tags,
        )?);
    }
    Ok(out)
}
