//! A task's sandbox: its working directory, where its supervisor writes the task's `stdout`
//! and `stderr` with rotation (`stdout`, `stdout.1`, ... `stdout.N`, oldest dropped), like
//! Mesos's logrotate container logger.
use std::path::{Path, PathBuf};

pub use orca_task_supervisor::logs::Rotation;

use super::LaunchError;

/// `<work_dir>/frameworks/<framework>/tasks/<task>`; ids are checked to be one path segment.
pub fn path(work_dir: &Path, framework_id: &str, task_id: &str) -> Result<PathBuf, LaunchError> {
    for (what, id) in [("framework id", framework_id), ("task id", task_id)] {
        if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
            return Err(LaunchError::BadId {
                what,
                id: id.to_owned(),
            });
        }
    }
    Ok(work_dir
        .join("frameworks")
        .join(framework_id)
        .join("tasks")
        .join(task_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_one_directory() {
        let dir = Path::new("/w");
        assert!(path(dir, "fw", "../etc").is_err());
        assert!(path(dir, "fw", "..").is_err());
        assert!(path(dir, "", "t").is_err());
        assert_eq!(
            path(dir, "fw", "t-1").unwrap(),
            PathBuf::from("/w/frameworks/fw/tasks/t-1")
        );
    }
}
