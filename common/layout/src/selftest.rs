//! The checker against small trees with known answers (`check-layout --self-test`, and a unit
//! test): cycles through grouped `use` trees, `super::super` inline paths, inline modules and
//! macro calls are found; comments, strings, `$crate`, root items and test code make none;
//! nested and `target/` packages, the line count's test tail and unparsable files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::analyse::{analyse, Analysis};
use crate::{packages, shown, MAX_LINES};

const TOML: &str = "[package]\nname = \"p\"\n";

/// Runs every case; `Err` says which expectation failed.
pub fn run() -> Result<String, String> {
    cycles_are_found()?;
    nothing_else_is_an_edge()?;
    lines_are_counted_to_the_test_tail()?;
    Ok("check-layout: self-test passed".to_owned())
}

fn base() -> BTreeMap<&'static str, String> {
    [
        ("p/Cargo.toml", TOML.to_owned()),
        (
            "p/src/lib.rs",
            "//! root\npub mod a;\npub mod b;\npub mod c;\npub struct Root;\n".to_owned(),
        ),
        (
            "p/src/b/mod.rs",
            "//! b\npub mod inner;\npub mod x;\npub mod y;\n".to_owned(),
        ),
        ("p/src/b/x.rs", "//! x\nuse super::y::T;\n".to_owned()),
        ("p/src/c.rs", "//! c\n".to_owned()),
        ("p/target/q/Cargo.toml", TOML.to_owned()),
        (
            "p/nested/Cargo.toml",
            "[package]\nname = \"nested\"\n".to_owned(),
        ),
        ("p/nested/src/lib.rs", "fn f() {}\n".to_owned()),
    ]
    .into_iter()
    .collect()
}

/// A temporary tree of `files` (path below the tree, text), `changes` replacing or adding.
fn tree(changes: &[(&'static str, String)]) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("check-layout-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut files = base();
    files.extend(changes.iter().cloned());
    for (rel, text) in files {
        let path = dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

fn analysed(dir: &Path, pkg: &str) -> Result<Analysis, String> {
    analyse(&dir.join(pkg)).map_err(|e| e.to_string())
}

fn cycles(a: &Analysis) -> Vec<Vec<String>> {
    let all = a.cycles.iter().flat_map(|c| c.cycles.iter());
    all.map(|c| c.iter().map(|m| shown(m)).collect()).collect()
}

fn names(files: &[(PathBuf, impl Sized)]) -> Vec<String> {
    let name = |f: &PathBuf| f.file_name().map(|n| n.to_string_lossy().into_owned());
    files.iter().filter_map(|(f, _)| name(f)).collect()
}

fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    match got == want {
        true => Ok(()),
        false => Err(format!("{what}: got {got:?}, expected {want:?}")),
    }
}

/// a -> b through a grouped use, b -> a through `super::super` from b::inner; b::x -> b::y
/// (`use super::y`) and b::y -> b::x (a macro call in an inline module of b::y).
fn cycles_are_found() -> Result<(), String> {
    let d = tree(&[
        (
            "p/src/a.rs",
            "//! a\nuse crate::{b::{inner::Thing, self}, c};\npub fn g() {}\n".to_owned(),
        ),
        (
            "p/src/b/inner.rs",
            "//! inner\npub fn f() { super::super::a::g() }\n".to_owned(),
        ),
        (
            "p/src/b/y.rs",
            "//! y\npub struct T;\nmod z { fn f() { drop(vec![super::super::x::g()]); } }\n"
                .to_owned(),
        ),
    ])?;
    let a = analysed(d.path(), "p")?;
    let want = [vec!["a", "b", "a"], vec!["b::x", "b::y", "b::x"]];
    expect(
        "cycles",
        cycles(&a),
        want.map(|c| c.iter().map(|s| s.to_string()).collect())
            .to_vec(),
    )?;
    let found = packages::find(d.path()).map_err(|e| e.to_string())?;
    let rel: Vec<String> = found
        .iter()
        .map(|p| p.strip_prefix(d.path()).unwrap_or(p).display().to_string())
        .collect();
    expect("packages", rel, vec!["p".to_owned(), "p/nested".to_owned()])?;
    expect(
        "headless",
        names(&analysed(d.path(), "p/nested")?.headless),
        vec!["lib.rs".to_owned()],
    )
}

/// The b -> a edges stay; the way back only appears in comments, strings, `$crate` of a macro
/// definition, root items, a `#[cfg(test)]` tail and inline test modules: no cycle.
fn nothing_else_is_an_edge() -> Result<(), String> {
    let a_rs = "//! a\n// use crate::b;\n/* crate::b::f() /* nested */ crate::c */\n\
        use crate::Root;\nconst S: &str = \"crate::b::x\";\n\
        const R: &str = r#\"crate::b \"x\" \"#; const Q: char = '\"';\n\
        macro_rules! m { () => { $crate::b::f() } }\npub fn g<'x>() {}\n\
        \x20   #[cfg(test)]\n    #[allow(unused)]\n    mod t { use crate::b; }\n\
        #[cfg(test)]\nmod tests;\n";
    let d = tree(&[
        ("p/src/a.rs", a_rs.to_owned()),
        (
            "p/src/a/tests.rs",
            format!("//! unit tests\nuse crate::b;\n{}", "\n".repeat(MAX_LINES)),
        ),
        (
            "p/src/b/inner.rs",
            "//! inner\nuse super::super::a::g;\n".to_owned(),
        ),
        (
            "p/src/b/y.rs",
            "//! y\nuse super::*;\npub struct T;\n".to_owned(),
        ),
    ])?;
    let a = analysed(d.path(), "p")?;
    expect("cycles", cycles(&a), Vec::<Vec<String>>::new())?;
    expect("long files", a.long_files.len(), 0)?;
    expect("headless", a.headless.len(), 0)?;
    expect("unparsed", a.unparsed.len(), 0)
}

/// Lines before the first top-level `#[cfg(test)]` count (a leading empty line too); a file
/// that does not parse is reported.
fn lines_are_counted_to_the_test_tail() -> Result<(), String> {
    let long = format!(
        "\n//! c\n{}#[cfg(test)]\nmod tests {{}}\n",
        "fn f() {}\n".repeat(MAX_LINES - 1)
    );
    let d = tree(&[("p/src/c.rs", long)])?;
    let a = analysed(d.path(), "p")?;
    let counted: Vec<usize> = a.long_files.iter().map(|(_, n)| *n).collect();
    expect(
        "long files",
        (names(&a.long_files), counted),
        (vec!["c.rs".to_owned()], vec![MAX_LINES + 1]),
    )?;
    let d = tree(&[("p/src/c.rs", "//! c\nfn (\n".to_owned())])?;
    expect(
        "unparsed",
        names(&analysed(d.path(), "p")?.unparsed),
        vec!["c.rs".to_owned()],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_self_test_passes() {
        assert_eq!(
            super::run(),
            Ok("check-layout: self-test passed".to_owned())
        );
    }
}
