//! Tidy checks on the source tree (rust-analyzer style): plain file reads from
//! `CARGO_MANIFEST_DIR`, no build, each rule small enough to read.
//!
//! - **Module docs.** Every file under `src/` starts with a `//!` line saying what it is.
//! - **Layers.** The table under `# Layers` in `src/lib.rs` is true. Each of its rows reads
//!   `NAME -> A, B, C` (two rows may share a line; a parenthesised remark is ignored;
//!   `everything below it` means every row after it; `nothing` means no module). A file belongs
//!   to the top-level module it is in (`src/X.rs` and `src/X/**` are `X`; `src/main.rs` is the
//!   row `main.rs`); every crate module it names in code (`crate::X`, `crate::{X, ..}`, and in
//!   `main.rs` `esmd::X`), comments and string literals aside, must be itself or one of its
//!   row's. Every module of `src/lib.rs` has a row and every row is a module. Exceptions are
//!   listed, each with its reason, in [`KNOWN_VIOLATIONS`]; an entry that no longer happens
//!   fails too, so the list shrinks as the code is fixed.
//! - **Sleeps.** Every `sleep(` in the code of `tests/` and `examples/` carries its reason: a
//!   trailing `// sleep-ok: <reason>` on its line, or on the line that ends its statement when
//!   rustfmt splits the call. (`benches/` does not follow the convention: its sleeps are the
//!   load generators' pacing, not waits.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer violations that exist today, as `(from, to)` pairs (`to` is `"<no row>"` for a module
/// missing from the table), each with why it is allowed for now.
const KNOWN_VIOLATIONS: &[(&str, &str, &str)] = &[];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `text` with comments, string literals and char literals blanked out (newlines kept, so line
/// numbers stay), leaving only code to search.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
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
        } else if (c[i] == 'r' || (c[i] == 'b' && at(i + 1) == 'r'))
            && (i == 0 || !ident(c[i - 1]))
            && {
                let mut k = i + if c[i] == 'b' { 2 } else { 1 };
                while at(k) == '#' {
                    k += 1;
                }
                at(k) == '"'
            }
        {
            // A raw string: r"..", r#".."#, br#".."#.
            let start = i + if c[i] == 'b' { 2 } else { 1 };
            let mut k = start;
            while at(k) == '#' {
                k += 1;
            }
            let hashes = k - start;
            let mut j = k + 1;
            while j < c.len() && !(c[j] == '"' && (1..=hashes).all(|h| at(j + h) == '#')) {
                j += 1;
            }
            let end = (j + 1 + hashes).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c[i] == '"' {
            blank(&mut out, c[i]);
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A char literal ('x', '\n', '\u{..}'); otherwise a lifetime, kept as code.
            let mut j = i + 2;
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            let end = (j + 1).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Module docs
// ---------------------------------------------------------------------------------------------

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let files = rust_files(&root().join("src"));
    assert!(files.len() > 10, "the source tree was found: {files:?}");
    let bare: Vec<String> = files
        .iter()
        .filter(|f| !read(f).starts_with("//!"))
        .map(|f| rel(f))
        .collect();
    assert!(
        bare.is_empty(),
        "these files do not start with a `//!` module doc: {bare:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// What a row allows.
#[derive(Debug, Clone, PartialEq)]
enum Allowed {
    Modules(BTreeSet<String>),
    EverythingBelow,
}

/// The rows of the `# Layers` table of `lib_rs`, in reading order.
fn layer_table(lib_rs: &str) -> Vec<(String, Allowed)> {
    let docs: Vec<&str> = lib_rs
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let heading = docs
        .iter()
        .position(|l| l.trim_start().starts_with("# Layers"))
        .expect("src/lib.rs has a `# Layers` section");
    let open = heading
        + docs[heading..]
            .iter()
            .position(|l| l.trim_start().starts_with("```"))
            .expect("the `# Layers` section has a code block");
    let close = open
        + 1
        + docs[open + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with("```"))
            .expect("the layer table's code block ends");
    let mut rows = Vec::new();
    for line in &docs[open + 1..close] {
        let parts: Vec<&str> = line.split("->").collect();
        if parts.len() < 2 {
            continue;
        }
        // Each middle part is `<what the previous row allows> <next row's name>`.
        let mut name = parts[0].trim().to_owned();
        for (k, part) in parts[1..].iter().enumerate() {
            let last = k == parts.len() - 2;
            let (allows, next) = if last {
                (*part, "")
            } else {
                let t = part.trim_end();
                let cut = t.rfind(char::is_whitespace).unwrap_or(0);
                (&t[..cut], t[cut..].trim())
            };
            rows.push((name.clone(), allowed(allows)));
            name = next.to_owned();
        }
    }
    rows
}

/// Reads one row's right-hand side.
fn allowed(text: &str) -> Allowed {
    let mut plain = String::new();
    let mut depth = 0;
    for ch in text.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => plain.push(ch),
            _ => {}
        }
    }
    if plain.contains("everything below") {
        return Allowed::EverythingBelow;
    }
    if plain.trim().starts_with("nothing") {
        return Allowed::Modules(BTreeSet::new());
    }
    Allowed::Modules(
        plain
            .split(|ch: char| ch == ',' || ch.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// The modules `src/lib.rs` declares.
fn lib_modules(lib_rs: &str) -> BTreeSet<String> {
    code_only(lib_rs)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect()
}

/// The crate modules `code` names through `prefix` (`crate::` or `esmd::`), with line numbers:
/// `prefix X` and every first segment of `prefix {X, Y::Z, ..}`.
fn named_modules(code: &str, prefix: &str) -> Vec<(usize, String)> {
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find(prefix) {
            let start = from + at;
            from = start + prefix.len();
            if line[..start]
                .chars()
                .next_back()
                .is_some_and(|ch| ident(ch) || ch == '$')
            {
                continue;
            }
            let rest = &line[from..];
            if let Some(group) = rest.strip_prefix('{') {
                // First segments at depth 1 of the group (it may continue on later lines, but
                // rustfmt keeps `crate::{` groups of this codebase on one line or starts each
                // item on its own line; both are read here from the rest of the file).
                let tail: String = std::iter::once(group)
                    .chain(code.lines().skip(n + 1))
                    .collect::<Vec<_>>()
                    .join("\n");
                let mut depth = 1;
                let mut expect_name = true;
                let mut word = String::new();
                for ch in tail.chars() {
                    if ident(ch) {
                        word.push(ch);
                        continue;
                    }
                    if !word.is_empty() {
                        if expect_name && depth == 1 {
                            out.push((n + 1, std::mem::take(&mut word)));
                        }
                        word.clear();
                        expect_name = false;
                    }
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => expect_name = true,
                        _ => {}
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|&ch| ident(ch)).collect();
                if !name.is_empty() {
                    out.push((n + 1, name));
                }
            }
        }
    }
    out
}

#[test]
fn the_layer_table_is_parsed_as_written() {
    let rows = layer_table(
        "//! # Layers\n//!\n//! ```text\n//! main.rs -> a, b\n//! a  -> everything below it (root)\n\
         //! b  -> c, d   (never a)\n//! c  -> d       e -> d\n//! d  -> nothing in the crate\n//! ```\n",
    );
    let m = |names: &[&str]| Allowed::Modules(names.iter().map(|s| (*s).to_owned()).collect());
    assert_eq!(
        rows,
        [
            ("main.rs".to_owned(), m(&["a", "b"])),
            ("a".to_owned(), Allowed::EverythingBelow),
            ("b".to_owned(), m(&["c", "d"])),
            ("c".to_owned(), m(&["d"])),
            ("e".to_owned(), m(&["d"])),
            ("d".to_owned(), m(&[])),
        ]
    );
    let code = code_only(
        "use crate::{a::X, b::{Y, Z}, self};\n// crate::c\nlet s = \"crate::d\";\nuse crate::e::F;\n\
         pub(crate) fn f() -> crate::g::G { $crate::h::H; other_crate::i }\nuse crate::{\n    j::J,\n    k,\n};\n",
    );
    let names: Vec<String> = named_modules(&code, "crate::")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, ["a", "b", "self", "e", "g", "j", "k"]);
}

#[test]
fn the_layer_table_of_lib_rs_is_true() {
    let lib_rs = read(&root().join("src/lib.rs"));
    let rows = layer_table(&lib_rs);
    let modules = lib_modules(&lib_rs);
    assert!(
        modules.contains("domain") && rows.len() > 5,
        "the table and the modules were read: {rows:?} {modules:?}"
    );

    // What each row may name.
    let mut allows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, (name, allowed)) in rows.iter().enumerate() {
        let set = match allowed {
            Allowed::Modules(set) => set.clone(),
            Allowed::EverythingBelow => rows[k + 1..].iter().map(|(n, _)| n.clone()).collect(),
        };
        allows.insert(name.clone(), set);
    }

    // (violation, where) pairs.
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (name, set) in &allows {
        if name != "main.rs" && !modules.contains(name) {
            found
                .entry((name.clone(), "<not a module>".into()))
                .or_default()
                .push("src/lib.rs".into());
        }
        for m in set {
            if !modules.contains(m) {
                found
                    .entry((name.clone(), format!("<not a module: {m}>")))
                    .or_default()
                    .push("src/lib.rs".into());
            }
        }
    }
    for m in &modules {
        if !allows.contains_key(m) {
            found
                .entry((m.clone(), "<no row>".into()))
                .or_default()
                .push("src/lib.rs".into());
        }
    }
    for file in rust_files(&root().join("src")) {
        let path = rel(&file);
        let inside = file.strip_prefix(root().join("src")).expect("under src");
        let first = inside
            .components()
            .next()
            .expect("a path component")
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let (module, prefix) = match first.as_str() {
            "lib.rs" => continue,
            "main.rs" => ("main.rs".to_owned(), "esmd::"),
            f => (f.trim_end_matches(".rs").to_owned(), "crate::"),
        };
        let Some(allowed) = allows.get(&module) else {
            continue; // reported above as a module without a row
        };
        for (line, named) in named_modules(&code_only(&read(&file)), prefix) {
            if named == module || named == "self" || !modules.contains(&named) {
                continue;
            }
            if !allowed.contains(&named) {
                found
                    .entry((module.clone(), named))
                    .or_default()
                    .push(format!("{path}:{line}"));
            }
        }
    }

    let known: BTreeSet<(String, String)> = KNOWN_VIOLATIONS
        .iter()
        .map(|(a, b, _)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    let new: Vec<String> = found
        .iter()
        .filter(|(k, _)| !known.contains(k))
        .map(|((a, b), at)| format!("{a} -> {b} at {}", at.join(", ")))
        .collect();
    let stale: Vec<String> = known
        .iter()
        .filter(|k| !found.contains_key(k))
        .map(|(a, b)| format!("{a} -> {b}"))
        .collect();
    assert!(
        new.is_empty(),
        "the code breaks the layer table of src/lib.rs (fix the code, or the table if it is the \
         one that is wrong):\n  {}",
        new.join("\n  ")
    );
    assert!(
        stale.is_empty(),
        "these KNOWN_VIOLATIONS no longer happen; remove them from tests/it/tidy.rs: {stale:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Sleeps
// ---------------------------------------------------------------------------------------------

/// The reason in a `// sleep-ok: <reason>` comment on `line`, if any.
fn sleep_reason(line: &str) -> Option<&str> {
    let (_, reason) = line.split_once("// sleep-ok:")?;
    Some(reason.trim()).filter(|r| !r.is_empty())
}

/// The `sleep(` calls of `text` without a reason, as line numbers.
fn unexplained_sleeps(text: &str) -> Vec<usize> {
    let code = code_only(text);
    let code_lines: Vec<&str> = code.lines().collect();
    let lines: Vec<&str> = text.lines().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = Vec::new();
    for (n, line) in code_lines.iter().enumerate() {
        let calls = line.match_indices("sleep(").any(|(at, _)| {
            let before = line[..at].trim_end();
            !line[..at].chars().next_back().is_some_and(ident) && !before.ends_with("fn")
        });
        if !calls {
            continue;
        }
        // The statement ends on this line or, when rustfmt split the call, on a later one.
        let end = (n..code_lines.len().min(n + 8))
            .find(|&k| code_lines[k].contains(';') || code_lines[k].contains("=>"))
            .unwrap_or(n);
        let explained = sleep_reason(lines[n]).is_some() || sleep_reason(lines[end]).is_some();
        if !explained {
            out.push(n + 1);
        }
    }
    out
}

#[test]
fn the_sleep_rule_reads_as_documented() {
    let ok = "tokio::time::sleep(d).await; // sleep-ok: polling another process\n\
              tokio::time::sleep(\n    Duration::from_millis(5),\n)\n.await; // sleep-ok: split by rustfmt\n\
              let sleep_until = 1; // not a call\nfn sleep(d: u64) {}\nlet s = \"sleep(1)\";\n";
    assert_eq!(unexplained_sleeps(ok), Vec::<usize>::new());
    let bad = "std::thread::sleep(d);\ntokio::time::sleep(d).await; // sleep-ok:\n\
               tokio::time::sleep(d).await; // waiting\n";
    assert_eq!(unexplained_sleeps(bad), [1, 2, 3]);
}

#[test]
fn every_sleep_in_tests_and_examples_says_why() {
    let mut bad = Vec::new();
    let mut seen = 0;
    for dir in ["tests", "examples"] {
        for file in rust_files(&root().join(dir)) {
            let text = read(&file);
            seen += text.matches("sleep-ok:").count();
            for line in unexplained_sleeps(&text) {
                bad.push(format!("{}:{line}", rel(&file)));
            }
        }
    }
    assert!(
        seen > 5,
        "the test tree was found ({seen} sleep-ok comments)"
    );
    assert!(
        bad.is_empty(),
        "each of these sleeps needs a trailing `// sleep-ok: <reason>` (a test waits on a \
         condition, bounded, or on the manual clock; a sleep must say why it is not one): {bad:?}"
    );
}
