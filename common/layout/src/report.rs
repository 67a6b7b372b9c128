//! The whole check over a root: every package analysed, each problem one line (a cycle's edges
//! indented under it), and the summary line.

use std::path::Path;

use crate::analyse::analyse;
use crate::{packages, shown, CYCLES_SHOWN, MAX_LINES};

/// `Ok(summary)` when nothing is wrong; `Err(lines)` otherwise, the last one the summary. An
/// unreadable directory or file is an `Err` too.
pub fn check(root: &Path) -> Result<String, Vec<String>> {
    let io = |e: std::io::Error| vec![format!("check-layout: cannot read {}: {e}", root.display())];
    let found = packages::find(root).map_err(io)?;
    let rel = |f: &Path| f.strip_prefix(root).unwrap_or(f).display().to_string();
    let (mut problems, mut files) = (Vec::new(), 0usize);
    for pkg in &found {
        let label = packages::name(pkg);
        let a = analyse(pkg).map_err(io)?;
        files = files.saturating_add(a.files);
        for c in &a.cycles {
            let mut place = format!("package {label}");
            if !c.krate.is_empty() {
                place.push_str(&format!(" ({})", c.krate));
            }
            for cycle in &c.cycles {
                let names: Vec<String> = cycle.iter().map(|m| shown(m)).collect();
                problems.push(format!("import cycle in {place}: {}", names.join(" -> ")));
            }
            if c.cycles.len() == CYCLES_SHOWN {
                problems.push(format!(
                    "  (at most {CYCLES_SHOWN} cycles are listed for {place})"
                ));
            }
            for ((a, b), (file, line, path)) in &c.edges {
                problems.push(format!(
                    "    {} -> {}: {}:{line} uses {path}",
                    shown(a),
                    shown(b),
                    rel(file)
                ));
            }
        }
        for (file, lines) in &a.long_files {
            problems.push(format!(
                "too long: {} has {lines} lines (max {MAX_LINES}, a #[cfg(test)] tail not counted)",
                rel(file)
            ));
        }
        for (file, first) in &a.headless {
            let start: String = first.chars().take(60).collect();
            problems.push(format!(
                "no //! module comment: {} starts with \"{start}\"",
                rel(file)
            ));
        }
        for (file, why) in &a.unparsed {
            problems.push(format!("does not parse: {} {why}", rel(file)));
        }
    }
    if problems.is_empty() {
        return Ok(format!(
            "check-layout: {} packages, {files} source files: no module cycles, none over \
             {MAX_LINES} lines, every file starts with //!",
            found.len()
        ));
    }
    let count = problems.iter().filter(|p| !p.starts_with(' ')).count();
    problems.push(format!(
        "check-layout: FAILED ({count} problems in {} packages)",
        found.len()
    ));
    Err(problems)
}
