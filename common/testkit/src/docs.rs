//! Checks that configuration is documented: every variable a crate reads is in the root
//! `.env.example`, in the configuration table of `docs/configuration.md` and in each binary's
//! own `.env.example`.

use std::path::PathBuf;

/// The page whose table documents every environment variable (from the repository root).
const CONFIGURATION: &str = "docs/configuration.md";

fn root() -> PathBuf {
    // This crate lives at `common/testkit`.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `VAR=...`, or `# VAR=...` for a variable best left unset (an empty value is an error).
fn has_line(text: &str, var: &str) -> bool {
    text.lines()
        .map(|l| l.trim_start_matches("# "))
        .any(|l| l.starts_with(&format!("{var}=")))
}

/// Panics unless each of `vars` is in `.env.example`, in the table of `docs/configuration.md`
/// (a row starting `` | `VAR` | ``) and in every file of `env_files` (paths from the
/// repository root).
pub fn assert_documented(vars: &[&str], env_files: &[&str]) {
    let example = read(".env.example");
    let table = read(CONFIGURATION);
    for var in vars {
        assert!(has_line(&example, var), ".env.example lacks {var}");
        assert!(
            table.contains(&format!("| `{var}` |")),
            "{CONFIGURATION}'s configuration table lacks {var}"
        );
        for file in env_files {
            assert!(has_line(&read(file), var), "{file} lacks {var}");
        }
    }
}

/// Panics when `source` (a config module's text, up to its tests) names an environment
/// variable (an upper-case string literal with an underscore) that is not in `allowed`.
pub fn assert_reads_only(source: &str, allowed: &[&str]) {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    for word in code.split('"').skip(1).step_by(2) {
        let is_var = word.len() > 3
            && word.contains('_')
            && word.chars().all(|c| c.is_ascii_uppercase() || c == '_');
        assert!(
            !is_var || allowed.contains(&word) || word == "HOSTNAME",
            "reads undocumented {word}"
        );
    }
}
