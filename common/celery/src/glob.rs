//! Shell-style globs as Python's `fnmatch` reads them (`*`, `?`, `[seq]`, `[!seq]` with ranges,
//! everything else literal, the whole name), matched in at most `pattern.len() * text.len()`
//! steps whatever either holds: kombu's `glob` matcher for remote-control requests and the
//! patterns of `TASK_ROUTES`. One matcher for both.

/// One element of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters, none included.
    Star,
    /// `?`: any one character.
    One,
    /// A character standing for itself.
    Char(char),
    /// `[seq]` (or `[!seq]`, `negate`): one character in (or not in) these ranges.
    Class {
        negate: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A parsed glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
}

impl Glob {
    /// Parses `pattern` as `fnmatch.translate` does: a `[` without its `]` is a literal `[`.
    pub fn new(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            tokens.push(match c {
                '*' => Token::Star,
                '?' => Token::One,
                '[' => match class(&chars[i..]) {
                    Some((token, used)) => {
                        i += used;
                        token
                    }
                    None => Token::Char('['),
                },
                c => Token::Char(c),
            });
        }
        Glob {
            source: pattern.to_owned(),
            tokens,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether all of `text` matches: backtracking to the last `*` only.
    pub fn is_match(&self, text: &str) -> bool {
        let (mut p, mut t) = (0, 0);
        // The last star's token index and the text offset it has covered up to.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            let c = text[t..].chars().next().unwrap_or_default();
            match self.tokens.get(p) {
                Some(Token::Star) => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(token) if one(token, c) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, st)) => {
                    let next = st + text[st..].chars().next().map_or(1, char::len_utf8);
                    star = Some((sp, next));
                    p = sp + 1;
                    t = next;
                }
                None => return false,
            }
        }
        self.tokens[p.min(self.tokens.len())..]
            .iter()
            .all(|t| *t == Token::Star)
    }
}

/// Whether `token` (not a star) matches the character `c`.
fn one(token: &Token, c: char) -> bool {
    match token {
        Token::Star => false,
        Token::One => true,
        Token::Char(x) => *x == c,
        Token::Class { negate, ranges } => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negate
        }
    }
}

/// The class after a `[`: its token and how many characters it took (the closing `]`
/// included), or `None` when it never closes. As `fnmatch`: a `]` first (after an optional
/// `!`) is a member, `a-z` a range.
fn class(rest: &[char]) -> Option<(Token, usize)> {
    let mut j = 0;
    let negate = rest.first() == Some(&'!');
    if negate {
        j += 1;
    }
    if rest.get(j) == Some(&']') {
        j += 1;
    }
    while rest.get(j).is_some_and(|c| *c != ']') {
        j += 1;
    }
    rest.get(j)?;
    let body = &rest[usize::from(negate)..j];
    let mut ranges = Vec::new();
    let mut k = 0;
    while let Some(&lo) = body.get(k) {
        match (body.get(k + 1), body.get(k + 2)) {
            (Some('-'), Some(&hi)) => {
                ranges.push((lo, hi));
                k += 3;
            }
            _ => {
                ranges.push((lo, lo));
                k += 1;
            }
        }
    }
    Some((Token::Class { negate, ranges }, j + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).is_match(text)
    }

    #[test]
    fn stars_match_any_run_and_the_whole_name_must_match() {
        for (pattern, text, expected) in [
            ("a", "a", true),
            ("a", "ab", false),
            ("a*", "ab", true),
            ("*", "", true),
            ("*b", "aab", true),
            ("*b", "aba", false),
            ("a*c*e", "abcde", true),
            ("a*c*e", "abcdf", false),
            ("shop.*", "shop.process_order", true),
            ("**", "x", true),
            ("py1@*", "py1@vm", true),
            ("py1@*", "rust1@vm", false),
        ] {
            assert_eq!(m(pattern, text), expected, "{pattern} {text}");
        }
    }

    #[test]
    fn question_marks_classes_and_ranges_as_fnmatch() {
        assert!(m("r[a-z]st?@*", "rust1@vm"));
        assert!(!m("r[!a-z]st?@*", "rust1@vm"));
        assert!(m("r[!0-9]st?@*", "rust1@vm"));
        assert!(m("[]]x", "]x"), "a ] first is a member");
        assert!(m("[!]]x", "ax"));
        assert!(m("a[", "a["), "an unclosed [ is literal");
        assert!(m("é?", "éü"), "characters, not bytes");
        assert!(!m("?", ""));
        assert!(!m("a?", "a"));
    }

    #[test]
    fn a_hostile_pattern_and_name_end_quickly() {
        let pattern = "*a".repeat(128);
        let text = "a".repeat(10_000) + "b";
        assert!(!m(&pattern, &text));
    }
}
