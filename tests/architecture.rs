//! The layer map of `src/lib.rs` kept true: every `crate::` path in the
//! code of `src/` (and every `super::` that leaves a module root) must name
//! a module of a lower rank than its own, and the files of one module
//! directory must not import each other in a circle (`mod.rs` aside).
//!
//! The map is read from `src/lib.rs`'s doc comment, so the test and the
//! map cannot disagree. Comments and doc comments are not code and are
//! skipped; string literals are blanked before scanning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `module → rank`, from the ```text block under "# Layers" in lib.rs.
fn layer_map(lib_rs: &str) -> BTreeMap<String, u32> {
    let mut map = BTreeMap::new();
    let mut in_layers = false;
    let mut in_block = false;
    for line in lib_rs.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim_start();
        if doc.starts_with("# ") {
            in_layers = doc == "# Layers";
            continue;
        }
        if in_layers && doc.starts_with("```") {
            if in_block {
                break;
            }
            in_block = true;
            continue;
        }
        if !in_block {
            continue;
        }
        // Columns are separated by two or more spaces: rank, modules,
        // what they are.
        let cols: Vec<&str> = doc
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let (Some(rank), Some(modules)) = (
            cols.first().and_then(|r| r.parse::<u32>().ok()),
            cols.get(1),
        ) else {
            continue;
        };
        for m in modules.split_whitespace() {
            map.insert(m.to_string(), rank);
        }
    }
    map
}

/// A file's code: comments removed, string and char literals blanked, so
/// neither a doc comment nor a message can name a module.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if b.get(i + 1) == Some(&b'#')
                || (b.get(i + 1) == Some(&b'"') && !prev_ident(b, i)) =>
            {
                // A raw string: r"..." or r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|c| **c == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || (b.get(i + 1) == Some(&b'\\')) => {
                // A char literal ('x' or '\n'); lifetimes ('a) pass.
                let mut j = i + 1;
                if b[j] == b'\\' {
                    j += 1;
                }
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn prev_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// The crate-level modules a file's code names: `crate::x`, `crate::{x, y}`,
/// and, from a module root file (`src/m.rs`, `src/m/mod.rs`), `super::x`;
/// from a file one level down, `super::super::x`. A `super::` path may
/// also start inside an inline module (`mod tests { use super::*; }`), so
/// only names that are crate modules count for those.
fn named_modules(code: &str, depth: usize, modules: &BTreeMap<String, u32>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let up = match depth {
        0 => "super::".to_string(),
        n => "super::".repeat(n + 1),
    };
    for (prefix, only_modules) in [("crate::".to_string(), false), (up, true)] {
        let mut rest = code;
        while let Some(at) = rest.find(&prefix) {
            let before = rest[..at].chars().last();
            let after = &rest[at + prefix.len()..];
            rest = after;
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(list) = after.strip_prefix('{') {
                let end = list.find('}').unwrap_or(list.len());
                for item in list[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && (!only_modules || modules.contains_key(&name)) {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && (!only_modules || modules.contains_key(&name)) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The crate-level module a file belongs to and how deep below its root it
/// is (`src/gateway/mod.rs` and `src/clock.rs` are roots, depth 0).
fn module_of(rel: &Path) -> Option<(String, usize)> {
    let parts: Vec<&str> = rel.iter().map(|s| s.to_str().unwrap()).collect();
    match parts.as_slice() {
        ["lib.rs"] | ["main.rs"] => None,
        [file] => Some((file.trim_end_matches(".rs").to_string(), 0)),
        [dir, rest @ ..] => {
            let depth = if rest == ["mod.rs"] { 0 } else { rest.len() };
            Some((dir.to_string(), depth))
        }
        [] => None,
    }
}

/// Every place a file names a module it may not, as "file: path".
fn violations(map: &BTreeMap<String, u32>, root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap();
        let Some((module, depth)) = module_of(rel) else {
            continue;
        };
        let Some(&rank) = map.get(&module) else {
            bad.push(format!(
                "src/{}: module `{module}` is not in the layer map",
                rel.display()
            ));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        for used in named_modules(&code, depth, map) {
            if used == module || used == "self" || used == "super" {
                continue;
            }
            match map.get(&used) {
                Some(&r) if r < rank => {}
                Some(&r) => bad.push(format!(
                    "src/{}: `{module}` (rank {rank}) uses `crate::{used}` (rank {r})",
                    rel.display()
                )),
                // Not a module of the crate (a macro path, a re-exported item
                // of lib.rs): lib.rs re-exports none, so it is a module name
                // the map lacks.
                None => bad.push(format!(
                    "src/{}: uses `crate::{used}`, which the layer map does not list",
                    rel.display()
                )),
            }
        }
    }
    bad
}

/// Cycles among the files of each module directory, through
/// `super::<sibling>` paths (`mod.rs`, which declares the children, aside).
fn file_cycles(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let dir = e.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let names: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
            .filter(|n| n != "mod")
            .collect();
        for n in &names {
            let code = code_of(&std::fs::read_to_string(dir.join(format!("{n}.rs"))).unwrap());
            // `super::x` from a child file names a sibling (or an item of
            // mod.rs, which is not a file of the graph).
            let siblings: BTreeSet<String> = named_sibling(&code)
                .into_iter()
                .filter(|s| names.contains(s) && s != n)
                .collect();
            graph.insert(n.clone(), siblings);
        }
        if let Some(cycle) = find_cycle(&graph) {
            found.push(format!(
                "src/{}: {}",
                dir.file_name().unwrap().to_str().unwrap(),
                cycle.join(" -> ")
            ));
        }
    }
    found
}

fn named_sibling(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("super::") {
        let before = rest[..at].chars().last();
        let after = &rest[at + "super::".len()..];
        rest = after;
        if before.is_some_and(|c| c == ':') || after.starts_with("super::") {
            continue;
        }
        if let Some(list) = after.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            for item in list[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_layer_map_names_every_module_of_lib_rs() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let map = layer_map(&lib);
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    let mapped: BTreeSet<String> = map.keys().cloned().collect();
    assert_eq!(
        declared, mapped,
        "lib.rs declares exactly the modules its map ranks"
    );
    assert_eq!(map["config"], 0);
}

#[test]
fn arrows_point_down() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let bad = violations(&layer_map(&lib), &src());
    assert!(
        bad.is_empty(),
        "imports against the layer map:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_files_of_a_module_do_not_import_each_other_in_a_circle() {
    let cycles = file_cycles(&src());
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The checker itself: an upward import, a sideways one, one hidden in a
/// brace list or behind `super::` from a module root, and a file cycle are
/// all found; comments and strings that name modules are not code.
#[test]
fn the_checker_finds_what_it_must_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("credgate-arch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("low")).unwrap();
    std::fs::create_dir_all(dir.join("high")).unwrap();
    let write = |p: &str, t: &str| std::fs::write(dir.join(p), t).unwrap();
    let map: BTreeMap<String, u32> = [("base", 0), ("low", 1), ("side", 1), ("high", 2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    write(
        "base.rs",
        "//! Not code: crate::high\nconst X: &str = \"crate::high\";\n",
    );
    write(
        "low/mod.rs",
        "mod a;\nmod b;\nuse crate::base;\nuse super::side;\n",
    );
    write("low/a.rs", "use super::b::X;\nuse crate::{base, high};\n");
    write(
        "low/b.rs",
        "use super::a::Y;\nfn f() { super::super::high::g(); }\n",
    );
    write("side.rs", "use crate::base;\n");
    write("high/mod.rs", "use crate::{low, side, base};\n");
    let mut bad = violations(&map, &dir);
    bad.sort();
    assert_eq!(
        bad,
        vec![
            "src/low/a.rs: `low` (rank 1) uses `crate::high` (rank 2)".to_string(),
            "src/low/b.rs: `low` (rank 1) uses `crate::high` (rank 2)".to_string(),
            "src/low/mod.rs: `low` (rank 1) uses `crate::side` (rank 1)".to_string(),
        ]
    );
    assert_eq!(file_cycles(&dir), vec!["src/low: a -> b -> a".to_string()]);
    assert_eq!(
        function_lengths(
            "fn a() {\n    if x { y }\n}\ntrait T { fn b(); }\npub(super) async fn c()\n{\n}\n"
        ),
        vec![("a".to_string(), 3), ("c".to_string(), 3)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The lengths of a file's functions, by name (brace matching on the code
/// with comments and strings removed).
fn function_lengths(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(super) ")
            .or_else(|| t.strip_prefix("pub(crate) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let t = t.strip_prefix("async ").unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let mut depth = 0i32;
        let mut opened = false;
        for (j, l) in lines.iter().enumerate().skip(i) {
            for c in l.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                out.push((name.clone(), j - i + 1));
                break;
            }
            if !opened && l.trim_end().ends_with(';') {
                break;
            }
        }
    }
    out
}

/// The pipeline reads as its phases: `process` under 60 lines, and no
/// function of `src/gateway/` over 120.
#[test]
fn gateway_functions_stay_short() {
    let dir = src().join("gateway");
    let mut long = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&p).unwrap());
        for (name, n) in function_lengths(&code) {
            let limit = if name == "process" { 60 } else { 120 };
            if n > limit {
                long.push(format!(
                    "{}: fn {name} is {n} lines (limit {limit})",
                    p.file_name().unwrap().to_str().unwrap()
                ));
            }
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
    let pipeline = code_of(&std::fs::read_to_string(dir.join("pipeline.rs")).unwrap());
    assert!(function_lengths(&pipeline)
        .iter()
        .any(|(n, _)| n == "process"));
}

/// The longest a source file of `src/` may be: past it, a file holds more
/// than one job (issue 26: rooms that match the product).
const MAX_FILE_LINES: usize = 1000;

/// The files of `src/` over `limit` lines, with their lengths.
fn long_files(root: &Path, limit: usize) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > limit).then(|| {
                let rel = f.strip_prefix(root).unwrap().display();
                format!("src/{rel}: {n} lines (limit {limit})")
            })
        })
        .collect()
}

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let long = long_files(&src(), MAX_FILE_LINES);
    assert!(long.is_empty(), "{}", long.join("\n"));
}

/// The room checks find what they must: a file over the limit, and the
/// admin room's code named from the pipeline (an arrow pointing up).
#[test]
fn the_room_checks_find_a_long_file_and_an_upward_use() {
    let root = std::env::temp_dir().join(format!("credgate-arch-rooms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("gateway")).unwrap();
    std::fs::create_dir_all(root.join("admin")).unwrap();
    std::fs::write(
        root.join("gateway/mod.rs"),
        "use crate::admin::recent::Recent;\n",
    )
    .unwrap();
    std::fs::write(root.join("admin/mod.rs"), "fn f() {}\n".repeat(12)).unwrap();
    let long = long_files(&root, 10);
    let map: BTreeMap<String, u32> = [("gateway".to_string(), 7), ("admin".to_string(), 8)]
        .into_iter()
        .collect();
    let up = violations(&map, &root);
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(
        long,
        vec!["src/admin/mod.rs: 12 lines (limit 10)".to_string()]
    );
    assert_eq!(
        up,
        vec!["src/gateway/mod.rs: `gateway` (rank 7) uses `crate::admin` (rank 8)".to_string()]
    );
}
