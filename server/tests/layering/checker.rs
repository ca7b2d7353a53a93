//! Tests of the checker itself on small made-up crates, so that a clean result on the real
//! source means something: it finds circles through `use super::…`, braced use trees,
//! `crate::…` paths in code and macro calls, and child-module paths in `mod.rs`, and it
//! ignores comments, strings and a `mod tests` block's `super::`.

use std::path::Path;

use crate::graph::{dir_cycles, files_naming, top_level_cycles};

/// Writes `files` (path relative to `src/`, text) into a fresh temp dir; returns it.
fn fixture(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        let p = dir.path().join("src").join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

fn src(d: &tempfile::TempDir) -> std::path::PathBuf {
    d.path().join("src")
}

#[test]
fn a_circle_through_use_super_is_found_and_named() {
    let d = fixture(&[
        ("lib.rs", "pub mod q;"),
        ("q/mod.rs", "mod a; mod b; mod c;"),
        ("q/a.rs", "use super::b::Thing;"),
        ("q/b.rs", "use super::{c::Other, d as _};"),
        ("q/c.rs", "fn f() { let _ = super::a::make(); }"),
    ]);
    let cycles = dir_cycles(&src(&d), &src(&d).join("q"));
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let c = &cycles[0];
    assert_eq!(c.members, ["a.rs", "b.rs", "c.rs"]);
    let steps: Vec<(&str, &str)> = c
        .edges
        .iter()
        .map(|(f, t, _)| (f.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        steps,
        [("a.rs", "b.rs"), ("b.rs", "c.rs"), ("c.rs", "a.rs")]
    );
    let text = c.to_string();
    assert!(text.contains("super::b::Thing"), "{text}");
    assert!(text.contains("super::a::make"), "{text}");
}

#[test]
fn importing_a_re_export_of_mod_rs_is_an_edge_to_mod_rs() {
    // mod.rs re-exports from a.rs and a.rs imports through mod.rs: a circle.
    let d = fixture(&[
        ("lib.rs", "pub mod q;"),
        ("q/mod.rs", "mod a; mod b; pub use a::A; pub use b::B;"),
        ("q/a.rs", "use super::B; pub struct A;"),
        ("q/b.rs", "pub struct B;"),
    ]);
    let cycles = dir_cycles(&src(&d), &src(&d).join("q"));
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0].members, ["a.rs", "mod.rs"]);
    // Importing from the defining file instead leaves no circle.
    let d = fixture(&[
        ("lib.rs", "pub mod q;"),
        ("q/mod.rs", "mod a; mod b; pub use a::A; pub use b::B;"),
        ("q/a.rs", "use super::b::B; pub struct A;"),
        ("q/b.rs", "pub struct B;"),
    ]);
    assert_eq!(dir_cycles(&src(&d), &src(&d).join("q")), []);
}

#[test]
fn crate_paths_in_code_and_macros_count_and_comments_and_strings_do_not() {
    let base = [
        ("lib.rs", "pub mod q;"),
        ("q/mod.rs", "mod a; mod b;"),
        (
            "q/b.rs",
            "fn g() { tracing::info!(x = ?crate::q::a::X, \"hi\"); }",
        ),
    ];
    let mut files = base.to_vec();
    files.push((
        "q/a.rs",
        "pub const X: u8 = 1; fn f() { let _ = crate::q::b::g; }",
    ));
    let d = fixture(&files);
    assert_eq!(dir_cycles(&src(&d), &src(&d).join("q")).len(), 1);

    let mut files = base.to_vec();
    files.push((
        "q/a.rs",
        "//! See [`super::b::g`].\n/// Uses crate::q::b::g\npub const X: u8 = 1;\n\
         /* super::b::g */ fn f() -> &'static str { \"super::b::g\" }",
    ));
    let d = fixture(&files);
    assert_eq!(dir_cycles(&src(&d), &src(&d).join("q")), []);
}

#[test]
fn child_module_paths_in_mod_rs_count() {
    let d = fixture(&[
        ("lib.rs", "pub mod q;"),
        ("q/mod.rs", "mod a; fn f() { a::run(); } pub struct Q;"),
        ("q/a.rs", "pub fn run() {} fn g(_: super::Q) {}"),
    ]);
    let cycles = dir_cycles(&src(&d), &src(&d).join("q"));
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0].members, ["a.rs", "mod.rs"]);
}

#[test]
fn super_inside_an_inline_mod_tests_means_the_file_itself() {
    let d = fixture(&[
        ("lib.rs", "pub mod q;"),
        ("q/mod.rs", "mod a; mod b;"),
        (
            "q/a.rs",
            "use super::b::B; fn f() {} #[cfg(test)] mod tests { use super::f; }",
        ),
        (
            "q/b.rs",
            "pub struct B; #[cfg(test)] mod tests { use super::super::b::B; }",
        ),
    ]);
    assert_eq!(dir_cycles(&src(&d), &src(&d).join("q")), []);
    let d = fixture(&[
        ("lib.rs", "pub mod q;"),
        ("q/mod.rs", "mod a; mod b;"),
        ("q/a.rs", "use super::b::B; pub fn f() {}"),
        (
            "q/b.rs",
            "pub struct B; #[cfg(test)] mod tests { use super::super::a::f; }",
        ),
    ]);
    assert_eq!(dir_cycles(&src(&d), &src(&d).join("q")).len(), 1);
}

#[test]
fn top_level_modules_in_a_circle_are_listed() {
    let d = fixture(&[
        (
            "lib.rs",
            "pub mod auth; pub mod directory; pub mod db; pub struct AppState;",
        ),
        (
            "auth/mod.rs",
            "mod routes; use crate::db::Db; use crate::AppState;",
        ),
        ("auth/routes.rs", "fn f() { crate::directory::lookup(); }"),
        ("directory/mod.rs", "use crate::{auth::Auth, db};"),
        ("db/mod.rs", "pub struct Db;"),
    ]);
    let cycles = top_level_cycles(&src(&d));
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0].members, ["auth", "directory"]);
    let text = cycles[0].to_string();
    assert!(
        text.contains("auth/routes.rs: crate::directory::lookup"),
        "{text}"
    );
    assert!(
        text.contains("directory/mod.rs: crate::auth::Auth"),
        "{text}"
    );

    let d = fixture(&[
        ("lib.rs", "pub mod auth; pub mod db;"),
        ("auth/mod.rs", "use crate::db::Db;"),
        ("db/mod.rs", "pub struct Db;"),
    ]);
    assert_eq!(top_level_cycles(&src(&d)), []);
}

#[test]
fn a_file_naming_warp_is_found() {
    let d = fixture(&[
        ("lib.rs", "pub mod q;"),
        ("q/mod.rs", "mod a; mod b; mod c;"),
        ("q/a.rs", "use warp::Filter;"),
        ("q/b.rs", "fn f() -> impl ::warp::Reply { todo!() }"),
        (
            "q/c.rs",
            "// warp::Filter is not used here\nconst S: &str = \"warp::x\";",
        ),
    ]);
    let s = src(&d);
    assert_eq!(files_naming(&s, &s.join("q"), "warp"), ["q/a.rs", "q/b.rs"]);
    assert!(Path::new(&s).exists());
}
