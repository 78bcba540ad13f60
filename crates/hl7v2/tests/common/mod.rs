//! Shared helpers for the corpus tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The test corpus directory.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Every corpus file (relative path, bytes), sorted by path; `SOURCES.md` and dotfiles aside.
pub fn corpus() -> Vec<(String, Vec<u8>)> {
    let root = data_dir();
    let mut stack = vec![root.clone()];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name != "SOURCES.md" && !name.starts_with('.') {
                let rel = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
                files.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// One corpus file's bytes.
pub fn read(rel: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(rel)).unwrap()
}

/// One corpus file as text (all corpus files are UTF-8).
pub fn text(rel: &str) -> String {
    String::from_utf8(read(rel)).unwrap()
}
