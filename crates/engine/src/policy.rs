//! Policies: the YAML routing language of `policy.md`, parsed into checked, compiled form.
//! Every field is validated now, including those whose behaviour arrives later, and every
//! problem is reported (not just the first) with a path such as `steps.finance.when`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jiff::SignedDuration;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::canonical;
use crate::condition::Condition;
use crate::duration;

/// One problem found in a policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProblem {
    /// Where in the document, e.g. `steps.finance.quorum`; empty for the document itself.
    pub path: String,
    pub message: String,
}

/// A parsed, validated and compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub id: String,
    pub title: Option<String>,
    pub version: u64,
    /// `sha256:…` of the canonical JSON form of the document.
    pub hash: String,
    /// The document as JSON, exactly as written.
    pub source: Value,
    pub context_schema: Option<Schema>,
    pub auto_approve: Vec<Condition>,
    pub expires_in: Option<SignedDuration>,
    pub separation: Separation,
    pub resubmission: Option<Resubmission>,
    /// Who hears of this policy's requests, by default for every step.
    pub notify: NotifyRules,
    /// Who owns the process: they see its statistics and insights (as admins do).
    pub owners: Owners,
    pub steps: Vec<Step>,
}

/// `owners:` of a policy: people, and groups whose members, own it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owners {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `notify:` on a policy or a step: which person channels carry tasks, and a Slack channel to
/// post tasks in instead of messaging each approver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRules {
    /// `slack`, `email`; all configured channels when absent; `[]` for none.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub slack_channel: Option<String>,
}

impl NotifyRules {
    /// These rules with `fallback` filling what they leave open.
    pub fn or(&self, fallback: &NotifyRules) -> NotifyRules {
        NotifyRules {
            channels: self.channels.clone().or_else(|| fallback.channels.clone()),
            slack_channel: self.slack_channel.clone().or_else(|| fallback.slack_channel.clone()),
        }
    }

    pub fn allows(&self, channel: &str) -> bool {
        self.channels.as_ref().is_none_or(|c| c.iter().any(|x| x == channel))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Separation {
    #[serde(default)]
    pub requester_can_approve: bool,
    #[serde(default = "yes")]
    pub one_step_per_approver: bool,
}

fn yes() -> bool {
    true
}

impl Default for Separation {
    fn default() -> Self {
        Separation { requester_can_approve: false, one_step_per_approver: true }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resubmission {
    pub cooldown: Option<SignedDuration>,
    pub max_per_lineage: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub title: Option<String>,
    pub when: Option<Condition>,
    pub reason: Option<String>,
    /// Resolved: an absent `after` has become the previous step (or nothing for the first).
    pub after: Vec<String>,
    pub approvers: ApproverSpec,
    pub eligible_if: Option<Condition>,
    pub quorum: Quorum,
    pub rejections: u32,
    pub sla: Option<SignedDuration>,
    pub on_timeout: TimeoutAction,
    /// With `on_timeout: escalate`, what a timeout does once every level has fired.
    pub on_last_timeout: Option<TimeoutAction>,
    pub escalation: Vec<Escalation>,
    pub remind_every: Option<SignedDuration>,
    pub require_acks: Vec<String>,
    pub edits: Option<EditRules>,
    pub notify: NotifyRules,
}

/// Distinct approvals a step needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Quorum {
    Count(u32),
    #[serde(with = "all_literal")]
    All,
}

/// A quorum as a policy writes it: a number, or `all`.
impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quorum::Count(n) => write!(f, "{n}"),
            Quorum::All => f.write_str("all"),
        }
    }
}

mod all_literal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("all")
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let s = String::deserialize(d)?;
        if s == "all" { Ok(()) } else { Err(serde::de::Error::custom("expected \"all\"")) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutAction {
    Approve,
    Reject,
    #[default]
    Expire,
    /// Fire the next escalation level not yet fired and give the step a new due time; with no
    /// level left, `on_last_timeout` applies.
    Escalate,
}

/// Who may approve: named users, group members, and ids a CEL expression yields.
#[derive(Debug, Clone, Default)]
pub struct ApproverSpec {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub expr: Option<Condition>,
}

#[derive(Debug, Clone)]
pub struct Escalation {
    /// When the level fires after activation; `None` (only with `on_timeout: escalate`): only
    /// when the step times out.
    pub after: Option<SignedDuration>,
    pub to: ApproverSpec,
}

/// Approve-with-edits rules of a step.
#[derive(Debug, Clone)]
pub struct EditRules {
    pub allowed_keys: Vec<String>,
    pub schema: Option<Schema>,
    pub max_diff_chars: Option<usize>,
}

/// A compiled JSON Schema that also honours `errorMessage` (as ajv-errors does): a failure
/// inside a subschema carrying `errorMessage` is reported with that message.
#[derive(Clone)]
pub struct Schema {
    source: Value,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schema({})", self.source)
    }
}

impl Schema {
    pub fn compile(source: &Value) -> Result<Self, String> {
        let validator = jsonschema::validator_for(source).map_err(|e| e.to_string())?;
        Ok(Schema { source: source.clone(), validator: Arc::new(validator) })
    }

    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Every violation, each as `at /path: message`.
    pub fn check(&self, instance: &Value) -> Result<(), Vec<String>> {
        let mut seen = BTreeSet::new();
        let messages: Vec<String> = self
            .validator
            .iter_errors(instance)
            .map(|e| {
                let at = e.instance_path().as_str().to_string();
                let message = self
                    .error_message(e.schema_path().as_str())
                    .unwrap_or_else(|| e.to_string());
                if at.is_empty() { message } else { format!("at {at}: {message}") }
            })
            .filter(|m| seen.insert(m.clone()))
            .collect();
        if messages.is_empty() { Ok(()) } else { Err(messages) }
    }

    /// The nearest `errorMessage` enclosing the failing keyword at `schema_path`.
    fn error_message(&self, schema_path: &str) -> Option<String> {
        let mut parts: Vec<&str> = schema_path.split('/').skip(1).collect();
        while !parts.is_empty() {
            parts.pop();
            let pointer: String = parts.iter().map(|p| format!("/{p}")).collect();
            if let Some(Value::String(m)) =
                self.source.pointer(&pointer).and_then(|s| s.get("errorMessage"))
            {
                return Some(m.clone());
            }
        }
        None
    }
}

impl Policy {
    /// Parses a YAML (or JSON, which is YAML) document.
    pub fn from_yaml(text: &str) -> Result<Policy, Vec<PolicyProblem>> {
        let value: Value = yaml_serde::from_str(text).map_err(|e| {
            vec![PolicyProblem { path: String::new(), message: format!("not valid YAML: {e}") }]
        })?;
        // New documents (files, validation) have the door's nesting limit; a version already
        // stored is compiled from `from_value` whatever it once was let in with.
        let depth = crate::nesting::value_depth(&value);
        if depth > crate::nesting::MAX_DEPTH {
            let message = format!("the document nests {depth} levels deep; at most {} are allowed", crate::nesting::MAX_DEPTH);
            return Err(vec![PolicyProblem { path: String::new(), message }]);
        }
        Policy::from_value(value)
    }

    /// Validates and compiles a document already parsed into JSON.
    pub fn from_value(source: Value) -> Result<Policy, Vec<PolicyProblem>> {
        let mut p = Problems::default();
        let Some(doc) = p.object(&source, "") else {
            return Err(p.0);
        };
        p.known_keys(doc, "", fields::DOCUMENT);
        let id: Option<String> = p.required(doc, "id", "");
        if let Some(id) = &id
            && !valid_id(id) {
                p.push("id", format!("`{id}` must match [a-z0-9][a-z0-9._-]*"));
            }
        let title: Option<String> = p.field(doc, "title", "");
        let _: Option<String> = p.field(doc, "description", "");
        let version: u64 = p.field(doc, "version", "").unwrap_or(1);
        let context_schema = p.schema(doc.get("context_schema"), "context_schema");
        let auto_approve: Vec<Condition> = p
            .field::<Vec<String>>(doc, "auto_approve", "")
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, src)| p.condition(Some(src), &format!("auto_approve[{i}]")))
            .collect();
        let expires_in = p.duration(doc, "expires_in", "");
        let separation: Separation = p.field(doc, "separation_of_duties", "").unwrap_or_default();
        let resubmission = doc.get("resubmission").and_then(|r| {
            let r = p.object(r, "resubmission")?;
            p.known_keys(r, "resubmission", fields::RESUBMISSION);
            let max_per_lineage: Option<u32> = p.field(r, "max_per_lineage", "resubmission");
            if max_per_lineage == Some(0) {
                p.push("resubmission.max_per_lineage", "must be at least 1".into());
            }
            Some(Resubmission { cooldown: p.duration(r, "cooldown", "resubmission"), max_per_lineage })
        });

        let notify = p.notify(doc, "");
        let owners: Owners = p.field(doc, "owners", "").unwrap_or_default();
        let mut steps = Vec::new();
        match doc.get("steps") {
            None => p.push("steps", "is required".into()),
            Some(Value::Array(items)) if items.is_empty() => {
                p.push("steps", "must list at least one step".into())
            }
            Some(Value::Array(items)) => {
                let mut ids = HashMap::new();
                for (i, item) in items.iter().enumerate() {
                    let prev = steps.last().map(|s: &Step| s.id.clone());
                    if let Some(step) = p.step(item, i, prev) {
                        if let Some(first) = ids.insert(step.id.clone(), i) {
                            p.push(
                                &format!("steps[{i}].id"),
                                format!("`{}` is also the id of steps[{first}]", step.id),
                            );
                        }
                        steps.push(step);
                    }
                }
                check_order(&steps, &mut p);
            }
            Some(other) => p.push("steps", format!("must be a list, not {}", crate::condition::json_type(other))),
        }

        if !p.0.is_empty() {
            return Err(p.0);
        }
        Ok(Policy {
            id: id.unwrap_or_default(),
            title,
            version,
            hash: canonical::digest(&source),
            source,
            context_schema,
            auto_approve,
            expires_in,
            separation,
            resubmission,
            notify,
            owners,
            steps,
        })
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Whether `user` owns this policy, by name or through a group.
    pub fn owned_by(&self, user: &str, dir: &crate::Directory) -> bool {
        self.owners.users.iter().any(|u| u == user) || dir.groups_of(user).iter().any(|g| self.owners.groups.contains(g))
    }

    /// What is legal but wrong against `dir`: people and groups the directory lacks, approver
    /// lists and escalation levels that name nobody, levels that fall due at or after the
    /// step's `sla`. Warnings never make a policy invalid.
    pub fn warnings(&self, dir: &crate::directory::Directory) -> Vec<PolicyProblem> {
        let mut out = Vec::new();
        let mut warn = |path: String, message: String| out.push(PolicyProblem { path, message });
        for u in self.owners.users.iter().filter(|u| dir.user(u).is_none()) {
            warn("owners.users".into(), format!("no user `{u}` in the directory"));
        }
        for g in self.owners.groups.iter().filter(|g| dir.group(g).is_none()) {
            warn("owners.groups".into(), format!("no group `{g}` in the directory"));
        }
        for step in &self.steps {
            let path = format!("steps.{}", step.id);
            let who = |spec: &ApproverSpec, at: &str, what: &str, warn: &mut dyn FnMut(String, String)| {
                let mut anyone = spec.expr.is_some();
                for u in &spec.users {
                    match dir.user(u) {
                        Some(_) => anyone = true,
                        None => warn(format!("{at}.users"), format!("no user `{u}` in the directory")),
                    }
                }
                for g in &spec.groups {
                    match dir.group(g) {
                        None => warn(format!("{at}.groups"), format!("no group `{g}` in the directory")),
                        Some([]) => warn(format!("{at}.groups"), format!("group `{g}` has no members")),
                        Some(_) => anyone = true,
                    }
                }
                if !anyone {
                    warn(at.to_string(), format!("{what} nobody in the directory"));
                }
            };
            who(&step.approvers, &format!("{path}.approvers"), "names", &mut warn);
            for (i, level) in step.escalation.iter().enumerate() {
                let at = format!("{path}.escalation[{i}]");
                who(&level.to, &format!("{at}.to"), "escalates to", &mut warn);
                if let (Some(after), Some(sla)) = (level.after, step.sla)
                    && after >= sla
                {
                    let cure = match step.on_timeout {
                        TimeoutAction::Escalate => "the timeout escalates first; leave out `after` to escalate on timeout",
                        _ => "the step times out first, so this level can never help",
                    };
                    warn(
                        format!("{at}.after"),
                        format!("fires {} after activation, at or after the step's sla ({}): {cure}", duration::format(after), duration::format(sla)),
                    );
                }
            }
        }
        out
    }
}

/// `[a-z0-9][a-z0-9._-]*`
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// `after` must name other steps of the policy and must not form a cycle.
fn check_order(steps: &[Step], p: &mut Problems) {
    let index: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    for step in steps {
        for dep in &step.after {
            if dep == &step.id {
                p.push(&format!("steps.{}.after", step.id), "a step cannot wait for itself".into());
            } else if !index.contains_key(dep.as_str()) {
                p.push(&format!("steps.{}.after", step.id), format!("names unknown step `{dep}`"));
            }
        }
    }
    // Depth-first search for a cycle; 0 = unvisited, 1 = on the stack, 2 = done.
    fn visit(i: usize, steps: &[Step], index: &HashMap<&str, usize>, mark: &mut [u8]) -> Option<usize> {
        mark[i] = 1;
        for dep in &steps[i].after {
            if let Some(&j) = index.get(dep.as_str()) {
                if j == i {
                    continue;
                }
                if mark[j] == 1 {
                    return Some(j);
                }
                if mark[j] == 0
                    && let Some(c) = visit(j, steps, index, mark) {
                        return Some(c);
                    }
            }
        }
        mark[i] = 2;
        None
    }
    let mut mark = vec![0u8; steps.len()];
    for i in 0..steps.len() {
        if mark[i] == 0
            && let Some(c) = visit(i, steps, &index, &mut mark) {
                p.push(
                    &format!("steps.{}.after", steps[c].id),
                    "the `after` graph has a cycle through this step".into(),
                );
                return;
            }
    }
}

/// The fields the parser accepts, by mapping; `docs/reference/policy.md` documents each.
pub mod fields {
    pub const DOCUMENT: &[&str] = &[
        "id", "title", "version", "description", "context_schema", "auto_approve", "expires_in",
        "separation_of_duties", "resubmission", "notify", "owners", "steps",
    ];
    pub const OWNERS: &[&str] = &["users", "groups"];
    pub const SEPARATION: &[&str] = &["requester_can_approve", "one_step_per_approver"];
    pub const RESUBMISSION: &[&str] = &["cooldown", "max_per_lineage"];
    pub const NOTIFY: &[&str] = &["channels", "slack_channel"];
    pub const STEP: &[&str] = &[
        "id", "title", "when", "reason", "after", "approvers", "eligible_if", "quorum", "rejections",
        "sla", "on_timeout", "on_last_timeout", "escalation", "remind_every", "require_acks", "edits",
        "notify",
    ];
    pub const APPROVERS: &[&str] = &["users", "groups", "expr"];
    pub const ESCALATION: &[&str] = &["after", "to"];
    pub const EDITS: &[&str] = &["allowed_keys", "schema", "max_diff_chars"];
}

#[derive(Default)]
struct Problems(Vec<PolicyProblem>);

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

impl Problems {
    fn push(&mut self, path: &str, message: String) {
        self.0.push(PolicyProblem { path: path.to_string(), message });
    }

    fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.push(path, format!("must be a mapping, not {}", crate::condition::json_type(other)));
                None
            }
        }
    }

    fn known_keys(&mut self, map: &Map<String, Value>, path: &str, known: &[&str]) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.push(&join(path, key), format!("unknown field (known: {})", known.join(", ")));
            }
        }
    }

    fn field<T: DeserializeOwned>(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<T> {
        let v = map.get(key)?;
        match T::deserialize(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.push(&join(path, key), e.to_string());
                None
            }
        }
    }

    fn required<T: DeserializeOwned>(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<T> {
        if !map.contains_key(key) {
            self.push(&join(path, key), "is required".into());
        }
        self.field(map, key, path)
    }

    fn duration(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<SignedDuration> {
        let text: String = self.field(map, key, path)?;
        duration::parse(&text).map_err(|e| self.push(&join(path, key), e)).ok()
    }

    fn condition(&mut self, source: Option<&String>, path: &str) -> Option<Condition> {
        let source = source?;
        Condition::compile(source)
            .map_err(|e| self.push(path, format!("CEL `{source}` does not compile: {e}")))
            .ok()
    }

    fn schema(&mut self, v: Option<&Value>, path: &str) -> Option<Schema> {
        let v = v?;
        self.object(v, path)?;
        Schema::compile(v).map_err(|e| self.push(path, format!("not a valid JSON Schema: {e}"))).ok()
    }

    fn notify(&mut self, map: &Map<String, Value>, path: &str) -> NotifyRules {
        let rules: NotifyRules = self.field(map, "notify", path).unwrap_or_default();
        for c in rules.channels.iter().flatten() {
            if !["slack", "email"].contains(&c.as_str()) {
                self.push(&join(path, "notify.channels"), format!("unknown channel `{c}` (slack, email)"));
            }
        }
        rules
    }

    fn approvers(&mut self, v: &Value, path: &str) -> Option<ApproverSpec> {
        let map = self.object(v, path)?;
        self.known_keys(map, path, fields::APPROVERS);
        let spec = ApproverSpec {
            users: self.field(map, "users", path).unwrap_or_default(),
            groups: self.field(map, "groups", path).unwrap_or_default(),
            expr: {
                let src: Option<String> = self.field(map, "expr", path);
                self.condition(src.as_ref(), &join(path, "expr"))
            },
        };
        if spec.users.is_empty() && spec.groups.is_empty() && spec.expr.is_none() {
            self.push(path, "names nobody: give users, groups or expr".into());
        }
        Some(spec)
    }

    fn step(&mut self, v: &Value, index: usize, previous: Option<String>) -> Option<Step> {
        let at = format!("steps[{index}]");
        let map = self.object(v, &at)?;
        let id: Option<String> = self.required(map, "id", &at);
        let path = match &id {
            Some(id) if valid_id(id) => format!("steps.{id}"),
            Some(id) => {
                self.push(&format!("{at}.id"), format!("`{id}` must match [a-z0-9][a-z0-9._-]*"));
                at.clone()
            }
            None => at.clone(),
        };
        let path = path.as_str();
        self.known_keys(map, path, fields::STEP);
        let when_src: Option<String> = self.field(map, "when", path);
        let eligible_src: Option<String> = self.field(map, "eligible_if", path);
        let approvers = match map.get("approvers") {
            Some(a) => self.approvers(a, &join(path, "approvers")),
            None => {
                self.push(&join(path, "approvers"), "is required".into());
                None
            }
        };
        let quorum = match map.get("quorum") {
            None => Quorum::Count(1),
            Some(v) => Quorum::deserialize(v).unwrap_or_else(|_| {
                let shown = match v {
                    Value::String(s) => format!("`{s}`"),
                    other => other.to_string(),
                };
                self.push(&join(path, "quorum"), format!("must be a number or \"all\", not {shown}"));
                Quorum::Count(1)
            }),
        };
        if quorum == Quorum::Count(0) {
            self.push(&join(path, "quorum"), "must be at least 1 (or \"all\")".into());
        }
        let rejections: u32 = self.field(map, "rejections", path).unwrap_or(1);
        if rejections == 0 {
            self.push(&join(path, "rejections"), "must be at least 1".into());
        }
        let on_timeout: Option<TimeoutAction> = self.field(map, "on_timeout", path);
        let on_last_timeout: Option<TimeoutAction> = self.field(map, "on_last_timeout", path);
        let escalation = match map.get("escalation") {
            None => Vec::new(),
            Some(Value::Array(levels)) => {
                let mut out: Vec<Escalation> = Vec::new();
                for (i, level) in levels.iter().enumerate() {
                    let lpath = format!("{path}.escalation[{i}]");
                    let Some(lmap) = self.object(level, &lpath) else { continue };
                    self.known_keys(lmap, &lpath, fields::ESCALATION);
                    let after = match lmap.contains_key("after") {
                        true => self.duration(lmap, "after", &lpath).map(Some),
                        false if on_timeout == Some(TimeoutAction::Escalate) => Some(None),
                        false => {
                            self.push(&join(&lpath, "after"), "is required (it may be left out only with `on_timeout: escalate`)".into());
                            None
                        }
                    };
                    let to = match lmap.get("to") {
                        Some(t) => self.approvers(t, &join(&lpath, "to")),
                        None => {
                            self.push(&join(&lpath, "to"), "is required".into());
                            None
                        }
                    };
                    if let (Some(after), Some(to)) = (after, to) {
                        match (out.last().map(|prev| prev.after), after) {
                            (Some(Some(prev)), Some(after)) if prev >= after => {
                                self.push(&join(&lpath, "after"), "levels must be in increasing order of `after`".into())
                            }
                            (Some(None), Some(_)) => self.push(
                                &join(&lpath, "after"),
                                "a level with `after` must come before every level without one".into(),
                            ),
                            _ => {}
                        }
                        out.push(Escalation { after, to });
                    }
                }
                out
            }
            Some(other) => {
                self.push(&join(path, "escalation"), format!("must be a list, not {}", crate::condition::json_type(other)));
                Vec::new()
            }
        };
        let sla = self.duration(map, "sla", path);
        if on_timeout == Some(TimeoutAction::Escalate) {
            if !map.contains_key("sla") {
                self.push(&join(path, "on_timeout"), "`escalate` needs an `sla`: the timeout is what escalates".into());
            }
            if escalation.is_empty() {
                self.push(&join(path, "on_timeout"), "`escalate` needs an `escalation` ladder to escalate to".into());
            }
        }
        match on_last_timeout {
            Some(TimeoutAction::Escalate) => self.push(
                &join(path, "on_last_timeout"),
                "must be approve, reject or expire: it applies when no escalation level is left".into(),
            ),
            Some(_) if on_timeout != Some(TimeoutAction::Escalate) => {
                self.push(&join(path, "on_last_timeout"), "applies only with `on_timeout: escalate`".into())
            }
            _ => {}
        }
        let require_acks: Vec<String> = self.field(map, "require_acks", path).unwrap_or_default();
        let distinct: BTreeSet<&String> = require_acks.iter().collect();
        if distinct.len() != require_acks.len() || require_acks.iter().any(|a| a.is_empty()) {
            self.push(&join(path, "require_acks"), "items must be distinct, non-empty names".into());
        }
        let edits = map.get("edits").and_then(|e| {
            let epath = join(path, "edits");
            let emap = self.object(e, &epath)?;
            self.known_keys(emap, &epath, fields::EDITS);
            let allowed_keys: Vec<String> = self.required(emap, "allowed_keys", &epath).unwrap_or_default();
            if emap.contains_key("allowed_keys") && allowed_keys.is_empty() {
                self.push(&join(&epath, "allowed_keys"), "must list at least one key".into());
            }
            Some(EditRules {
                allowed_keys,
                schema: self.schema(emap.get("schema"), &join(&epath, "schema")),
                max_diff_chars: self.field(emap, "max_diff_chars", &epath),
            })
        });
        let step = Step {
            id: id.clone().unwrap_or_default(),
            title: self.field(map, "title", path),
            when: self.condition(when_src.as_ref(), &join(path, "when")),
            reason: self.field(map, "reason", path),
            after: match map.get("after") {
                None => previous.into_iter().collect(),
                Some(_) => self.field(map, "after", path).unwrap_or_default(),
            },
            approvers: approvers.unwrap_or_default(),
            eligible_if: self.condition(eligible_src.as_ref(), &join(path, "eligible_if")),
            quorum,
            rejections,
            sla,
            on_timeout: on_timeout.unwrap_or_default(),
            on_last_timeout,
            escalation,
            remind_every: self.duration(map, "remind_every", path),
            require_acks,
            edits,
            notify: self.notify(map, path),
        };
        id.map(|_| step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const QUOTE: &str = include_str!("../../../examples/policies/quote-discount.yaml");

    #[test]
    fn parses_the_example_policy() {
        let p = Policy::from_yaml(QUOTE).unwrap();
        assert_eq!(p.id, "quote-discount");
        assert_eq!(p.steps.len(), 3);
        assert_eq!(p.steps[2].after, vec!["manager", "finance"]);
        assert!(p.hash.starts_with("sha256:"));
    }

    #[test]
    fn absent_after_means_previous_step() {
        let p = Policy::from_yaml(
            "id: seq\nsteps:\n  - {id: a, approvers: {users: [x]}}\n  - {id: b, approvers: {users: [y]}}\n",
        )
        .unwrap();
        assert!(p.steps[0].after.is_empty());
        assert_eq!(p.steps[1].after, vec!["a"]);
    }

    #[test]
    fn a_bad_quorum_says_what_is_allowed() {
        for q in ["two", "-1", "1.5", "[2]"] {
            let problems = Policy::from_yaml(&format!("id: q\nsteps: [{{id: a, approvers: {{users: [x]}}, quorum: {q}}}]\n")).unwrap_err();
            assert!(problems[0].message.starts_with("must be a number or \"all\""), "{q}: {problems:?}");
        }
    }

    #[test]
    fn lists_every_problem() {
        let doc = r#"
id: Bad Id
colour: blue
expires_in: 3 weeks
steps:
  - id: a
    when: 'quote.total >'
    approvers: {}
    quorum: 0
    on_timeout: explode
    escalation: [{after: 2h, to: {users: [v]}}, {after: 1h, to: {users: [w]}}]
    edits: {allowed_keys: [], schema: {type: 7}}
  - id: a
    after: [ghost]
    approvers: {users: [x]}
    eligible_if: 'approver.'
"#;
        let problems = Policy::from_yaml(doc).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for expected in [
            "id", "colour", "expires_in", "steps.a.when", "steps.a.approvers", "steps.a.quorum",
            "steps.a.on_timeout", "steps.a.escalation[1].after", "steps.a.edits.allowed_keys",
            "steps.a.edits.schema", "steps[1].id", "steps.a.after", "steps.a.eligible_if",
        ] {
            assert!(paths.contains(&expected), "missing {expected} in {problems:#?}");
        }
        let when = problems.iter().find(|p| p.path == "steps.a.when").unwrap();
        assert!(when.message.contains("quote.total >"), "{}", when.message);
    }

    #[test]
    fn warns_about_what_is_legal_but_wrong() {
        let dir = crate::directory::Directory::from_yaml("users:\n  - {id: mark}\n  - {id: vp}\ngroups:\n  finance: [mark]\n  empty: []\n").unwrap();
        let p = Policy::from_yaml(
            r#"
id: w
steps:
  - id: a
    approvers: {users: [mark, ghost], groups: [sre, empty]}
    sla: 4h
    escalation:
      - {after: 2h, to: {users: [nobody]}}
      - {after: 4h, to: {users: [vp]}}
  - id: b
    approvers: {groups: [finance]}
"#,
        )
        .unwrap();
        let got: Vec<(String, String)> = p.warnings(&dir).into_iter().map(|w| (w.path, w.message)).collect();
        let want = [
            ("steps.a.approvers.users", "no user `ghost` in the directory"),
            ("steps.a.approvers.groups", "no group `sre` in the directory"),
            ("steps.a.approvers.groups", "group `empty` has no members"),
            ("steps.a.escalation[0].to.users", "no user `nobody` in the directory"),
            ("steps.a.escalation[0].to", "escalates to nobody in the directory"),
            ("steps.a.escalation[1].after", "fires 4h after activation, at or after the step's sla (4h): the step times out first, so this level can never help"),
        ];
        assert_eq!(got, want.map(|(p, m)| (p.to_string(), m.to_string())));
        let fine = Policy::from_yaml(QUOTE).unwrap();
        let demo = crate::directory::Directory::from_yaml(include_str!("../../../examples/directory.yaml")).unwrap();
        assert_eq!(fine.warnings(&demo), vec![], "the example policy fits the demo directory");
    }

    #[test]
    fn serde_fields_match_the_field_lists() {
        fn accepts<T: DeserializeOwned>(fields: &[&str]) {
            for f in fields {
                let value = if f.ends_with("channels") { json!([]) } else if f.starts_with("slack") { json!("C1") } else { json!(true) };
                assert!(serde_json::from_value::<T>(json!({ *f: value })).is_ok(), "{f}");
            }
            assert!(serde_json::from_value::<T>(json!({"bogus": 1})).is_err());
        }
        accepts::<Separation>(fields::SEPARATION);
        accepts::<NotifyRules>(fields::NOTIFY);
    }

    #[test]
    fn detects_cycles() {
        let doc = "id: c\nsteps:\n  - {id: a, after: [b], approvers: {users: [x]}}\n  - {id: b, after: [a], approvers: {users: [y]}}\n";
        let problems = Policy::from_yaml(doc).unwrap_err();
        assert!(problems.iter().any(|p| p.message.contains("cycle")), "{problems:?}");
    }

    #[test]
    fn schema_error_message_is_used() {
        let s = Schema::compile(&json!({"type": "object", "properties": {"discount": {
            "type": "number", "maximum": 0.3, "errorMessage": "discount may not exceed 30%"}}}))
        .unwrap();
        assert_eq!(s.check(&json!({"discount": 0.5})).unwrap_err(), vec!["at /discount: discount may not exceed 30%"]);
        assert!(s.check(&json!({"discount": 0.2})).is_ok());
    }

    #[test]
    fn hash_ignores_key_order() {
        let a = Policy::from_value(json!({"id": "x", "steps": [{"id": "s", "approvers": {"users": ["u"]}}]})).unwrap();
        let b = Policy::from_value(json!({"steps": [{"approvers": {"users": ["u"]}, "id": "s"}], "id": "x"})).unwrap();
        assert_eq!(a.hash, b.hash);
    }
}
