//! Saved filters, kept in a JSON file in the user's config directory
//! (`$XDG_CONFIG_HOME/orca/filters.json`, else `~/.config/orca/filters.json`).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFilter {
    /// The tab it applies to (its title).
    pub tab: String,
    pub query: String,
}

#[derive(Debug, Clone, Default)]
pub struct SavedFilters {
    pub filters: Vec<SavedFilter>,
    path: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    filters: Vec<SavedFilter>,
}

impl SavedFilters {
    /// Where the file lives by default.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|dir| dir.join("orca").join("filters.json"))
    }

    /// Reads the file; a missing file is an empty list, an unreadable one an error that says
    /// which file (the TUI shows it and starts without saved filters; the file is kept).
    pub fn load(path: Option<PathBuf>) -> (Self, Option<String>) {
        let Some(path) = path else {
            return (Self::default(), None);
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<File>(&text) {
                Ok(file) => (
                    Self {
                        filters: file.filters,
                        path: Some(path),
                    },
                    None,
                ),
                Err(e) => (
                    // Not overwritten: saving is off until the file is fixed or removed.
                    Self::default(),
                    Some(format!(
                        "{} is not a saved-filters file ({e}); fix or remove it to save filters",
                        path.display()
                    )),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                Self {
                    filters: Vec::new(),
                    path: Some(path),
                },
                None,
            ),
            Err(e) => (
                Self::default(),
                Some(format!("cannot read {}: {e}", path.display())),
            ),
        }
    }

    pub fn add(&mut self, tab: &str, query: &str) {
        let filter = SavedFilter {
            tab: tab.to_owned(),
            query: query.to_owned(),
        };
        if !self.filters.contains(&filter) {
            self.filters.push(filter);
        }
    }

    pub fn remove(&mut self, index: usize) {
        if index < self.filters.len() {
            self.filters.remove(index);
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes the list (atomically: a temporary file renamed over the old one).
    pub fn save(&self) -> Result<(), SaveError> {
        let Some(path) = &self.path else {
            return Err(SaveError::Off);
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            let text = serde_json::to_string_pretty(&File {
                filters: self.filters.clone(),
            })?;
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|source| SaveError::Write {
            path: path.clone(),
            source,
        })
    }
}

/// Why the saved filters could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("saved filters are off (the filters file could not be read)")]
    Off,
    #[error("cannot save filters to {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_refuses_to_clobber_a_broken_file() {
        let dir = std::env::temp_dir().join(format!("orca-saved-{}", std::process::id()));
        let path = dir.join("filters.json");
        let _ = std::fs::remove_dir_all(&dir);

        let (mut saved, err) = SavedFilters::load(Some(path.clone()));
        assert!(err.is_none());
        saved.add("Containers", "ns:payments cpu>50%");
        saved.add("Containers", "ns:payments cpu>50%");
        saved.save().unwrap();
        let (loaded, _) = SavedFilters::load(Some(path.clone()));
        assert_eq!(loaded.filters.len(), 1);
        assert_eq!(loaded.filters[0].query, "ns:payments cpu>50%");

        std::fs::write(&path, "{not json").unwrap();
        let (broken, err) = SavedFilters::load(Some(path.clone()));
        assert!(err.unwrap().contains("fix or remove it"));
        assert!(broken.save().is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
