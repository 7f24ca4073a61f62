//! The library's modules are layered: no import cycles, at any level.
//!
//! The rule, as this test checks it:
//!
//! - The module tree comes from the files under `src/`: `lib.rs` is the crate
//!   root, `foo.rs` or `foo/mod.rs` is module `foo`, `foo/bar.rs` is `foo::bar`,
//!   and an inline `mod kind { ... }` is a module too. Binaries (`main.rs`,
//!   `bin/`) are not part of the library. Test code is left out, because tests
//!   may reach anywhere: files named `tests.rs` or under a `tests/` folder, and
//!   every item marked `#[cfg(test)]` (a `mod tests { ... }` block, or a
//!   `#[cfg(test)] mod name;` whose file is then left out with its submodules).
//! - A reference is any path in code that starts with `crate::`, `super::` or
//!   `self::`, including each leaf of a `use crate::{a::{b, c}, d}` group.
//!   Comments (doc comments too) and string literals do not count. A path
//!   resolves to the longest prefix of it that is a module of the tree.
//! - At every level of the tree, the children of one parent must form a DAG.
//!   Code anywhere in sibling `A`'s subtree that references anything in
//!   sibling `B`'s subtree is an edge `A -> B`. A module and its ancestors or
//!   descendants are one unit: a reference between them is no edge. At the top
//!   level the siblings are `api`, `config`, `store`, ...; items defined in
//!   `lib.rs` itself belong to the root and so never make an edge.
//!
//! On failure the test names the cycles, with the file:line behind each edge:
//! shortest cycles first, until every edge that lies on a cycle has been shown
//! (so each set of mutually dependent modules shows up). On success it prints
//! the top-level modules in layering order, lowest layer first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// The library's sources; the analysis itself only sees (path, text) pairs.
const SRC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// A module's path from the crate root: `[]` is the root, `[transport, at]`
/// is `transport::at`.
type ModPath = Vec<String>;

/// The sibling edges under one parent: `graph[a][b]` is the first evidence of
/// `a -> b` and how many references make that edge.
type Graph = BTreeMap<ModPath, BTreeMap<ModPath, (String, usize)>>;

/// A token's text and line.
type Token = (String, usize);

/// What the files say, before the test-only parts are dropped.
#[derive(Default)]
struct Scan {
    modules: BTreeSet<ModPath>,
    test_only: Vec<ModPath>,
    /// (module whose code holds the path, the path made absolute, evidence
    /// such as "src/api/mod.rs:33 uses crate::dialer::Engine").
    references: Vec<(ModPath, ModPath, String)>,
}

fn module_name(module: &[String]) -> String {
    match module {
        [] => "crate".to_string(),
        _ => module.join("::"),
    }
}

/// The module a file under `src/` defines; `None` for binaries and tests.
fn module_of_file(path: &str) -> Option<ModPath> {
    let stem = path.strip_suffix(".rs")?;
    let mut parts: ModPath = stem.split('/').map(String::from).collect();
    if path == "main.rs" || path.starts_with("bin/") || parts.iter().any(|p| p == "tests") {
        return None;
    }
    if parts == ["lib"] || parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// Splits Rust source into identifiers, `::` and single punctuation
/// characters, dropping comments, string and char literals, so that a doc
/// line or a string mentioning `crate::x` is not a reference.
fn tokenize(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let (mut i, mut line, mut tokens) = (0, 1, Vec::new());
    while i < c.len() {
        let (ch, next, start) = (c[i], at(i + 1), i);
        if ch == '/' && next == '/' {
            i += c[i..].iter().take_while(|&&x| x != '\n').count();
        } else if ch == '/' && next == '*' {
            let mut depth = 0; // block comments nest
            while i < c.len() {
                match (c[i], at(i + 1)) {
                    ('/', '*') => (depth, i) = (depth + 1, i + 2),
                    ('*', '/') => (depth, i) = (depth - 1, i + 2),
                    _ => i += 1,
                }
                if depth == 0 {
                    break;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i, None);
        } else if ch == '\'' {
            // A char literal ('x', '"', '\'', '\u{e9}'), else a lifetime or label.
            i += match (next, at(i + 2)) {
                ('\\', _) => 4 + c[i + 3..].iter().take_while(|&&x| x != '\'').count(),
                (_, '\'') => 3,
                _ => 1,
            };
        } else if ch.is_alphanumeric() || ch == '_' {
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let hashes = c[i..].iter().take_while(|&&x| x == '#').count();
            // A prefix like b"", b'' or r#ident is harmless as a token of its
            // own, but a raw string's body must be skipped here, escapes unseen.
            if matches!(word.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"' {
                i = skip_string(&c, i + hashes, Some(hashes));
            } else {
                tokens.push((word, line));
            }
        } else if ch == ':' && next == ':' {
            tokens.push(("::".to_string(), line));
            i += 2;
        } else {
            if !ch.is_whitespace() {
                tokens.push((ch.to_string(), line));
            }
            i += 1;
        }
        let consumed = &c[start..i.min(c.len())];
        line += consumed.iter().filter(|&&x| x == '\n').count();
    }
    tokens
}

/// The index after the string literal whose opening quote is at `i`; `raw` is
/// the number of `#`s of a raw string, which has no escapes.
fn skip_string(c: &[char], mut i: usize, raw: Option<usize>) -> usize {
    let hashes = std::iter::repeat_n('#', raw.unwrap_or(0));
    let closing: Vec<char> = std::iter::once('"').chain(hashes).collect();
    i += 1;
    while i < c.len() && !c[i..].starts_with(&closing) {
        i += if raw.is_none() && c[i] == '\\' { 2 } else { 1 };
    }
    i + closing.len()
}

fn text(tokens: &[Token], i: usize) -> &str {
    tokens.get(i).map_or("", |t| t.0.as_str())
}

fn is_ident(word: &str) -> bool {
    word.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

fn child(parent: &[String], name: &str) -> ModPath {
    [parent, &[name.to_string()]].concat()
}

/// Adds the modules and references of the file at `path` (module `module`).
fn scan_file(path: &str, module: &ModPath, src: &str, scan: &mut Scan) {
    let tokens = tokenize(src);
    let word = |i: usize| text(&tokens, i);
    let ancestors = (0..=module.len()).map(|n| module[..n].to_vec());
    scan.modules.extend(ancestors);
    // The module whose code we are in, with the brace depth its block opened at.
    let mut scopes = vec![(module.clone(), 0)];
    let (mut depth, mut i) = (0, 0);
    while i < tokens.len() {
        let current = scopes[scopes.len() - 1].0.clone();
        if let Some(after) = cfg_test_attribute(&tokens, i) {
            let (end, test_module) = match word(i + 1) {
                "!" => (after, Some(current)), // #![cfg(test)]: all of this module
                _ => skip_item(&tokens, after, &current),
            };
            scan.test_only.extend(test_module);
            i = end;
            continue;
        }
        // A path starts at `crate`, `super` or `self`, not in the middle of one.
        let path_start = word(i + 1) == "::" && (i == 0 || word(i - 1) != "::");
        match word(i) {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if scopes.len() > 1 && scopes[scopes.len() - 1].1 == depth {
                    scopes.pop();
                }
            }
            "mod" if is_ident(word(i + 1)) && word(i + 2) == "{" => {
                let inline = child(&current, word(i + 1));
                scan.modules.insert(inline.clone());
                scopes.push((inline, depth));
                (depth, i) = (depth + 1, i + 3);
                continue;
            }
            "crate" | "super" | "self" if path_start => {
                let mut leaves = Vec::new();
                i = parse_use_tree(&tokens, i, Vec::new(), &mut leaves);
                for (segments, line) in leaves {
                    let evidence = format!("src/{path}:{line} uses {}", segments.join("::"));
                    let target = resolve(&current, &segments);
                    scan.references.push((current.clone(), target, evidence));
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// If `#[cfg(test)]` or `#![cfg(test)]` starts at `i`, the index after it.
fn cfg_test_attribute(tokens: &[Token], i: usize) -> Option<usize> {
    let inner = usize::from(text(tokens, i + 1) == "!");
    let attribute = ["[", "cfg", "(", "test", ")", "]"];
    let found = (0..attribute.len()).all(|k| text(tokens, i + 1 + inner + k) == attribute[k]);
    (text(tokens, i) == "#" && found).then_some(i + 1 + inner + attribute.len())
}

/// Skips the item after a `#[cfg(test)]`: up to its `;`, or to the end of its
/// first `{...}` block. Returns the index after it, and the module it is when
/// it is `mod name;` (a test-only file).
fn skip_item(tokens: &[Token], mut i: usize, current: &[String]) -> (usize, Option<ModPath>) {
    let (mut depth, mut declared) = (0, None);
    while i < tokens.len() {
        match text(tokens, i) {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth -= 1,
            ";" if depth == 0 => return (i + 1, declared),
            "mod" if depth == 0 && text(tokens, i + 2) == ";" => {
                declared = Some(child(current, text(tokens, i + 1)));
            }
            _ => {}
        }
        if depth < 0 {
            return (i, declared); // the enclosing block ended: leave its `}`
        }
        i += 1;
        if depth == 0 && text(tokens, i - 1) == "}" {
            break;
        }
    }
    (i, declared)
}

/// Reads the path or use tree starting at `i` (`crate::a::{b, c::{self, D}}`),
/// appending each leaf path and the line of its last segment to `leaves`.
/// Returns the index after the tree.
fn parse_use_tree(
    tokens: &[Token],
    mut i: usize,
    mut path: Vec<String>,
    leaves: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    loop {
        let word = text(tokens, i);
        if word == "{" {
            i += 1;
            while !matches!(text(tokens, i), "}" | "") {
                if text(tokens, i) == "," {
                    i += 1;
                } else {
                    i = parse_use_tree(tokens, i, path.clone(), leaves).max(i + 1);
                }
            }
            return i + 1;
        }
        if !is_ident(word) {
            // A glob, a turbofish, a call...: the path so far is the reference.
            if !path.is_empty() {
                leaves.push((path, tokens[i - 1].1));
            }
            return i + usize::from(word == "*");
        }
        if word != "self" || path.is_empty() {
            path.push(word.to_string()); // but `a::{self}` is `a` itself
        }
        i += 1;
        if text(tokens, i) != "::" {
            leaves.push((path, tokens[i - 1].1));
            return if text(tokens, i) == "as" { i + 2 } else { i };
        }
        i += 1;
    }
}

/// The absolute path of `segments`, a path written in module `from`.
fn resolve(from: &[String], segments: &[String]) -> ModPath {
    let mut target = from.to_vec();
    for segment in segments {
        match segment.as_str() {
            "crate" => target.clear(), // only ever first
            "self" => {}
            "super" => _ = target.pop(),
            _ => target.push(segment.clone()),
        }
    }
    target
}

/// Checks the rule over `files`, (path relative to `src/`, source text).
/// Ok: the top-level modules in layering order, dependencies first.
/// Err: the report, one line per cycle, after a line listing the modules on
/// cycles at each level where there are more than two.
fn check_layering(files: &[(String, String)]) -> Result<Vec<String>, Vec<String>> {
    let mut scan = Scan::default();
    for (path, src) in files {
        if let Some(module) = module_of_file(path) {
            scan_file(path, &module, src, &mut scan);
        }
    }
    let is_test = |m: &[String]| scan.test_only.iter().any(|t| m.starts_with(t));
    scan.modules.retain(|m| m.is_empty() || !is_test(m));
    let modules = scan.modules;

    // A reference is an edge between the children of its two ends' deepest
    // common ancestor, unless one end contains the other.
    let mut levels: BTreeMap<ModPath, Graph> = BTreeMap::new();
    for (from, target, evidence) in scan.references.iter().filter(|r| !is_test(&r.0)) {
        let mut prefixes = (0..=target.len()).rev().map(|n| &target[..n]);
        let target = prefixes.find(|&p| modules.contains(p)).unwrap_or(&[]);
        let common = from.iter().zip(target).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == target.len() {
            continue;
        }
        let graph = levels.entry(from[..common].to_vec()).or_default();
        let edges = graph.entry(from[..=common].to_vec()).or_default();
        let edge = edges.entry(target[..=common].to_vec());
        edge.or_insert((evidence.clone(), 0)).1 += 1;
    }

    let mut report = Vec::new();
    for (parent, graph) in &levels {
        // An edge a -> b is on a cycle when b leads back to a. Show the
        // shortest such cycles until every edge on a cycle has been shown.
        let mut cycles = Vec::new();
        for (a, targets) in graph {
            let back = |b| Some([vec![a], path(graph, b, a)?].concat());
            cycles.extend(targets.keys().filter_map(back));
        }
        cycles.sort_by_key(Vec::len);
        let (first_line, mut shown) = (report.len(), BTreeSet::new());
        for cycle in cycles {
            let edges: Vec<_> = cycle.windows(2).map(|w| (w[0], w[1])).collect();
            if edges.iter().all(|e| shown.contains(e)) {
                continue;
            }
            shown.extend(edges);
            let names: Vec<String> = cycle.iter().map(|m| module_name(m)).collect();
            let evidence: Vec<String> = (cycle.windows(2))
                .map(|w| match &graph[w[0]][w[1]] {
                    (first, 1) => first.clone(),
                    (first, n) => format!("{first} [+{} more]", n - 1),
                })
                .collect();
            let (names, evidence) = (names.join(" -> "), evidence.join("; "));
            report.push(format!("import cycle: {names} ({evidence})"));
        }
        let tangled: BTreeSet<String> = shown.iter().map(|e| module_name(e.0)).collect();
        if tangled.len() > 2 {
            let list = tangled.into_iter().collect::<Vec<_>>().join(", ");
            let under = module_name(parent);
            report.insert(
                first_line,
                format!("on import cycles under {under}: {list}"),
            );
        }
    }
    if !report.is_empty() {
        return Err(report);
    }

    // Layer the top level: each round places the modules whose dependencies
    // are all placed (without cycles, every round places some).
    let top = levels.remove(&Vec::new()).unwrap_or_default();
    let mut remaining: Vec<&ModPath> = modules.iter().filter(|m| m.len() == 1).collect();
    let mut layers: Vec<&ModPath> = Vec::new();
    while !remaining.is_empty() {
        let (ready, rest): (Vec<_>, Vec<_>) = remaining.into_iter().partition(|&m| {
            top.get(m)
                .is_none_or(|deps| deps.keys().all(|d| layers.contains(&d)))
        });
        assert!(!ready.is_empty(), "no next layer among {rest:?}");
        (layers, remaining) = ([layers, ready].concat(), rest);
    }
    Ok(layers.iter().map(|m| module_name(m)).collect())
}

/// A shortest path `[from, ..., to]` in `graph` (just `[from]` when `from == to`).
fn path<'a>(graph: &'a Graph, from: &'a ModPath, to: &ModPath) -> Option<Vec<&'a ModPath>> {
    let (mut came_from, mut queue) = (BTreeMap::from([(from, from)]), VecDeque::from([from]));
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut path = vec![node];
            while path[path.len() - 1] != from {
                path.push(came_from[path[path.len() - 1]]);
            }
            path.reverse();
            return Some(path);
        }
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, text).
fn read_sources(dir: &Path, prefix: &str, files: &mut Vec<(String, String)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        let rel = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            read_sources(&path, &format!("{rel}/"), files);
        } else if rel.ends_with(".rs") {
            let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
            files.push((rel, src));
        }
    }
}

#[test]
fn library_modules_are_layered_without_import_cycles() {
    let mut files = Vec::new();
    read_sources(Path::new(SRC_DIR), "", &mut files);
    assert!(
        files.iter().any(|(path, _)| path == "lib.rs"),
        "no {SRC_DIR}/lib.rs"
    );
    match check_layering(&files) {
        Ok(layers) => eprintln!("layers: {}", layers.join(", ")),
        Err(report) => panic!(
            "the library's modules must be layered (the rule is at the top of \
             tests/module_graph.rs), but they import each other in cycles:\n  {}",
            report.join("\n  ")
        ),
    }
}

/// A fake tree for the checker itself: each `--- path` line starts a file.
/// It has two cycles, `a <-> c` at the top and `d::x <-> d::y` below `d`, each
/// closed by a line marked "back edge"; without those lines it has none.
/// Nothing else in it may count: were any other mention counted, a cycle
/// through `b` or `d` would appear, or `main` would become a layer.
const FAKE_TREE: &str = r##"
--- lib.rs
pub mod a; pub mod b; pub mod c; pub mod d;
pub fn root() {}
--- main.rs
fn main() { crate::b::g(); }
--- a/mod.rs
mod inner;
pub use self::inner::f;
use crate::{root, c::{self, h}};
--- a/inner.rs
pub fn f() {
    super::super::c::h();
}
--- b.rs
fn g() { crate::c::h() }
use crate::d::x::X;
--- c.rs
/* crate::b */ pub fn h() {}
// crate::b::g
const S: &str = "crate::b"; const Q: char = '"'; const R: &str = r#"crate::b"#;
fn i() { crate::a::f() } // back edge
fn j<'a>(s: &'a str) -> &'a str { s }
#[cfg(test)]
mod tests { use crate::b::g; }
--- c/tests.rs
use crate::b::g;
--- d/mod.rs
mod x; mod y;
#[cfg(test)]
mod fixtures;
/// [`crate::c`]
pub mod kind { pub use super::super::a::f; }
--- d/x.rs
use super::y::Y;
pub struct X;
--- d/y.rs
use super::x::X; // back edge
pub struct Y(#[allow(unused)] u8);
--- d/fixtures.rs
use crate::b::g;
"##;

fn fake_tree(cyclic: bool) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in FAKE_TREE.lines().skip(1) {
        if let Some(path) = line.strip_prefix("--- ") {
            files.push((path.to_string(), String::new()));
        } else if let Some((_, src)) = files.last_mut() {
            // An emptied back edge still takes its line: the evidence lines stay put.
            if cyclic || !line.ends_with("// back edge") {
                src.push_str(line);
            }
            src.push('\n');
        }
    }
    files
}

#[test]
fn checker_reports_the_cycles_of_a_fake_tree() {
    let report = check_layering(&fake_tree(true)).expect_err("the fake tree has cycles");
    let expected = [
        "import cycle: a -> c -> a (src/a/mod.rs:3 uses crate::c [+2 more]; src/c.rs:4 uses crate::a::f)",
        "import cycle: d::x -> d::y -> d::x (src/d/x.rs:1 uses super::y::Y; src/d/y.rs:1 uses super::x::X)",
    ];
    assert_eq!(report, expected);
}

#[test]
fn checker_passes_an_acyclic_fake_tree() {
    let layers = check_layering(&fake_tree(false)).expect("the fake tree has no cycle");
    assert_eq!(layers, ["c", "a", "d", "b"]);
}
