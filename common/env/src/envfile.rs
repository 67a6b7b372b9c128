//! `.env`: read from the working directory only (never a parent's), at most
//! [`MAX_ENV_FILE_BYTES`], parsed whole in dotenvy's syntax before a single variable is set.
//! A file that cannot be read or parsed whole is a configuration error naming the line (never
//! its text, which may hold a secret): applying it up to the bad line would drop the rest, an
//! `API_TOKENS` below it included. A name defined twice is refused too (readers disagree on
//! which one wins). Real environment variables win over the file.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

use crate::ConfigError;

/// The file, relative to the working directory.
pub const ENV_FILE: &str = ".env";

/// Largest `.env` read: a configuration file, not a data set.
pub const MAX_ENV_FILE_BYTES: u64 = 1 << 20;

/// Reads `.env` from the working directory and sets each variable it defines that the
/// environment does not already have. `Ok(None)` when there is no such file, else how many
/// variables it defines. Called once, first thing in `main` (before any other thread reads the
/// environment).
pub fn load() -> Result<Option<usize>, ConfigError> {
    let Some(text) = read(ENV_FILE)? else {
        return Ok(None);
    };
    let vars = parse(&text).map_err(error)?;
    for (key, value) in &vars {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
    Ok(Some(vars.len()))
}

fn error(reason: String) -> ConfigError {
    ConfigError {
        var: ENV_FILE,
        reason: format!("{reason}; nothing from it was applied"),
    }
}

/// The file's bytes, `None` when it does not exist.
fn read(path: &str) -> Result<Option<Vec<u8>>, ConfigError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(format!("cannot be opened: {e}"))),
    };
    let mut text = Vec::new();
    file.take(MAX_ENV_FILE_BYTES.saturating_add(1))
        .read_to_end(&mut text)
        .map_err(|e| error(format!("cannot be read: {e}")))?;
    if u64::try_from(text.len()).map_or(true, |n| n > MAX_ENV_FILE_BYTES) {
        return Err(error(format!("is larger than {MAX_ENV_FILE_BYTES} bytes")));
    }
    Ok(Some(text))
}

/// Every `(name, value)` of a `.env` file in order, or why it cannot be used, naming the line.
/// The syntax is dotenvy's (comments, `export`, quotes, multi-line quoted values, `${VAR}`).
pub fn parse(text: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let line = Rc::new(Cell::new(0usize));
    let reader = LineByLine {
        rest: text,
        line: line.clone(),
        at_line_start: true,
    };
    let mut vars = Vec::new();
    // Where each name was defined (the line its entry ends on).
    let mut defined: HashMap<String, usize> = HashMap::new();
    for item in dotenvy::from_read_iter(reader) {
        // The reader hands over one line at a time, so its count is the last line read.
        let end = line.get();
        match item {
            Ok((key, value)) if value.contains('\0') => {
                return Err(format!("line {end}: the value of {key} holds a NUL byte"));
            }
            // Which one wins differs between readers (dotenvy the first; docker compose,
            // python-dotenv and a shell the last): a token rotated by appending a line would
            // leave the old one in force.
            Ok((key, _)) if defined.contains_key(&key) => {
                let first = defined.get(&key).copied().unwrap_or(0);
                return Err(format!(
                    "line {end} defines {key} again (first on line {first}): a name may be \
                     defined once"
                ));
            }
            Ok(pair) => {
                defined.insert(pair.0.clone(), end);
                vars.push(pair);
            }
            Err(dotenvy::Error::LineParse(entry, _)) => {
                let newlines = entry.matches('\n').count();
                let inside = newlines.saturating_sub(usize::from(entry.ends_with('\n')));
                let start = end.saturating_sub(inside);
                return Err(if start == end {
                    format!("line {end} is not a NAME=value entry (the line is not shown)")
                } else {
                    format!(
                        "lines {start}-{end} are not a NAME=value entry (a quote not \
                         closed? the lines are not shown)"
                    )
                });
            }
            Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(format!("line {end} is not UTF-8"));
            }
            Err(e) => return Err(format!("line {end} cannot be read: {e}")),
        }
    }
    Ok(vars)
}

/// A reader that never hands over bytes past a newline, counting lines as it goes: dotenvy's
/// buffered line reader then holds nothing beyond the line it parses.
struct LineByLine<'a> {
    rest: &'a [u8],
    line: Rc<Cell<usize>>,
    at_line_start: bool,
}

impl Read for LineByLine<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let line_end = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.rest.len(), |i| i.saturating_add(1));
        let n = line_end.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let (chunk, rest) = self.rest.split_at(n);
        buf[..n].copy_from_slice(chunk);
        self.rest = rest;
        if self.at_line_start {
            self.line.set(self.line.get().saturating_add(1));
        }
        self.at_line_start = chunk.ends_with(b"\n");
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_valid_file_is_parsed_whole() {
        let text = "\u{feff}# comment\n\nA=1\nexport B='two words'\nC=\"multi\nline\"\nD=${A}x\n";
        let expected = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "multi\nline"),
            ("D", "1x"),
        ];
        let got = pairs(text);
        assert_eq!(got.len(), expected.len());
        for ((k, v), (ek, ev)) in got.iter().zip(expected) {
            assert_eq!((k.as_str(), v.as_str()), (ek, ev));
        }
        assert_eq!(
            pairs("E=last\n\nF=no-newline"),
            [
                ("E".into(), "last".into()),
                ("F".into(), "no-newline".into())
            ]
        );
    }

    #[test]
    fn a_malformed_line_is_named_by_number_and_never_shown() {
        let text = "# tokens\nREDIS_URL=redis://x\n\nnot an entry s3cr3t\nAPI_TOKENS=t\n";
        let err = parse(text.as_bytes()).unwrap_err();
        assert!(err.contains("line 4 "), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        // CRLF files count the same lines.
        let err = parse(text.replace('\n', "\r\n").as_bytes()).unwrap_err();
        assert!(err.contains("line 4 "), "{err}");
    }

    #[test]
    fn an_unclosed_quote_names_the_lines_it_runs_over() {
        let err = parse(b"A=1\nB=\"s3cr3t\nC=2\n\n").unwrap_err();
        assert!(err.contains("lines 2-4"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        let err = parse(b"A=1\nB=\"multi\nline\" junk\nC=2\n").unwrap_err();
        assert!(err.contains("lines 2-3"), "{err}");
    }

    #[test]
    fn bytes_the_environment_cannot_hold_are_refused_with_their_line() {
        let err = parse(b"A=1\nB=\xff\xfe\n").unwrap_err();
        assert_eq!(err, "line 2 is not UTF-8");
        let err = parse(b"A=1\n\nB=x\0y\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
    }

    /// A name defined twice is refused, naming both lines: which one wins differs between
    /// readers (dotenvy keeps the first; docker compose, python-dotenv and a shell's `. .env`
    /// the last), so a token rotated by appending a line must not leave the old one in force.
    #[test]
    fn a_name_defined_twice_is_refused_with_both_lines() {
        let text = "API_TOKENS=old-s3cr3t\nREDIS_URL=redis://x\n\nexport API_TOKENS=new-s3cr3t\n";
        let err = parse(text.as_bytes()).unwrap_err();
        assert!(
            err.contains("line 4") && err.contains("line 1") && err.contains("API_TOKENS"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
        // After a multi-line value, lines still count as the file's.
        let err = parse(b"A=1\nB=\"x\ny\"\nA=2\n").unwrap_err();
        assert!(err.contains("line 4") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn long_lines_count_once() {
        // Longer than dotenvy's 8 KiB read buffer: read in several pieces, still one line.
        let long = "x".repeat(20_000);
        let err = parse(format!("A={long}\nB={long}\nbad line\n").as_bytes()).unwrap_err();
        assert!(err.starts_with("line 3 "), "{err}");
    }

    #[test]
    fn too_large_or_unreadable_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("envfile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big");
        let size = usize::try_from(MAX_ENV_FILE_BYTES).unwrap() + 1;
        std::fs::write(&big, vec![b'#'; size]).unwrap();
        let err = read(big.to_str().unwrap()).unwrap_err();
        assert!(err.reason.contains("larger than"), "{err}");
        // A directory named like the file cannot be read: an error, not "no file".
        assert!(read(dir.to_str().unwrap()).is_err());
        assert!(read(dir.join("absent").to_str().unwrap())
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_shipped_examples_parse_whole() {
        // Copied to `.env`, each must start the binaries, not stop them.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for file in [
            ".env.example",
            "worker/.env.example",
            "service-order/.env.example",
            "service-notification/.env.example",
        ] {
            let text = std::fs::read(root.join(file)).unwrap();
            let parsed = parse(&text);
            assert!(
                parsed.as_ref().is_ok_and(|v| !v.is_empty()),
                "{file}: {parsed:?}"
            );
        }
    }
}
