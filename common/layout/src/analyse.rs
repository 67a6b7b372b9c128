//! One package's problems: each file read ([`crate::facts`]), its module placed by its path
//! below `src/` (each `src/bin/` program a crate of its own), the references resolved to
//! modules and turned into edges between siblings, and the cycles among them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::facts::{self, Facts};
use crate::graph::{self, Edge};
use crate::{packages, ModPath, CYCLES_SHOWN, MAX_LINES};

/// Where an edge was first seen: file, line, the path as written.
pub type Witness = (PathBuf, usize, String);

/// The cycles of one crate of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycles {
    /// `""` for the library and `src/main.rs`, `bin NAME` for `src/bin/NAME`.
    pub krate: String,
    /// Each from its smallest module back to it (at most [`CYCLES_SHOWN`]).
    pub cycles: Vec<Vec<ModPath>>,
    /// Every edge within the cycles' components, with where it was seen.
    pub edges: BTreeMap<Edge, Witness>,
}

/// What is wrong in one package, and how many files it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    pub cycles: Vec<Cycles>,
    /// Production files over [`MAX_LINES`], with their counted lines.
    pub long_files: Vec<(PathBuf, usize)>,
    /// Files whose first non-empty line is not a `//!` line, with that line.
    pub headless: Vec<(PathBuf, String)>,
    /// Files that do not parse, with why.
    pub unparsed: Vec<(PathBuf, String)>,
    pub files: usize,
}

struct Parsed {
    file: PathBuf,
    krate: String,
    module: ModPath,
    facts: Facts,
}

/// The analysis of the package in `pkg`.
pub fn analyse(pkg: &Path) -> std::io::Result<Analysis> {
    let files = packages::source_files(pkg)?;
    let src = pkg.join("src");
    let mut out = Analysis {
        files: files.len(),
        ..Analysis::default()
    };
    let mut parsed = Vec::new();
    let mut test_mods = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        if !first.trim_start().starts_with("//!") {
            out.headless.push((file.clone(), first.trim().to_owned()));
        }
        let rel: Vec<String> = file
            .strip_prefix(&src)
            .unwrap_or(&file)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let (krate, module) = module_of(&rel);
        match facts::read(text) {
            Ok(facts) => {
                for declared in &facts.test_mods {
                    test_mods.insert((krate.clone(), [module.clone(), declared.clone()].concat()));
                }
                parsed.push(Parsed {
                    file,
                    krate,
                    module,
                    facts,
                });
            }
            Err(why) => out.unparsed.push((file, why)),
        }
    }
    let is_test = |p: &Parsed| {
        (0..=p.module.len()).any(|k| test_mods.contains(&(p.krate.clone(), p.module[..k].to_vec())))
    };
    let parsed: Vec<&Parsed> = parsed.iter().filter(|p| !is_test(p)).collect();

    let mut modules: BTreeMap<&str, BTreeSet<ModPath>> = BTreeMap::new();
    for p in &parsed {
        if p.facts.counted_lines > MAX_LINES {
            out.long_files.push((p.file.clone(), p.facts.counted_lines));
        }
        let mods = modules.entry(&p.krate).or_default();
        mods.extend((0..=p.module.len()).map(|k| p.module[..k].to_vec()));
        mods.extend(
            p.facts
                .inline_mods
                .iter()
                .map(|m| [p.module.clone(), m.clone()].concat()),
        );
    }

    let mut edges: BTreeMap<&str, BTreeMap<Edge, Witness>> = BTreeMap::new();
    for p in &parsed {
        let known = &modules[p.krate.as_str()];
        for r in &p.facts.refs {
            let here = [p.module.clone(), r.inner.clone()].concat();
            let Some(target) = resolve(&r.segs, &here, known) else {
                continue;
            };
            let k = here.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if k == here.len() || k == target.len() {
                continue; // one is the other's ancestor
            }
            let edge = (here[..=k].to_vec(), target[..=k].to_vec());
            let shown = r.segs.join("::");
            let shown = shown.strip_suffix("::self").unwrap_or(&shown).to_owned();
            edges.entry(&p.krate).or_default().entry(edge).or_insert((
                p.file.clone(),
                r.line,
                shown,
            ));
        }
    }
    for (krate, es) in edges {
        for comp in graph::sccs(es.keys()) {
            out.cycles.push(Cycles {
                krate: krate.to_owned(),
                cycles: graph::simple_cycles(&comp, es.keys(), CYCLES_SHOWN),
                edges: es
                    .iter()
                    .filter(|((a, b), _)| comp.contains(a) && comp.contains(b))
                    .map(|(e, w)| (e.clone(), w.clone()))
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// The crate and module of a file, from its path's parts below `src/`.
pub fn module_of(rel: &[String]) -> (String, ModPath) {
    let mut parts = rel.to_vec();
    let mut krate = String::new();
    if parts.len() > 1 && parts[0] == "bin" {
        krate = format!("bin {}", parts[1].trim_end_matches(".rs"));
        parts.drain(..2);
        if parts.is_empty() || parts == ["main.rs"] {
            return (krate, Vec::new());
        }
    } else if parts == ["lib.rs"] || parts == ["main.rs"] {
        return (krate, Vec::new());
    }
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_owned();
        if last == "mod" {
            parts.pop();
        }
    }
    (krate, parts)
}

/// The module a `crate::`/`super::`/`self::` path names: the longest known module prefix.
pub fn resolve(segs: &[String], here: &[String], known: &BTreeSet<ModPath>) -> Option<ModPath> {
    let (head, rest) = segs.split_first()?;
    let mut base: ModPath = match head.as_str() {
        "crate" => Vec::new(),
        "self" => here.to_vec(),
        "super" if !here.is_empty() => here[..here.len() - 1].to_vec(),
        _ => return None,
    };
    let mut rest = rest.iter().filter(|s| *s != "self" && *s != "*").peekable();
    while rest.next_if(|s| *s == "super").is_some() {
        base.pop()?;
    }
    for s in rest {
        base.push(s.clone());
        if !known.contains(&base) {
            base.pop();
            break;
        }
    }
    Some(base)
}
