//! Which care level a service is: no standard FHIR code says it, so an operator maps service
//! identifiers (RESH ids, organisation numbers) to levels in a TOML file.

use std::collections::HashMap;
use std::path::Path;

use forlop_domain::CareLevel;
use serde::Deserialize;

use crate::resources::Identifier;

#[derive(Debug, Clone, Default)]
pub struct CareLevels {
    by_identifier: HashMap<(String, String), CareLevel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    service: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    system: String,
    value: String,
    care_level: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CareLevelsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

impl CareLevels {
    pub fn load(path: &Path) -> Result<CareLevels, CareLevelsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| CareLevelsError::Read { path: path.display().to_string(), source })?;
        CareLevels::parse(&text).map_err(|message| CareLevelsError::Parse { path: path.display().to_string(), message })
    }

    pub fn parse(text: &str) -> Result<CareLevels, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut by_identifier = HashMap::new();
        for (i, e) in file.service.into_iter().enumerate() {
            let level = CareLevel::ALL
                .iter()
                .copied()
                .find(|l| l.code() == e.care_level)
                .ok_or_else(|| format!("service[{i}].care_level: {:?} is not a CareLevel", e.care_level))?;
            if by_identifier.insert((e.system.clone(), e.value.clone()), level).is_some() {
                return Err(format!("service[{i}]: {}|{} is mapped twice", e.system, e.value));
            }
        }
        Ok(CareLevels { by_identifier })
    }

    /// The first of `identifiers` the file maps, with its level.
    pub fn find<'a>(&self, identifiers: &'a [Identifier]) -> Option<(&'a Identifier, CareLevel)> {
        identifiers.iter().find_map(|id| {
            let key = (id.system.clone()?, id.value.clone()?);
            self.by_identifier.get(&key).map(|l| (id, *l))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_identifier.is_empty()
    }
}
