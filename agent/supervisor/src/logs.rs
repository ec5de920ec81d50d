//! A task's output in its sandbox: `stdout` and `stderr` files written from the task's pipes
//! and rotated (`stdout`, `stdout.1`, ... `stdout.N`, oldest dropped), like Mesos's
//! logrotate container logger.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write as _},
    path::Path,
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

/// Copies `from` into `<dir>/<name>`, rotating by `rotation`, until `from` ends. The file is
/// made with the first output (a task that writes nothing costs no file: launches of
/// thousands of quiet tasks a second spend their time creating inodes otherwise); the buffer
/// is taken then too.
pub fn pump(mut from: impl Read, dir: &Path, name: &str, rotation: Rotation) -> io::Result<()> {
    let live = dir.join(name);
    let mut first = [0u8; 1];
    if read_some(&mut from, &mut first)? == 0 {
        return Ok(());
    }
    let mut file = open(&live)?;
    let mut written = file.metadata()?.len();
    let mut buf = vec![0u8; 64 << 10];
    buf[0] = first[0];
    let mut pending = 1;
    loop {
        let n = pending + read_some(&mut from, &mut buf[pending..])?;
        pending = 0;
        if n == 0 {
            return Ok(());
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let room = rotation.max_bytes.saturating_sub(written).max(1) as usize;
            let take = chunk.len().min(room);
            file.write_all(&chunk[..take])?;
            written += take as u64;
            chunk = &chunk[take..];
            if written >= rotation.max_bytes {
                drop(file);
                rotate(dir, name, rotation.keep)?;
                file = open(&live)?;
                written = 0;
            }
        }
    }
}

fn read_some(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match from.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn rotate(dir: &Path, name: &str, keep: usize) -> io::Result<()> {
    if keep == 0 {
        return fs::remove_file(dir.join(name));
    }
    let _ = fs::remove_file(dir.join(format!("{name}.{keep}")));
    for i in (1..keep).rev() {
        let _ = fs::rename(
            dir.join(format!("{name}.{i}")),
            dir.join(format!("{name}.{}", i + 1)),
        );
    }
    fs::rename(dir.join(name), dir.join(format!("{name}.1")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_rotates_and_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("orca-sandbox-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..2500u32).map(|i| b'a' + (i / 100) as u8 % 26).collect();
        let rotation = Rotation {
            max_bytes: 1000,
            keep: 1,
        };
        pump(&data[..], &dir, "stdout", rotation).unwrap();
        let live = fs::read(dir.join("stdout")).unwrap();
        let older = fs::read(dir.join("stdout.1")).unwrap();
        assert_eq!(live, &data[2000..]);
        assert_eq!(older, &data[1000..2000]);
        assert!(!dir.join("stdout.2").exists());
        pump(&b""[..], &dir, "stderr", rotation).unwrap();
        assert!(!dir.join("stderr").exists(), "no output, no file");
        fs::remove_dir_all(&dir).unwrap();
    }
}
