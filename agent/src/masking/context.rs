//! The masking machinery every session of an agent shares: the hash key,
//! the compiled content detectors, and one catalog per target.

use std::collections::HashMap;
use std::sync::Arc;

use super::catalog::{Catalog, CatalogConfig};
use super::{ColumnPlan, Detectors, HashKey, RowMasker};
use crate::config::AgentConfig;

/// Why masking could not be set up (the agent does not start).
#[derive(Debug, thiserror::Error)]
pub enum MaskingSetupError {
    /// The hash key file.
    #[error("masking.hash_key_file {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A configured pattern does not compile.
    #[error("masking.patterns: {0}")]
    Pattern(String),
    /// A target's credential for its catalog cannot be read.
    #[error("target `{target}`: {message}")]
    Credential {
        /// The target.
        target: String,
        /// What went wrong (never a secret).
        message: String,
    },
}

/// Shared by all sessions of an agent.
#[derive(Debug)]
pub struct Masking {
    key: Arc<HashKey>,
    detectors: Arc<Detectors>,
    catalogs: HashMap<String, Arc<Catalog>>,
}

impl Masking {
    /// Builds it from the agent's configuration (reads the key file and the
    /// targets' credentials; connects to nothing yet).
    pub fn from_config(config: &AgentConfig) -> Result<Self, MaskingSetupError> {
        let settings = &config.masking;
        let key = match &settings.hash_key_file {
            Some(path) => {
                let key_error = |message: String| MaskingSetupError::Key {
                    path: path.display().to_string(),
                    message,
                };
                let bytes = std::fs::read(path).map_err(|e| key_error(e.to_string()))?;
                HashKey::from_bytes(&bytes).map_err(|e| key_error(e.to_string()))?
            }
            None => HashKey::random(),
        };
        let patterns: Vec<(&str, &str)> = settings
            .patterns
            .iter()
            .map(|p| (p.name.as_str(), p.regex.as_str()))
            .collect();
        let detectors =
            Detectors::new(&patterns).map_err(|e| MaskingSetupError::Pattern(e.to_string()))?;
        let mut catalogs = HashMap::new();
        for (name, t) in &config.targets {
            let credential = |message: String| MaskingSetupError::Credential {
                target: name.clone(),
                message,
            };
            // The catalog is read with the agent's own credential: the admin
            // role when there is one, else the static one.
            let (user, password) = match &t.admin {
                Some(admin) => (
                    admin.user.clone(),
                    admin.password().map_err(|e| credential(e.to_string()))?,
                ),
                None => (
                    t.user.clone(),
                    t.password().map_err(|e| credential(e.to_string()))?,
                ),
            };
            let catalog = Catalog::new(CatalogConfig {
                host: t.host.clone(),
                port: t.port,
                database: t.database(name).to_owned(),
                user,
                password,
                max_age: settings.catalog_max_age,
            });
            catalogs.insert(name.clone(), Arc::new(catalog));
        }
        Ok(Self {
            key: Arc::new(key),
            detectors: Arc::new(detectors),
            catalogs,
        })
    }

    /// The catalog of a target.
    pub fn catalog(&self, target: &str) -> Option<Arc<Catalog>> {
        self.catalogs.get(target).cloned()
    }

    /// A row masker for a planned result.
    pub fn row_masker(&self, plan: Vec<ColumnPlan>) -> RowMasker {
        RowMasker::new(plan, self.key.clone(), self.detectors.clone())
    }
}
