//! Changes to the directory made through the API (people, groups, admins, tokens, out of
//! office): each is checked against the directory it applies to, and the directory in force is
//! the file's with every recorded change applied in order.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Directory, OutOfOffice, User};

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Adds a person, or replaces what is known of them; `admin` makes or unmakes an admin.
    PutUser {
        user: User,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin: Option<bool>,
    },
    /// Removes a person, with their group memberships, tokens and delegations.
    RemoveUser { id: String },
    /// Sets a group's members (creating the group).
    PutGroup { id: String, members: Vec<String> },
    RemoveGroup { id: String },
    /// Adds `user` to the existing group `group` (a no-op if a member already).
    JoinGroup { group: String, user: String },
    /// Takes `user` out of `group` (a no-op if not a member).
    LeaveGroup { group: String, user: String },
    /// A token for `user`, kept as its hash only; it stops working at `expires`, if set.
    IssueToken {
        id: String,
        user: String,
        sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<Timestamp>,
    },
    RevokeToken { id: String },
    /// `user` is out of office from `starts` to `ends`, their work going to `to`; replaces any
    /// out-of-office `user` set through the API before.
    SetOutOfOffice { user: String, to: String, starts: Timestamp, ends: Timestamp },
    /// Ends what `SetOutOfOffice` set for `user`.
    ClearOutOfOffice { user: String },
}

/// A token issued through the API, as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub id: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
}

/// Why a change does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no user `{0}`")]
    UnknownUser(String),
    #[error("no group `{0}`")]
    UnknownGroup(String),
    #[error("no token `{0}` issued through the API")]
    UnknownToken(String),
    #[error("{0}")]
    Invalid(String),
}

fn valid_id(what: &str, id: &str) -> Result<(), Refused> {
    let ok = (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok { Ok(()) } else { Err(Refused::Invalid(format!("{what} `{id}` must be 1 to 128 letters, digits, `-`, `_`, `.` or `@`"))) }
}

impl Directory {
    /// Applies `change`, checked against this directory: a refused change changes nothing.
    pub fn apply(&mut self, change: &Change) -> Result<(), Refused> {
        match change {
            Change::PutUser { user, admin } => {
                valid_id("user id", &user.id)?;
                if let Some(m) = &user.manager
                    && m != &user.id
                    && !self.users.contains_key(m)
                {
                    return Err(Refused::UnknownUser(m.clone()));
                }
                self.users.insert(user.id.clone(), user.clone());
                match admin {
                    Some(true) => drop(self.admins.insert(user.id.clone())),
                    Some(false) => drop(self.admins.remove(&user.id)),
                    None => {}
                }
            }
            Change::RemoveUser { id } => {
                if self.users.remove(id).is_none() {
                    return Err(Refused::UnknownUser(id.clone()));
                }
                self.admins.remove(id);
                for members in self.groups.values_mut() {
                    members.retain(|m| m != id);
                }
                self.member_of.remove(id);
                self.tokens.retain(|_, grant| grant.user != *id);
                self.delegations.retain(|d| d.from != *id && d.to != *id);
            }
            Change::PutGroup { id, members } => {
                valid_id("group id", id)?;
                if let Some(unknown) = members.iter().find(|m| !self.users.contains_key(*m)) {
                    return Err(Refused::UnknownUser(unknown.clone()));
                }
                let mut members = members.clone();
                members.sort();
                members.dedup();
                self.groups.insert(id.clone(), members);
                self.index_groups();
            }
            Change::RemoveGroup { id } => {
                if self.groups.remove(id).is_none() {
                    return Err(Refused::UnknownGroup(id.clone()));
                }
                self.index_groups();
            }
            Change::JoinGroup { group, user } | Change::LeaveGroup { group, user } => {
                if !self.users.contains_key(user) {
                    return Err(Refused::UnknownUser(user.clone()));
                }
                let members = self.groups.get_mut(group).ok_or_else(|| Refused::UnknownGroup(group.clone()))?;
                members.retain(|m| m != user);
                if matches!(change, Change::JoinGroup { .. }) {
                    members.push(user.clone());
                    members.sort();
                }
                self.index_groups();
            }
            Change::IssueToken { id, user, sha256, name, expires } => {
                if !self.users.contains_key(user) {
                    return Err(Refused::UnknownUser(user.clone()));
                }
                let hash = sha256.to_ascii_lowercase();
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Refused::Invalid("a token hash is 64 hex digits".into()));
                }
                let issued = IssuedToken { id: id.clone(), user: user.clone(), name: name.clone(), expires: *expires };
                self.tokens.insert(hash, super::Grant { user: user.clone(), issued: Some(issued) });
            }
            Change::RevokeToken { id } => {
                let before = self.tokens.len();
                self.tokens.retain(|_, grant| grant.issued.as_ref().is_none_or(|t| t.id != *id));
                if self.tokens.len() == before {
                    return Err(Refused::UnknownToken(id.clone()));
                }
            }
            Change::SetOutOfOffice { user, to, starts, ends } => {
                for id in [user, to] {
                    if !self.users.contains_key(id) {
                        return Err(Refused::UnknownUser(id.clone()));
                    }
                }
                if user == to {
                    return Err(Refused::Invalid("an out-of-office goes to someone else".into()));
                }
                if ends <= starts {
                    return Err(Refused::Invalid("an out-of-office ends after it starts".into()));
                }
                self.delegations.retain(|d| !(d.from == *user && d.by_api));
                self.delegations.push(OutOfOffice { from: user.clone(), to: to.clone(), starts: *starts, ends: *ends, by_api: true });
            }
            Change::ClearOutOfOffice { user } => {
                if !self.users.contains_key(user) {
                    return Err(Refused::UnknownUser(user.clone()));
                }
                self.delegations.retain(|d| !(d.from == *user && d.by_api));
            }
        }
        Ok(())
    }

    /// The tokens issued through the API, by id.
    pub fn issued_tokens(&self) -> Vec<&IssuedToken> {
        let mut tokens: Vec<&IssuedToken> = self.tokens.values().filter_map(|g| g.issued.as_ref()).collect();
        tokens.sort_by(|a, b| a.id.cmp(&b.id));
        tokens
    }

    /// The out-of-office delegations of `user` (from the file and the API).
    pub fn out_of_office(&self, user: &str) -> Vec<&OutOfOffice> {
        self.delegations.iter().filter(|d| d.from == user).collect()
    }

    /// Every group, with its members.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.groups.iter()
    }

    fn index_groups(&mut self) {
        self.member_of.clear();
        for (group, members) in &self.groups {
            for m in members {
                self.member_of.entry(m.clone()).or_default().push(group.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn person(id: &str) -> Change {
        Change::PutUser { user: User { id: id.into(), name: None, email: None, slack: None, manager: None, attributes: Default::default() }, admin: None }
    }

    #[test]
    fn changes_apply_in_order_and_refusals_change_nothing() {
        let mut d = Directory::from_yaml("users: [{id: ann}, {id: bob}]\ngroups: {ops: [ann]}\n").unwrap();
        d.apply(&person("cy")).unwrap();
        d.apply(&Change::PutGroup { id: "ops".into(), members: vec!["cy".into(), "ann".into()] }).unwrap();
        assert_eq!(d.group("ops").unwrap(), ["ann", "cy"]);
        assert_eq!(d.groups_of("cy"), ["ops"]);
        assert_eq!(d.apply(&Change::PutGroup { id: "ops".into(), members: vec!["zed".into()] }), Err(Refused::UnknownUser("zed".into())));
        assert_eq!(d.group("ops").unwrap(), ["ann", "cy"], "unchanged");
        d.apply(&Change::JoinGroup { group: "ops".into(), user: "bob".into() }).unwrap();
        d.apply(&Change::LeaveGroup { group: "ops".into(), user: "ann".into() }).unwrap();
        assert_eq!(d.group("ops").unwrap(), ["bob", "cy"]);
        assert_eq!(d.apply(&Change::JoinGroup { group: "nope".into(), user: "bob".into() }), Err(Refused::UnknownGroup("nope".into())));
        let hash = super::super::token_hash("cy-secret");
        d.apply(&Change::IssueToken { id: "tok_1".into(), user: "cy".into(), sha256: hash, name: Some("laptop".into()), expires: Some(at("2026-12-31T00:00:00Z")) }).unwrap();
        assert_eq!(d.authenticate_at("cy-secret", at("2026-12-01T00:00:00Z")).unwrap().id, "cy");
        assert!(d.authenticate_at("cy-secret", at("2026-12-31T00:00:00Z")).is_none(), "expired");
        d.apply(&Change::RevokeToken { id: "tok_1".into() }).unwrap();
        assert!(d.authenticate_at("cy-secret", at("2026-12-01T00:00:00Z")).is_none(), "revoked");
        assert_eq!(d.apply(&Change::RevokeToken { id: "tok_1".into() }), Err(Refused::UnknownToken("tok_1".into())));
        d.apply(&Change::SetOutOfOffice { user: "ann".into(), to: "bob".into(), starts: at("2026-12-01T00:00:00Z"), ends: at("2026-12-08T00:00:00Z") }).unwrap();
        assert_eq!(d.final_delegate("ann", at("2026-12-02T00:00:00Z")).unwrap(), "bob");
        d.apply(&Change::ClearOutOfOffice { user: "ann".into() }).unwrap();
        assert_eq!(d.final_delegate("ann", at("2026-12-02T00:00:00Z")).unwrap(), "ann");
        d.apply(&Change::RemoveUser { id: "cy".into() }).unwrap();
        assert_eq!(d.group("ops").unwrap(), ["bob"]);
        assert!(d.groups_of("cy").is_empty());
        let wire = serde_json::to_value(Change::RemoveUser { id: "cy".into() }).unwrap();
        assert_eq!(wire, serde_json::json!({"op": "remove_user", "id": "cy"}));
    }
}
