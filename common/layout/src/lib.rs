//! The layout rules CI checks on every Cargo package of the workspace (each `Cargo.toml` with a
//! `[package]` section, outside `target/` and `.git/`), over the files under `<package>/src/`:
//!
//! - a) no import cycle between sibling modules, at any level of nesting: `crate::`, `super::`
//!   and `self::` paths (in `use` trees, grouped or not, inline, and in macro calls) are
//!   resolved to modules, and a reference from module M to module R is an edge between the
//!   children of their lowest common ancestor (a module's own ancestors or descendants are no
//!   edges);
//! - b) no production file over [`MAX_LINES`] lines (what follows the first top-level
//!   `#[cfg(test)]` item does not count, nor does a file that is a `#[cfg(test)] mod x;`);
//! - c) every `.rs` file starts (first non-empty line) with a `//!` module comment.
//!
//! Files are read with syn, so comments, string and char literals never count as paths;
//! `#[cfg(test)]` items and `$crate` in macro definitions are left out. Read in this order:
//! [`packages`] (where the rules apply), [`facts`] (what one file says), [`analyse`] (one
//! package's problems), [`graph`] (cycles), [`report`] (the lines printed), [`selftest`].

pub mod analyse;
pub mod facts;
pub mod graph;
pub mod packages;
pub mod report;
pub mod selftest;

/// Most lines of a production file.
pub const MAX_LINES: usize = 350;

/// Most cycles listed per crate.
pub const CYCLES_SHOWN: usize = 20;

/// A module's path below its crate's root (empty: the root).
pub type ModPath = Vec<String>;

/// `a::b`, or `crate` for the root.
pub fn shown(module: &[String]) -> String {
    match module.is_empty() {
        true => "crate".to_owned(),
        false => module.join("::"),
    }
}
