//! A task's sandbox: its working directory, with `stdout` and `stderr` files the agent writes
//! from the task's pipes and rotates (`stdout`, `stdout.1`, ... `stdout.N`, oldest dropped),
//! like Mesos's logrotate container logger.
use std::path::{Path, PathBuf};

use super::LaunchError;

use tokio::{
    fs::{self, File, OpenOptions},
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated once it reaches this size.
    pub max_bytes: u64,
    /// Rotated files kept besides the live one.
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

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

/// Copies `from` into `<dir>/<name>`, rotating by `rotation`, until `from` ends. The file is
/// made with the first output (a task that writes nothing costs no file: launches of
/// thousands of quiet tasks a second spend their time creating inodes otherwise); the buffer
/// is taken then too.
pub async fn pump(
    mut from: impl AsyncRead + Unpin,
    dir: PathBuf,
    name: &'static str,
    rotation: Rotation,
) -> std::io::Result<()> {
    let live = dir.join(name);
    let mut first = [0u8; 1];
    if from.read(&mut first).await? == 0 {
        return Ok(());
    }
    let mut file = open(&live).await?;
    let mut written = file.metadata().await?.len();
    let mut buf = vec![0u8; 64 << 10];
    buf[0] = first[0];
    let mut pending = 1;
    loop {
        let n = pending + from.read(&mut buf[pending..]).await?;
        pending = 0;
        if n == 0 {
            file.flush().await?;
            return Ok(());
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let room = rotation.max_bytes.saturating_sub(written).max(1) as usize;
            let take = chunk.len().min(room);
            file.write_all(&chunk[..take]).await?;
            written += take as u64;
            chunk = &chunk[take..];
            if written >= rotation.max_bytes {
                file.flush().await?;
                drop(file);
                rotate(&dir, name, rotation.keep).await?;
                file = open(&live).await?;
                written = 0;
            }
        }
    }
}

async fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

async fn rotate(dir: &Path, name: &str, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return fs::remove_file(dir.join(name)).await;
    }
    let _ = fs::remove_file(dir.join(format!("{name}.{keep}"))).await;
    for i in (1..keep).rev() {
        let _ = fs::rename(
            dir.join(format!("{name}.{i}")),
            dir.join(format!("{name}.{}", i + 1)),
        )
        .await;
    }
    fs::rename(dir.join(name), dir.join(format!("{name}.1"))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_rotates_and_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("orca-sandbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..2500u32).map(|i| b'a' + (i / 100) as u8 % 26).collect();
        let rotation = Rotation {
            max_bytes: 1000,
            keep: 1,
        };
        pump(&data[..], dir.clone(), "stdout", rotation)
            .await
            .unwrap();
        let live = std::fs::read(dir.join("stdout")).unwrap();
        let older = std::fs::read(dir.join("stdout.1")).unwrap();
        assert_eq!(live, &data[2000..]);
        assert_eq!(older, &data[1000..2000]);
        assert!(!dir.join("stdout.2").exists());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(path(&dir, "fw", "../etc").is_err());
        assert!(path(&dir, "fw", "t-1").is_ok());
    }
}
