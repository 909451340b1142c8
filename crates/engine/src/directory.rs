//! The directory: who exists, which groups they are in, who is an admin, which token hashes
//! map to whom, and out-of-office delegations. Loaded from YAML, with the changes made through
//! the API applied over it (`changes`); read-only to the engine.

mod changes;

pub use changes::{Change, IssuedToken, Refused};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(default)]
    pub attributes: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub user: String,
    /// sha256 of the token, lowercase hex.
    pub sha256: String,
}

/// An out-of-office delegation, in force from `starts` (inclusive) to `ends` (exclusive).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutOfOffice {
    pub from: String,
    pub to: String,
    pub starts: Timestamp,
    pub ends: Timestamp,
    /// Set through the API (which may replace or clear it), not in the file.
    #[serde(skip)]
    pub by_api: bool,
}

/// Whom a token hash belongs to, and for a token issued through the API, what it is.
#[derive(Debug, Clone)]
struct Grant {
    user: String,
    issued: Option<IssuedToken>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryDoc {
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    admins: Vec<String>,
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    #[serde(default)]
    delegations: Vec<OutOfOffice>,
}

/// A delegation chain that comes back to where it started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delegation cycle: {}", chain.join(" -> "))]
pub struct DelegationCycle {
    pub chain: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Directory {
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, Vec<String>>,
    member_of: HashMap<String, Vec<String>>,
    admins: BTreeSet<String>,
    tokens: HashMap<String, Grant>,
    delegations: Vec<OutOfOffice>,
}

impl Directory {
    /// Parses and checks a directory document; every problem is listed.
    pub fn from_yaml(text: &str) -> Result<Directory, Vec<String>> {
        let doc: DirectoryDoc = yaml_serde::from_str(text).map_err(|e| vec![e.to_string()])?;
        Directory::from_doc(doc)
    }

    fn from_doc(doc: DirectoryDoc) -> Result<Directory, Vec<String>> {
        let mut problems = Vec::new();
        let mut users = BTreeMap::new();
        for u in doc.users {
            if let Some(prev) = users.insert(u.id.clone(), u) {
                problems.push(format!("users: `{}` is listed twice", prev.id));
            }
        }
        let known = |id: &str, what: &str, problems: &mut Vec<String>| {
            if !users.contains_key(id) {
                problems.push(format!("{what}: unknown user `{id}`"));
            }
        };
        let mut member_of: HashMap<String, Vec<String>> = HashMap::new();
        for (group, members) in &doc.groups {
            for m in members {
                known(m, &format!("groups.{group}"), &mut problems);
                member_of.entry(m.clone()).or_default().push(group.clone());
            }
        }
        for a in &doc.admins {
            known(a, "admins", &mut problems);
        }
        let mut tokens = HashMap::new();
        for t in doc.tokens {
            known(&t.user, "tokens", &mut problems);
            let hash = t.sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(format!("tokens: the hash for `{}` is not 64 hex digits", t.user));
            }
            tokens.insert(hash, Grant { user: t.user, issued: None });
        }
        for d in &doc.delegations {
            known(&d.from, "delegations", &mut problems);
            known(&d.to, "delegations", &mut problems);
            if d.ends <= d.starts {
                problems.push(format!("delegations: {} -> {} ends before it starts", d.from, d.to));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Directory {
            users,
            groups: doc.groups,
            member_of,
            admins: doc.admins.into_iter().collect(),
            tokens,
            delegations: doc.delegations,
        })
    }

    /// Adds a token for `user` (demo mode); the token itself is not kept, only its hash.
    pub fn add_token(&mut self, user: &str, token: &str) {
        self.tokens.insert(token_hash(token), Grant { user: user.to_string(), issued: None });
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn is_admin(&self, id: &str) -> bool {
        self.admins.contains(id)
    }

    pub fn group(&self, name: &str) -> Option<&[String]> {
        self.groups.get(name).map(Vec::as_slice)
    }

    pub fn groups_of(&self, id: &str) -> &[String] {
        self.member_of.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The user a bearer token belongs to at `now` (a token issued with an expiry stops at it).
    pub fn authenticate_at(&self, token: &str, now: Timestamp) -> Option<&User> {
        let grant = self.tokens.get(&token_hash(token))?;
        if grant.issued.as_ref().and_then(|t| t.expires).is_some_and(|expires| now >= expires) {
            return None;
        }
        self.users.get(&grant.user)
    }

    /// A user as CEL sees it (`requester`, `approver`): id, name, email, groups, manager,
    /// attributes. Unknown users are just an id.
    pub fn as_variable(&self, id: &str) -> Value {
        let user = self.users.get(id);
        json!({
            "id": id,
            "name": user.and_then(|u| u.name.clone()),
            "email": user.and_then(|u| u.email.clone()),
            "groups": self.groups_of(id),
            "manager": user.and_then(|u| u.manager.clone()),
            "attributes": user.map(|u| Value::Object(u.attributes.clone())).unwrap_or_else(|| json!({})),
        })
    }

    /// Follows out-of-office delegations in force at `now` from `id` to the final delegate.
    pub fn final_delegate(&self, id: &str, now: Timestamp) -> Result<String, DelegationCycle> {
        let mut chain = vec![id.to_string()];
        let mut current = id.to_string();
        while let Some(d) = self
            .delegations
            .iter()
            .find(|d| d.from == current && d.starts <= now && now < d.ends)
        {
            if chain.contains(&d.to) {
                chain.push(d.to.clone());
                return Err(DelegationCycle { chain });
            }
            chain.push(d.to.clone());
            current = d.to.clone();
        }
        Ok(current)
    }
}

/// sha256 hex of a bearer token, as stored in the directory.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../../../examples/directory.yaml");

    #[test]
    fn loads_the_demo_directory() {
        let mut d = Directory::from_yaml(DEMO).unwrap();
        assert_eq!(d.group("finance").unwrap(), ["fiona", "frank"]);
        assert!(d.is_admin("root"));
        d.add_token("alice", "alice-token");
        assert_eq!(d.authenticate_at("alice-token", Timestamp::UNIX_EPOCH).unwrap().id, "alice");
        assert!(d.authenticate_at("nope", Timestamp::UNIX_EPOCH).is_none());
    }

    #[test]
    fn refuses_unknown_references() {
        let err = Directory::from_yaml("users: [{id: a}]\ngroups: {g: [b]}\nadmins: [c]\n").unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
    }

    #[test]
    fn follows_delegation_chains_and_detects_cycles() {
        let d = Directory::from_yaml(
            "users: [{id: a}, {id: b}, {id: c}]\ndelegations:\n  - {from: a, to: b, starts: 2026-01-01T00:00:00Z, ends: 2026-03-01T00:00:00Z}\n  - {from: b, to: c, starts: 2026-01-01T00:00:00Z, ends: 2026-03-01T00:00:00Z}\n  - {from: c, to: a, starts: 2026-02-15T00:00:00Z, ends: 2026-03-01T00:00:00Z}\n",
        )
        .unwrap();
        let jan: Timestamp = "2026-01-10T00:00:00Z".parse().unwrap();
        assert_eq!(d.final_delegate("a", jan).unwrap(), "c");
        let dec: Timestamp = "2025-12-10T00:00:00Z".parse().unwrap();
        assert_eq!(d.final_delegate("a", dec).unwrap(), "a");
        let feb: Timestamp = "2026-02-20T00:00:00Z".parse().unwrap();
        assert_eq!(d.final_delegate("b", feb).unwrap_err().chain, ["b", "c", "a", "b"]);
    }
}
