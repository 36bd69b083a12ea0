//! Arrows point down only (STYLE.md): the modules of `src/` must not import each other in a cycle.
//!
//! The test reads the text of every `src/**/*.rs` file of the library (`src/main.rs` is the binary,
//! a client of the library, and is left out), resolves every path it names to the file that
//! defines the item, and fails listing the cycles it finds. No compiler involved, std only: what
//! counts as a reference is deliberately simple and written here.
//!
//! ## What is a reference
//! - Every path in a `use` declaration (`use crate::a::{b, c::D}`, `use super::x`, `use child::Y`)
//!   and every path written in code that starts with `crate::`, `super::`, `self::` or the name of
//!   a child module the file declares (`state::Shared` in `sandbox/mod.rs`).
//! - Comments, doc comments (intra-doc links included) and string literals are not code and do
//!   not count. Neither does test-only code: an item under `#[cfg(test)]` (a `mod tests { … }`
//!   block, a test helper `impl`, a file declared `#[cfg(test)] mod proptests;`) is removed first.
//! - Re-exports are followed: a `pub use` / `pub(crate) use` is no edge by itself, and a path that
//!   lands on a re-exported name counts as a reference to the file that defines the item
//!   (`crate::upstream::UpstreamError` → `src/upstream/error.rs`). Paths are resolved to the
//!   longest module prefix that is a file; items of inline modules belong to their file.
//!
//! ## The two rules
//! 1. **Top-level modules form a DAG.** A file `src/x.rs`, `src/x/mod.rs` or `src/x/y/z.rs` belongs
//!    to module `x`; `src/lib.rs` (which only declares the modules) is not a node. References
//!    inside one top-level module are not edges of this graph.
//! 2. **The files of `src/sandbox/` form a DAG**, `mod.rs` included. `mod.rs` declaring its children
//!    is no edge and its re-exports are followed as above, so a child naming `super::Fault` depends
//!    on `faults.rs`, not on `mod.rs`; a child using an item *defined* in `mod.rs` depends on
//!    `mod.rs`, and then `mod.rs` must not use that child (put the shared item in a lower file).
//!
//! A failure lists each tangle (strongly connected set of nodes) and, for every edge inside it, a
//! shortest cycle through that edge, each hop with one place (`file:line`) that makes it; so each
//! arrow that must be turned round is named at least once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A module path from the crate root: `["sandbox", "state"]`; `[]` is the crate root.
type ModPath = Vec<String>;

/// One parsed source file.
struct SourceFile {
    /// Path relative to the crate, with `/`: `src/sandbox/state.rs`.
    rel: String,
    /// The module this file is.
    module: ModPath,
    /// Children declared under `#[cfg(test)]`: their files are test-only.
    test_children: BTreeSet<String>,
    /// Names it re-exports (`pub use a::b as c;`): name → absolute path, `None` for a glob.
    reexports: BTreeMap<String, ModPath>,
    /// Every path it names in code or in a private `use`: made absolute, as written, its line.
    refs: Vec<(ModPath, String, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Replaces comments, string, byte-string and char literals with spaces, keeping line breaks (so
/// line numbers stay right) and lifetimes (`'a` is not a char literal).
fn strip_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if !prev_ident && (c[i] == 'r' || (c[i] == 'b' && c.get(i + 1) == Some(&'r'))) && {
            let mut j = i + if c[i] == 'b' { 2 } else { 1 };
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            c.get(j) == Some(&'"')
        } {
            // Raw string: r"…", r#"…"#, br"…".
            let mut j = i + if c[i] == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while c[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &c[i..j.min(c.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c[i] == '\'' {
            // A char literal is '\…' or 'x'; anything else is a lifetime or a label.
            let end = if c.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                Some(j + 1)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    let end = end.min(c.len());
                    for &ch in &c[i..end] {
                        blank(&mut out, ch);
                    }
                    i = end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Identifiers, `::` and single punctuation characters, each with its line number.
fn tokenize(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // Raw identifiers: r#type.
            let word = word.strip_prefix("r#").unwrap_or(&word).to_string();
            toks.push((Tok::Ident(word), line));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            toks.push((Tok::PathSep, line));
            i += 2;
        } else {
            toks.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    toks
}

fn is_punct(t: Option<&(Tok, usize)>, ch: char) -> bool {
    matches!(t, Some((Tok::Punct(p), _)) if *p == ch)
}

fn is_ident(t: Option<&(Tok, usize)>, word: &str) -> bool {
    matches!(t, Some((Tok::Ident(w), _)) if w == word)
}

/// Index just past the bracket group opening at `i` (`(`, `[` or `{`).
fn skip_group(toks: &[(Tok, usize)], i: usize) -> usize {
    let mut depth = 0i32;
    let mut j = i;
    while j < toks.len() {
        match toks[j].0 {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// Removes every item carrying `#[cfg(test)]`; returns the remaining tokens and the names of the
/// modules declared test-only (`#[cfg(test)] mod proptests;`).
fn remove_test_items(toks: Vec<(Tok, usize)>) -> (Vec<(Tok, usize)>, BTreeSet<String>) {
    let cfg_test = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let mut out = Vec::with_capacity(toks.len());
    let mut test_mods = BTreeSet::new();
    let mut i = 0;
    while i < toks.len() {
        let here = toks[i..].iter().take(cfg_test.len()).map(|(t, _)| t);
        if !here.eq(cfg_test.iter()) {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        let mut j = i + cfg_test.len();
        // Further attributes of the same item.
        while is_punct(toks.get(j), '#') && is_punct(toks.get(j + 1), '[') {
            j = skip_group(&toks, j + 1);
        }
        // `mod name;` declares a test-only file.
        let mut k = j;
        if is_ident(toks.get(k), "pub") {
            k += 1;
            if is_punct(toks.get(k), '(') {
                k = skip_group(&toks, k);
            }
        }
        if is_ident(toks.get(k), "mod") {
            if let (Some((Tok::Ident(name), _)), true) =
                (toks.get(k + 1), is_punct(toks.get(k + 2), ';'))
            {
                test_mods.insert(name.clone());
            }
        }
        // The item ends at `;` or `,` outside brackets, after its first `{…}` body, or before a
        // `}` that closes what encloses it (a field or variant at the end of its list).
        let mut depth = 0i32;
        while j < toks.len() {
            match toks[j].0 {
                Tok::Punct('(' | '[') => depth += 1,
                Tok::Punct(')' | ']') => depth -= 1,
                Tok::Punct('{') => {
                    if depth == 0 {
                        j = skip_group(&toks, j);
                        // `struct S { … }` ends here; so does `impl`, `fn`, `mod`.
                        break;
                    }
                    depth += 1;
                }
                Tok::Punct('}') => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                }
                Tok::Punct(';' | ',') if depth == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        i = j;
    }
    (out, test_mods)
}

/// The leaves of a use tree: each full path (ending in `*` for a glob) and the name it binds.
fn parse_use_tree(
    toks: &[(Tok, usize)],
    i: &mut usize,
    prefix: &[String],
    out: &mut Vec<(ModPath, String, usize)>,
) {
    let mut path = prefix.to_vec();
    let line = toks.get(*i).map_or(0, |t| t.1);
    loop {
        match toks.get(*i).map(|t| &t.0) {
            Some(Tok::PathSep) => *i += 1,
            Some(Tok::Ident(w)) if w == "as" => {
                *i += 1;
                if let Some((Tok::Ident(alias), _)) = toks.get(*i) {
                    out.push((path.clone(), alias.clone(), line));
                    *i += 1;
                }
                return;
            }
            Some(Tok::Ident(w)) => {
                path.push(w.clone());
                *i += 1;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                path.push("*".into());
                out.push((path, "*".into(), line));
                return;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                loop {
                    match toks.get(*i).map(|t| &t.0) {
                        Some(Tok::Punct('}')) => {
                            *i += 1;
                            return;
                        }
                        Some(Tok::Punct(',')) => *i += 1,
                        None => return,
                        _ => parse_use_tree(toks, i, &path, out),
                    }
                }
            }
            _ => {
                // End of this leaf: `;`, `,` or `}`.
                if path.last().is_some_and(|s| s == "self") {
                    path.pop();
                }
                if let Some(name) = path.last().cloned() {
                    out.push((path, name, line));
                }
                return;
            }
        }
    }
}

/// Makes a path written in `module` absolute; `None` for an external crate or a local name.
fn absolutize(path: &[String], module: &[String], children: &BTreeSet<String>) -> Option<ModPath> {
    let first = path.first()?;
    let (mut base, rest): (ModPath, &[String]) = match first.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (module.to_vec(), &path[1..]),
        "super" => {
            let mut base = module.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            (base, rest)
        }
        name if children.contains(name) => (module.to_vec(), path),
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

fn parse_file(rel: String, module: ModPath, text: &str) -> SourceFile {
    let (toks, test_children) = remove_test_items(tokenize(&strip_comments_and_literals(text)));
    let mut children = BTreeSet::new();
    for w in toks.windows(3) {
        if let [
            (Tok::Ident(m), _),
            (Tok::Ident(name), _),
            (Tok::Punct(';' | '{'), _),
        ] = w
        {
            if m == "mod" {
                children.insert(name.clone());
            }
        }
    }
    let mut reexports = BTreeMap::new();
    let mut refs = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Ident(w) if w == "use" => {
                let public = is_ident(toks.get(i.wrapping_sub(1)), "pub")
                    || (is_punct(toks.get(i.wrapping_sub(1)), ')') && {
                        // `pub(crate) use`, `pub(super) use`, `pub(in path) use`
                        let mut k = i - 1;
                        while k > 0 && !is_punct(toks.get(k), '(') {
                            k -= 1;
                        }
                        is_ident(toks.get(k.wrapping_sub(1)), "pub")
                    });
                i += 1;
                let mut leaves = Vec::new();
                parse_use_tree(&toks, &mut i, &[], &mut leaves);
                for (path, name, line) in leaves {
                    let Some(abs) = absolutize(&path, &module, &children) else {
                        continue;
                    };
                    if public {
                        reexports.insert(name, abs);
                    } else {
                        refs.push((abs, path.join("::"), line));
                    }
                }
            }
            Tok::Ident(first)
                if toks.get(i + 1).is_some_and(|t| t.0 == Tok::PathSep)
                    && !(i > 0 && toks[i - 1].0 == Tok::PathSep) =>
            {
                let line = toks[i].1;
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while toks.get(j).is_some_and(|t| t.0 == Tok::PathSep) {
                    match toks.get(j + 1) {
                        Some((Tok::Ident(seg), _)) => path.push(seg.clone()),
                        _ => break,
                    }
                    j += 2;
                }
                if let Some(abs) = absolutize(&path, &module, &children) {
                    refs.push((abs, path.join("::"), line));
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    SourceFile {
        rel,
        module,
        test_children,
        reexports,
        refs,
    }
}

fn module_of(rel_in_src: &Path) -> ModPath {
    let mut parts: Vec<String> = rel_in_src
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library's files as `(path relative to the crate, text)`; `src/main.rs` (the binary) left out.
fn read_src() -> Vec<(String, String)> {
    let root = PathBuf::from(option_env!("CARGO_MANIFEST_DIR").unwrap_or("."));
    let src = root.join("src");
    let mut paths = Vec::new();
    collect(&src, &mut paths);
    paths
        .iter()
        .filter(|p| !p.ends_with("src/main.rs"))
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("under the crate");
            let text = std::fs::read_to_string(p).expect("source is UTF-8");
            (rel.to_string_lossy().replace('\\', "/"), text)
        })
        .collect()
}

/// Parses `src/…` files; files declared under `#[cfg(test)]` are left out.
fn parse_all(sources: &[(String, String)]) -> Vec<SourceFile> {
    let mut files: Vec<SourceFile> = sources
        .iter()
        .map(|(rel, text)| {
            let in_src = Path::new(rel.strip_prefix("src/").expect("a file under src/"));
            parse_file(rel.clone(), module_of(in_src), text)
        })
        .collect();
    let test_only: BTreeSet<ModPath> = files
        .iter()
        .flat_map(|f| {
            f.test_children.iter().map(|c| {
                let mut m = f.module.clone();
                m.push(c.clone());
                m
            })
        })
        .collect();
    files.retain(|f| !test_only.iter().any(|t| f.module.starts_with(t)));
    files
}

/// The file that defines what `path` names, following re-exports.
fn resolve<'a>(files: &'a [SourceFile], path: &[String]) -> Option<&'a SourceFile> {
    let mut path = path.to_vec();
    for _ in 0..16 {
        let file = files
            .iter()
            .filter(|f| path.starts_with(&f.module))
            .max_by_key(|f| f.module.len())?;
        let next = path.get(file.module.len());
        match next.and_then(|name| file.reexports.get(name)) {
            Some(target) if target.last().is_some_and(|s| s != "*") => {
                let mut followed = target.clone();
                followed.extend(path[file.module.len() + 1..].iter().cloned());
                path = followed;
            }
            _ => return Some(file),
        }
    }
    None
}

/// Node → node → one example reference (`file:line path`).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn build_graph(files: &[SourceFile], node_of: impl Fn(&SourceFile) -> Option<String>) -> Graph {
    let mut graph = Graph::new();
    for file in files {
        let Some(from) = node_of(file) else { continue };
        graph.entry(from.clone()).or_default();
        for (path, written, line) in &file.refs {
            let Some(target) = resolve(files, path) else {
                continue;
            };
            let Some(to) = node_of(target) else { continue };
            if to != from {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| format!("{}:{} {written}", file.rel, line));
            }
        }
    }
    graph
}

/// Strongly connected sets of more than one node (Tarjan).
fn tangles(graph: &Graph) -> Vec<Vec<String>> {
    struct St<'g> {
        g: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut St<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut set = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                set.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if set.len() > 1 {
                set.sort();
                s.out.push(set);
            }
        }
    }
    let mut s = St {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// Shortest path from `from` to `to` inside `set`.
fn shortest(graph: &Graph, set: &BTreeSet<&str>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(v) = queue.pop_front() {
        if v == to {
            let mut path = vec![to.to_string()];
            let mut cur = to;
            while let Some(p) = prev.get(cur) {
                path.push(p.to_string());
                cur = p;
            }
            path.reverse();
            return Some(path);
        }
        for w in graph.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if set.contains(w) && seen.insert(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    None
}

/// Every cycle to report, as `a → b → … → a` with the place of each hop; empty when a DAG.
fn cycle_report(graph: &Graph) -> String {
    let mut report = String::new();
    for set in tangles(graph) {
        let members: BTreeSet<&str> = set.iter().map(String::as_str).collect();
        let _ = writeln!(report, "tangle of {}: {}", set.len(), set.join(", "));
        let mut printed: BTreeSet<Vec<String>> = BTreeSet::new();
        for a in &set {
            for b in graph[a].keys().filter(|b| members.contains(b.as_str())) {
                let Some(back) = shortest(graph, &members, b, a) else {
                    continue;
                };
                let mut cycle = vec![a.clone()];
                cycle.extend(back);
                // The same cycle seen from another edge: rotate to its smallest node.
                let ring = &cycle[..cycle.len() - 1];
                let start = ring
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| *n)
                    .map_or(0, |(i, _)| i);
                let key: Vec<String> = ring[start..]
                    .iter()
                    .chain(&ring[..start])
                    .cloned()
                    .collect();
                if !printed.insert(key) {
                    continue;
                }
                let _ = writeln!(report, "  cycle: {}", cycle.join(" → "));
                for hop in cycle.windows(2) {
                    let _ = writeln!(
                        report,
                        "      {} → {}: {}",
                        hop[0], hop[1], graph[&hop[0]][&hop[1]]
                    );
                }
            }
        }
    }
    report
}

/// Rule 1: a file belongs to its top-level module; `src/lib.rs` is no node.
fn top_level_graph(files: &[SourceFile]) -> Graph {
    build_graph(files, |f| f.module.first().cloned())
}

/// Rule 2: every file of `src/sandbox/` is a node, named by its path under it.
fn sandbox_graph(files: &[SourceFile]) -> Graph {
    build_graph(files, |f| {
        f.rel.strip_prefix("src/sandbox/").map(str::to_string)
    })
}

/// `MODULE_GRAPH_PRINT=1 cargo test --test module_graph -- --nocapture` prints every edge with
/// one place that makes it.
fn print_if_asked(name: &str, graph: &Graph) {
    if std::env::var_os("MODULE_GRAPH_PRINT").is_none() {
        return;
    }
    println!("{name}:");
    for (from, edges) in graph {
        for (to, place) in edges {
            println!("  {from} → {to}: {place}");
        }
    }
}

#[test]
fn top_level_modules_form_a_dag() {
    let files = parse_all(&read_src());
    let graph = top_level_graph(&files);
    print_if_asked("top-level modules", &graph);
    assert!(
        graph.len() > 10,
        "the crate's modules were found: {:?}",
        graph.keys().collect::<Vec<_>>()
    );
    let report = cycle_report(&graph);
    assert!(
        report.is_empty(),
        "top-level modules of src/ import each other in cycles (arrows point down only):\n{report}"
    );
}

#[test]
fn sandbox_files_form_a_dag() {
    let files = parse_all(&read_src());
    let graph = sandbox_graph(&files);
    print_if_asked("src/sandbox/ files", &graph);
    assert!(
        graph.len() > 10,
        "the sandbox's files were found: {:?}",
        graph.keys().collect::<Vec<_>>()
    );
    let report = cycle_report(&graph);
    assert!(
        report.is_empty(),
        "files of src/sandbox/ import each other in cycles:\n{report}"
    );
}

// The checker's own tests: a checker that finds nothing would pass for the wrong reason.

fn files(sources: &[(&str, &str)]) -> Vec<SourceFile> {
    let owned: Vec<(String, String)> = sources
        .iter()
        .map(|(rel, text)| (rel.to_string(), text.to_string()))
        .collect();
    parse_all(&owned)
}

#[test]
fn a_cycle_is_reported_with_the_place_of_each_hop() {
    let files = files(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("src/a.rs", "//! A.\nuse crate::b::B;\n"),
        ("src/b/mod.rs", "mod inner;\npub struct B;\n"),
        ("src/b/inner.rs", "fn f() {\n    crate::c::go();\n}\n"),
        ("src/c.rs", "pub fn go() {\n    let _ = crate::a::A;\n}\n"),
    ]);
    let report = cycle_report(&top_level_graph(&files));
    assert!(report.contains("tangle of 3: a, b, c"), "{report}");
    assert!(report.contains("cycle: a → b → c → a"), "{report}");
    assert!(report.contains("a → b: src/a.rs:2 crate::b::B"), "{report}");
    assert!(
        report.contains("b → c: src/b/inner.rs:2 crate::c::go"),
        "{report}"
    );
    assert!(report.contains("c → a: src/c.rs:2 crate::a::A"), "{report}");
}

#[test]
fn comments_strings_and_test_only_code_are_not_references() {
    let files = files(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", "pub struct A;\n"),
        (
            "src/b/mod.rs",
            r##"//! Links to [`crate::a::A`] do not count.
#[cfg(test)]
mod proptests;
/* crate::a::A */
const S: &str = "crate::a::A";
const R: &str = r#"crate::a::A"#;
const C: char = '"';
fn lifetime<'a>(x: &'a str) -> &'a str { x }
#[cfg(test)]
impl B {
    fn sample() -> crate::a::A { crate::a::A }
}
pub struct B {
    #[cfg(test)]
    a: crate::a::A,
}
#[cfg(test)]
mod tests {
    use crate::a::A;
}
"##,
        ),
        ("src/b/proptests.rs", "use crate::a::A;\n"),
        ("src/a/uses_b.rs", "use crate::b::B;\n"),
    ]);
    let graph = top_level_graph(&files);
    assert!(graph["b"].is_empty(), "{:?}", graph["b"]);
    assert!(graph["a"].contains_key("b"));
}

#[test]
fn paths_resolve_through_super_self_groups_and_re_exports() {
    let files = files(&[
        ("src/lib.rs", "pub mod s;\n"),
        (
            "src/s/mod.rs",
            "mod x;\nmod y;\nmod z;\npub use x::{X as Renamed, Other};\npub const TOP: u8 = 1;\n\
             fn route() { y::handler(); }\n",
        ),
        ("src/s/x.rs", "pub struct X;\npub struct Other;\n"),
        (
            "src/s/y.rs",
            "use super::{Renamed, z::{self, Z}};\npub fn handler() {}\n",
        ),
        ("src/s/z/mod.rs", "pub mod deep;\npub struct Z;\n"),
        (
            "src/s/z/deep.rs",
            "use super::super::TOP;\nuse self::inner::I;\nmod inner { pub struct I; }\n",
        ),
    ]);
    let graph = build_graph(&files, |f| f.rel.strip_prefix("src/s/").map(str::to_string));
    let edges = |from: &str| graph[from].keys().cloned().collect::<Vec<_>>();
    // `super::Renamed` is `x::X` re-exported by mod.rs: the edge goes to x.rs, not mod.rs.
    assert_eq!(edges("y.rs"), ["x.rs", "z/mod.rs"]);
    assert_eq!(edges("mod.rs"), ["y.rs"]);
    // An item defined in mod.rs, used by a child that mod.rs uses: a cycle through mod.rs.
    assert_eq!(edges("z/deep.rs"), ["mod.rs"]);
    assert!(cycle_report(&graph).is_empty());
    let mut cyclic = graph.clone();
    cyclic
        .get_mut("y.rs")
        .expect("y.rs")
        .insert("mod.rs".into(), "here".into());
    assert!(cycle_report(&cyclic).contains("cycle: mod.rs → y.rs → mod.rs"));
}
