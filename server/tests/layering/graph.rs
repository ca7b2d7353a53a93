//! Owns the import graph of Rust source files and its cycles.
//!
//! Each file is tokenized with proc-macro2 (so comments, doc comments and string literals
//! never count) and every path that starts with `crate::`, `super::` or `self::` — in a `use`
//! (braced trees included), in code, or inside a macro call — and every `name::…` that names a
//! child module of the file's own module, is resolved to an absolute module path. Inline
//! `mod name { … }` blocks (such as `mod tests`) shift what `super` means, as in rustc.
//!
//! Two graphs are built from that: [`dir_graph`], file → file inside one module directory
//! (`mod.rs` stands for the directory's module itself, so an import of a re-export from
//! `mod.rs` is an edge to `mod.rs`), and [`top_level_graph`], which top-level module of the
//! crate imports which (the crate root's own items are left out: `lib.rs` declares every
//! module). [`Graph::cycles`] reports one cycle per strongly connected component, with the
//! path that made each edge.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// A module path from the crate root, e.g. `["jobs", "store"]`; empty for the root.
pub type ModPath = Vec<String>;

/// One Rust file and its module path.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to the crate's `src/`, with `/` separators.
    pub name: String,
    pub module: ModPath,
    pub tokens: TokenStream,
}

/// A path found in a file, resolved to an absolute module path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub resolved: ModPath,
    /// As written (first segments), for messages.
    pub written: String,
}

/// Every `.rs` file under `src_root`, recursively, with its module path (`mod.rs`,
/// `lib.rs` and `main.rs` stand for their directory's module). `#[path]` is not followed.
pub fn crate_files(src_root: &Path) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    collect_rs(src_root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src_root).expect("under src").to_owned();
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let mut module: ModPath = name.split('/').map(str::to_string).collect();
            let last = module.pop().expect("a file name");
            let stem = last.trim_end_matches(".rs");
            let is_root = module.is_empty() && (stem == "lib" || stem == "main");
            if stem != "mod" && !is_root {
                module.push(stem.to_string());
            }
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            let tokens = TokenStream::from_str(&text)
                .unwrap_or_else(|e| panic!("cannot tokenize {}: {e:?}", p.display()));
            SourceFile {
                name,
                module,
                tokens,
            }
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for e in entries {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The paths `file` refers to (see the module comment). `modules` is every module the
/// crate has, used to recognise `child::…` paths.
pub fn references(file: &SourceFile, modules: &BTreeSet<ModPath>) -> Vec<Reference> {
    let mut out = Vec::new();
    scan(&file.tokens, &file.module, modules, &mut out);
    out
}

fn is_path_sep(tokens: &[TokenTree], i: usize) -> bool {
    matches!(
        (tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

fn scan(
    stream: &TokenStream,
    module: &ModPath,
    modules: &BTreeSet<ModPath>,
    out: &mut Vec<Reference>,
) {
    let tokens: Vec<TokenTree> = stream.clone().into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(g) => {
                scan(&g.stream(), module, modules, out);
                i += 1;
            }
            TokenTree::Ident(id) if id == "mod" => {
                // `mod name { … }`: its body's `super` is this module.
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(body))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    if body.delimiter() == Delimiter::Brace {
                        let mut inner = module.clone();
                        inner.push(name.to_string());
                        scan(&body.stream(), &inner, modules, out);
                        i += 3;
                        continue;
                    }
                }
                i += 1;
            }
            TokenTree::Ident(id) => {
                let preceded_by_sep = i >= 2 && is_path_sep(&tokens, i - 2);
                let word = id.to_string();
                let anchored = matches!(word.as_str(), "crate" | "super" | "self");
                let child = {
                    let mut m = module.clone();
                    m.push(word.clone());
                    modules.contains(&m)
                };
                if !preceded_by_sep && (anchored || child) && is_path_sep(&tokens, i + 1) {
                    let anchor = anchored.then_some(word.as_str());
                    i = path_tree(&tokens, i + 1, anchor, module, vec![word.clone()], out);
                } else {
                    i += 1;
                }
            }
            TokenTree::Punct(_) | TokenTree::Literal(_) => i += 1,
        }
    }
}

/// Reads the rest of a path (tree) whose segments so far are `segs` (the first is the
/// anchor `crate`/`super`/`self` when `anchor` is set, else a child module of `module`), from
/// `tokens[i]` on; records every leaf and returns the index after the path.
fn path_tree(
    tokens: &[TokenTree],
    mut i: usize,
    anchor: Option<&str>,
    module: &ModPath,
    mut segs: Vec<String>,
    out: &mut Vec<Reference>,
) -> usize {
    while is_path_sep(tokens, i) {
        match tokens.get(i + 2) {
            Some(TokenTree::Ident(id)) => {
                segs.push(id.to_string());
                i += 3;
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                // `{a, b::c, self}`: each entry continues the path.
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                let mut j = 0;
                while j < inner.len() {
                    if let TokenTree::Ident(id) = &inner[j] {
                        let mut more = segs.clone();
                        more.push(id.to_string());
                        j = path_tree(&inner, j + 1, anchor, module, more, out);
                    } else {
                        j += 1;
                    }
                }
                return i + 3;
            }
            _ => break, // `::<T>`, `::*`
        }
    }
    record(anchor, module, &segs, out);
    i
}

fn record(anchor: Option<&str>, module: &ModPath, segs: &[String], out: &mut Vec<Reference>) {
    // `use super::store::{self, …}` reads better as `super::store`.
    let shown = match segs.split_last() {
        Some((last, rest)) if last == "self" && !rest.is_empty() => rest,
        _ => segs,
    };
    let written = shown.join("::");
    let mut resolved: ModPath = match anchor {
        Some("crate") => Vec::new(),
        Some("super") => module[..module.len().saturating_sub(1)].to_vec(),
        _ => module.clone(), // `self`, or a child module
    };
    let rest = if anchor.is_some() { &segs[1..] } else { segs };
    for s in rest {
        match s.as_str() {
            "super" => {
                resolved.pop();
            }
            "self" => {}
            _ => resolved.push(s.clone()),
        }
    }
    out.push(Reference { resolved, written });
}

/// A directed graph of named nodes; each edge keeps the first path that made it.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    pub edges: BTreeMap<String, BTreeMap<String, String>>,
}

impl Graph {
    pub fn add(&mut self, from: &str, to: &str, why: String) {
        self.edges.entry(to.to_string()).or_default();
        if from != to {
            self.edges
                .entry(from.to_string())
                .or_default()
                .entry(to.to_string())
                .or_insert(why);
        }
    }

    /// One cycle per strongly connected component of more than one node, each as the list
    /// of its nodes with the first repeated at the end (`a -> b -> a`).
    pub fn cycles(&self) -> Vec<Cycle> {
        let mut out = Vec::new();
        for scc in self.components() {
            if scc.len() < 2 {
                continue;
            }
            let path = self.cycle_within(&scc);
            let edges = path
                .windows(2)
                .map(|w| (w[0].clone(), w[1].clone(), self.edges[&w[0]][&w[1]].clone()))
                .collect();
            out.push(Cycle {
                members: scc.into_iter().collect(),
                edges,
            });
        }
        out
    }

    /// Strongly connected components (Tarjan), each sorted.
    fn components(&self) -> Vec<BTreeSet<String>> {
        struct T<'a> {
            g: &'a Graph,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            on: BTreeSet<&'a str>,
            out: Vec<BTreeSet<String>>,
        }
        fn visit<'a>(t: &mut T<'a>, v: &'a str) {
            let n = t.index.len();
            t.index.insert(v, n);
            t.low.insert(v, n);
            t.stack.push(v);
            t.on.insert(v);
            for w in t.g.edges[v].keys() {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if t.low[v] == t.index[v] {
                let mut scc = BTreeSet::new();
                while let Some(w) = t.stack.pop() {
                    t.on.remove(w);
                    scc.insert(w.to_string());
                    if w == v {
                        break;
                    }
                }
                t.out.push(scc);
            }
        }
        let mut t = T {
            g: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on: BTreeSet::new(),
            out: Vec::new(),
        };
        for v in self.edges.keys() {
            if !t.index.contains_key(v.as_str()) {
                visit(&mut t, v);
            }
        }
        t.out
    }

    /// A shortest cycle through the smallest node of `scc`, staying inside it.
    fn cycle_within(&self, scc: &BTreeSet<String>) -> Vec<String> {
        let start = scc.iter().next().expect("non-empty").clone();
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        while let Some(v) = queue.pop_front() {
            for w in self.edges[&v].keys().filter(|w| scc.contains(*w)) {
                if *w == start {
                    // start -> ... -> v -> start, read back from v.
                    let mut path = vec![start.clone()];
                    let mut at = v.clone();
                    while at != start {
                        path.push(at.clone());
                        at = prev[&at].clone();
                    }
                    path.push(start.clone());
                    path.reverse();
                    return path;
                }
                if !prev.contains_key(w) {
                    prev.insert(w.clone(), v.clone());
                    queue.push_back(w.clone());
                }
            }
        }
        unreachable!("a strongly connected component has a cycle through each node")
    }
}

/// A cycle of imports: every node of one strongly connected component, and one concrete
/// circle through them with the path that made each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub members: Vec<String>,
    /// (from, to, the path written in `from`).
    pub edges: Vec<(String, String, String)>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (from, to, why) in &self.edges {
            if first {
                write!(f, "{from}")?;
                first = false;
            }
            write!(f, " -> {to} ({why})")?;
        }
        write!(f, "; all in the circle: {}", self.members.join(", "))
    }
}

/// The file-level import graph of the module directory `dir` (under `src_root`): one node
/// per `.rs` file below it, named by its path relative to `dir`.
pub fn dir_graph(src_root: &Path, dir: &Path) -> Graph {
    let files = crate_files(src_root);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let dir_rel = dir.strip_prefix(src_root).expect("dir under src_root");
    let prefix = dir_rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
        + "/";
    let inside: Vec<&SourceFile> = files
        .iter()
        .filter(|f| f.name.starts_with(&prefix))
        .collect();
    let node_of = |m: &ModPath| -> Option<&SourceFile> {
        // The file of the longest module path that is a prefix of `m`.
        inside
            .iter()
            .filter(|f| m.starts_with(&f.module))
            .max_by_key(|f| f.module.len())
            .copied()
    };
    let dir_module = inside
        .iter()
        .map(|f| f.module.clone())
        .min_by_key(Vec::len)
        .unwrap_or_default();
    let mut g = Graph::default();
    for f in &inside {
        let from = &f.name[prefix.len()..];
        g.add(from, from, String::new());
        for r in references(f, &modules) {
            if !r.resolved.starts_with(&dir_module) {
                continue;
            }
            if let Some(to) = node_of(&r.resolved) {
                g.add(from, &to.name[prefix.len()..], r.written);
            }
        }
    }
    g
}

/// Which top-level module of the crate imports which (`src_root` = the crate's `src/`).
/// Files of the crate root (`lib.rs`, `main.rs`) are left out.
pub fn top_level_graph(src_root: &Path) -> Graph {
    let files = crate_files(src_root);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let tops: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.module.first().map(String::as_str))
        .collect();
    let mut g = Graph::default();
    for f in &files {
        let Some(from) = f.module.first() else {
            continue;
        };
        g.add(from, from, String::new());
        for r in references(f, &modules) {
            if let Some(to) = r.resolved.first().filter(|t| tops.contains(t.as_str())) {
                g.add(from, to, format!("{}: {}", f.name, r.written));
            }
        }
    }
    g
}

/// Cycles among the files of the module directory `dir` (see [`dir_graph`]).
pub fn dir_cycles(src_root: &Path, dir: &Path) -> Vec<Cycle> {
    dir_graph(src_root, dir).cycles()
}

/// Cycles among the top-level modules of the crate (see [`top_level_graph`]).
pub fn top_level_cycles(src_root: &Path) -> Vec<Cycle> {
    top_level_graph(src_root).cycles()
}

/// Files under `dir` that name the crate `krate` in a path (`krate::…`, `use krate`).
pub fn files_naming(src_root: &Path, dir: &Path, krate: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rel = dir.strip_prefix(src_root).expect("dir under src_root");
    for f in crate_files(src_root) {
        if !Path::new(&f.name).starts_with(rel) {
            continue;
        }
        if names(&f.tokens, krate) {
            out.push(f.name.clone());
        }
    }
    out
}

/// Words after which `::name` starts a path instead of continuing one.
const KEYWORDS: &[&str] = &[
    "as", "break", "const", "dyn", "else", "for", "if", "impl", "in", "let", "match", "move",
    "mut", "pub", "ref", "return", "static", "type", "unsafe", "use", "where", "while",
];

fn names(stream: &TokenStream, krate: &str) -> bool {
    let tokens: Vec<TokenTree> = stream.clone().into_iter().collect();
    tokens.iter().enumerate().any(|(i, t)| match t {
        TokenTree::Group(g) => names(&g.stream(), krate),
        TokenTree::Ident(id) if id == krate => {
            // `a::krate` is someone else's item; `::krate` (after a keyword, `(`, `<`, …) is
            // the crate.
            let after_sep = i >= 3
                && is_path_sep(&tokens, i - 2)
                && match &tokens[i - 3] {
                    TokenTree::Ident(a) => !KEYWORDS.contains(&a.to_string().as_str()),
                    TokenTree::Punct(p) => p.as_char() == '>',
                    _ => false,
                };
            let after_use = i >= 1 && matches!(&tokens[i - 1], TokenTree::Ident(u) if u == "use");
            (!after_sep && is_path_sep(&tokens, i + 1)) || after_use
        }
        _ => false,
    })
}
