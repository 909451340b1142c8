//! The catalog: the loaded policies and directory, swapped as a whole on reload so a request
//! never sees half of an update. Without paths it is the built-in example policies and demo
//! directory, with a demo token `<id>-token` for every user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use signoff_engine::{Directory, Policy};

const EXAMPLE_POLICIES: &[(&str, &str)] = &[
    ("quote-discount.yaml", include_str!("../../../examples/policies/quote-discount.yaml")),
    ("prod-deploy.yaml", include_str!("../../../examples/policies/prod-deploy.yaml")),
    ("discount-authority-matrix.yaml", include_str!("../../../examples/policies/discount-authority-matrix.yaml")),
    ("expenses.yaml", include_str!("../../../examples/policies/expenses.yaml")),
];
const DEMO_DIRECTORY: &str = include_str!("../../../examples/directory.yaml");

/// Where policies and the directory come from; `None` means the built-in examples.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub policies: Option<PathBuf>,
    pub directory: Option<PathBuf>,
}

/// A file that could not be loaded, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {}", problems.join("; "))]
pub struct CatalogError {
    pub file: String,
    pub problems: Vec<String>,
}

/// Something legal but wrong in a loaded policy (`Policy::warnings`); it never stops a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogWarning {
    pub file: String,
    pub policy: String,
    /// Where in the policy, e.g. `steps.finance.approvers.groups`.
    pub path: String,
    pub message: String,
}

impl CatalogWarning {
    /// The step a warning is about, if it is about one.
    pub fn step(&self) -> Option<&str> {
        self.path.strip_prefix("steps.").map(|rest| rest.split(['.', '[']).next().unwrap_or(rest))
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub policies: BTreeMap<String, Arc<Policy>>,
    pub directory: Arc<Directory>,
    /// (user, token) pairs generated for the demo directory; empty for a real directory.
    pub demo_tokens: Vec<(String, String)>,
    /// Every loaded policy's warnings against the loaded directory, each logged at load.
    pub warnings: Vec<CatalogWarning>,
}

impl Catalog {
    pub fn load(sources: &Sources) -> Result<Catalog, CatalogError> {
        let mut files: Vec<(String, String)> = Vec::new();
        match &sources.policies {
            None => files.extend(EXAMPLE_POLICIES.iter().map(|(n, t)| (format!("(built-in) {n}"), t.to_string()))),
            Some(dir) => files.extend(read_policy_dir(dir)?),
        }
        let mut policies: BTreeMap<String, Arc<Policy>> = BTreeMap::new();
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        for (file, text) in files {
            let policy = Policy::from_yaml(&text).map_err(|problems| CatalogError {
                file: file.clone(),
                problems: problems.iter().map(|p| format!("{}: {}", if p.path.is_empty() { "(document)" } else { &p.path }, p.message)).collect(),
            })?;
            if let Some(first) = origin.get(&policy.id) {
                return Err(CatalogError { file, problems: vec![format!("policy id `{}` is also defined in {first}", policy.id)] });
            }
            origin.insert(policy.id.clone(), file);
            policies.insert(policy.id.clone(), Arc::new(policy));
        }
        let (mut directory, demo) = match &sources.directory {
            None => (parse_directory("(built-in) directory.yaml", DEMO_DIRECTORY)?, true),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CatalogError { file: path.display().to_string(), problems: vec![e.to_string()] })?;
                (parse_directory(&path.display().to_string(), &text)?, false)
            }
        };
        let mut demo_tokens = Vec::new();
        if demo {
            let ids: Vec<String> = directory.users().map(|u| u.id.clone()).collect();
            for id in ids {
                let token = format!("{id}-token");
                directory.add_token(&id, &token);
                demo_tokens.push((id, token));
            }
        }
        let mut warnings = Vec::new();
        for (id, policy) in &policies {
            let file = origin.get(id).cloned().unwrap_or_default();
            for w in policy.warnings(&directory) {
                let w = CatalogWarning { file: file.clone(), policy: id.clone(), path: w.path, message: w.message };
                tracing::warn!(file = %w.file, policy = %w.policy, step = %w.step().unwrap_or("-"), path = %w.path, problem = %w.message, "policy warning");
                warnings.push(w);
            }
        }
        Ok(Catalog { policies, directory: Arc::new(directory), demo_tokens, warnings })
    }
}

fn parse_directory(file: &str, text: &str) -> Result<Directory, CatalogError> {
    Directory::from_yaml(text).map_err(|problems| CatalogError { file: file.to_string(), problems })
}

/// The policy files of `dir`: its `*.yaml` and `*.yml` files, sorted by name.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    Ok(paths)
}

fn read_policy_dir(dir: &Path) -> Result<Vec<(String, String)>, CatalogError> {
    let paths = policy_files(dir).map_err(|e| CatalogError { file: dir.display().to_string(), problems: vec![e.to_string()] })?;
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| CatalogError { file: p.display().to_string(), problems: vec![e.to_string()] })?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_catalog_loads_with_demo_tokens() {
        let c = Catalog::load(&Sources::default()).unwrap();
        assert_eq!(c.policies.len(), 4);
        assert!(c.demo_tokens.contains(&("alice".into(), "alice-token".into())));
        assert_eq!(c.directory.authenticate_at("mark-token", jiff::Timestamp::UNIX_EPOCH).unwrap().id, "mark");
    }

    #[test]
    fn warnings_name_file_step_and_problem() {
        let c = Catalog::load(&Sources::default()).unwrap();
        assert_eq!(c.warnings, [], "the bundled examples fit the demo directory");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.yaml"), "id: w\nsteps: [{id: ops, approvers: {groups: [sre, ghosts]}}]\n").unwrap();
        let c = Catalog::load(&Sources { policies: Some(dir.path().to_path_buf()), directory: None }).unwrap();
        assert_eq!(c.policies.len(), 1, "a warning never stops a load");
        let w = &c.warnings[0];
        assert!(w.file.ends_with("w.yaml"), "{w:?}");
        assert_eq!((w.step(), w.path.as_str(), w.message.as_str()), (Some("ops"), "steps.ops.approvers.groups", "no group `ghosts` in the directory"));
    }

    #[test]
    fn invalid_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.yaml"), "id: g\nsteps: [{id: a, approvers: {users: [mark]}}]\n").unwrap();
        std::fs::write(dir.path().join("bad.yml"), "id: b\nsteps: [{id: a, approvers: {users: [mark]}, when: '1 +'}]\n").unwrap();
        let err = Catalog::load(&Sources { policies: Some(dir.path().into()), directory: None }).unwrap_err();
        assert!(err.file.ends_with("bad.yml"), "{err}");
        assert!(err.to_string().contains("steps.a.when"), "{err}");
    }
}
