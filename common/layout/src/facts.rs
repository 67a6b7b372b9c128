//! What one file says, read with syn: the inline modules of its production code, the
//! `#[cfg(test)] mod x;` files it declares, how many lines precede its test tail, and every
//! `crate::`/`super::`/`self::` path of its production code (in `use` trees, inline, and in
//! macro calls) with its line and the inline modules around it.

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};
use syn::{Attribute, Ident, Item, ItemMod, ItemUse, Macro, Path, UseTree};

use crate::ModPath;

/// A path that starts at `crate`, `super` or `self`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Its line (1-based).
    pub line: usize,
    /// The inline modules around it, outermost first.
    pub inner: ModPath,
    /// Its segments (`self` and `*` of `use` trees included).
    pub segs: Vec<String>,
}

/// What [`read`] finds in one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub refs: Vec<Reference>,
    /// Every inline `mod x { ... }` outside test code, as a path below the file's module.
    pub inline_mods: Vec<ModPath>,
    /// Every `#[cfg(test)] mod x;`, as a path below the file's module.
    pub test_mods: Vec<ModPath>,
    /// Lines before the first top-level `#[cfg(test)]` item (all lines when there is none).
    pub counted_lines: usize,
}

/// Reads a file's text; `Err` says where it does not parse as Rust.
pub fn read(text: &str) -> Result<Facts, String> {
    let file = syn::parse_file(text).map_err(|e| {
        let at = e.span().start();
        format!("line {}:{}: {e}", at.line, at.column)
    })?;
    let tail = file.items.iter().find_map(|item| {
        attrs(item)
            .iter()
            .find(|a| is_cfg_test(a))
            .map(|a| a.pound_token.span.start().line)
    });
    let mut reader = Reader::default();
    reader.visit_file(&file);
    reader.facts.counted_lines = match tail {
        Some(line) => line.saturating_sub(1),
        None => text.lines().count(),
    };
    Ok(reader.facts)
}

#[derive(Default)]
struct Reader {
    stack: ModPath,
    facts: Facts,
}

impl Reader {
    fn reference(&mut self, line: usize, segs: Vec<String>) {
        self.facts.refs.push(Reference {
            line,
            inner: self.stack.clone(),
            segs,
        });
    }

    /// Paths in a macro call's tokens (`$crate` paths of a macro definition are not ours).
    fn scan(&mut self, tokens: TokenStream) {
        let toks: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while let Some(tok) = toks.get(i) {
            i += 1;
            let ident = match tok {
                TokenTree::Group(g) => {
                    self.scan(g.stream());
                    continue;
                }
                TokenTree::Ident(id) if is_head(id) => id,
                _ => continue,
            };
            let dollar =
                i >= 2 && matches!(&toks[i - 2], TokenTree::Punct(p) if p.as_char() == '$');
            let mut segs = vec![unraw(ident)];
            while let (
                Some(TokenTree::Punct(a)),
                Some(TokenTree::Punct(b)),
                Some(TokenTree::Ident(next)),
            ) = (toks.get(i), toks.get(i + 1), toks.get(i + 2))
            {
                if a.as_char() != ':' || a.spacing() != Spacing::Joint || b.as_char() != ':' {
                    break;
                }
                segs.push(unraw(next));
                i += 3;
            }
            if !dollar && segs.len() > 1 {
                self.reference(ident.span().start().line, segs);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Reader {
    fn visit_item(&mut self, item: &'ast Item) {
        if attrs(item).iter().any(is_cfg_test) {
            if let Item::Mod(m) = item {
                if m.content.is_none() {
                    let mut declared = self.stack.clone();
                    declared.push(unraw(&m.ident));
                    self.facts.test_mods.push(declared);
                }
            }
            return;
        }
        visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, m: &'ast ItemMod) {
        if m.content.is_some() {
            self.stack.push(unraw(&m.ident));
            self.facts.inline_mods.push(self.stack.clone());
            visit::visit_item_mod(self, m);
            self.stack.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast ItemUse) {
        if u.leading_colon.is_some() {
            return;
        }
        let line = u.use_token.span.start().line;
        let mut paths = Vec::new();
        expand(&u.tree, Vec::new(), &mut paths);
        for segs in paths {
            self.reference(line, segs);
        }
    }

    fn visit_path(&mut self, p: &'ast Path) {
        if p.leading_colon.is_none() && p.segments.len() > 1 {
            if let Some(first) = p.segments.first().filter(|s| is_head(&s.ident)) {
                let segs = p.segments.iter().map(|s| unraw(&s.ident)).collect();
                self.reference(first.ident.span().start().line, segs);
            }
        }
        visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast Macro) {
        self.scan(m.tokens.clone());
        visit::visit_macro(self, m);
    }
}

/// Every path a `use` tree names, `prefix` first (a glob keeps its prefix; `x as y` is `x`).
fn expand(tree: &UseTree, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(unraw(&p.ident));
            expand(&p.tree, prefix, out);
        }
        UseTree::Name(n) => {
            prefix.push(unraw(&n.ident));
            out.push(prefix);
        }
        UseTree::Rename(r) => {
            prefix.push(unraw(&r.ident));
            out.push(prefix);
        }
        UseTree::Glob(_) => out.push(prefix),
        UseTree::Group(g) => {
            for item in &g.items {
                expand(item, prefix.clone(), out);
            }
        }
    }
}

fn is_head(ident: &Ident) -> bool {
    ident == "crate" || ident == "super" || ident == "self"
}

fn unraw(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

/// `#[cfg(test)]` exactly.
fn is_cfg_test(attr: &Attribute) -> bool {
    attr.path().is_ident("cfg")
        && matches!(&attr.meta, syn::Meta::List(l) if l.tokens.to_string() == "test")
}

fn attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}
