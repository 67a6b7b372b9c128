//! Where the rules apply: every Cargo package under the root (a `Cargo.toml` with a
//! `[package]` section, outside `target/` and `.git/`), its name, and the `.rs` files under its
//! `src/` (leaving out packages nested there).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Directories never walked.
pub const SKIP_DIRS: [&str; 2] = ["target", ".git"];

/// The directories of every package under `root`, sorted (a depth-first walk by name).
pub fn find(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    walk(root, &mut found)?;
    Ok(found)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> io::Result<()> {
    if is_package(dir) {
        found.push(dir.to_path_buf());
    }
    for sub in entries(dir)?.0 {
        walk(&sub, found)?;
    }
    Ok(())
}

/// The subdirectories (but [`SKIP_DIRS`]) and the files of `dir`, each sorted by name.
fn entries(dir: &Path) -> io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if !SKIP_DIRS.iter().any(|s| entry.file_name() == *s) {
                dirs.push(path);
            }
        } else {
            files.push(path);
        }
    }
    dirs.sort();
    files.sort();
    Ok((dirs, files))
}

/// Whether `dir` holds a `Cargo.toml` with a `[package]` section.
pub fn is_package(dir: &Path) -> bool {
    fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|text| {
        text.lines()
            .any(|line| section(line).is_some_and(|name| name == "package"))
    })
}

/// The name of a `[section]` line (a trailing comment allowed).
fn section(line: &str) -> Option<&str> {
    let line = line.split('#').next().unwrap_or("").trim();
    line.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// The `name` of the package in `dir` (its directory's name when it has none).
pub fn name(dir: &Path) -> String {
    let fallback = || {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let Ok(text) = fs::read_to_string(dir.join("Cargo.toml")) else {
        return fallback();
    };
    let mut lines = text.lines().skip_while(|l| section(l) != Some("package"));
    lines.next();
    for line in lines.take_while(|l| section(l).is_none()) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "name" {
            return value.trim().trim_matches('"').to_owned();
        }
    }
    fallback()
}

/// The `.rs` files under `pkg/src/`, sorted, leaving out packages nested there.
pub fn source_files(pkg: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let src = pkg.join("src");
    if src.is_dir() {
        collect(&src, &mut out)?;
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let (dirs, files) = entries(dir)?;
    out.extend(
        files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs")),
    );
    for sub in dirs.iter().filter(|d| !is_package(d)) {
        collect(sub, out)?;
    }
    Ok(())
}
