//! The layering rules of this crate, checked on its source (or, with `LAYERING_SRC=<dir>`,
//! on another copy of `server/src/`, such as an older commit's from `git archive`).

use std::path::PathBuf;

use crate::graph::{dir_cycles, dir_graph, files_naming, top_level_cycles, top_level_graph, Cycle};

fn src() -> PathBuf {
    std::env::var_os("LAYERING_SRC").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"),
        PathBuf::from,
    )
}

/// Asserts there is no cycle, listing each one under `what` if there are.
fn assert_no_cycles(cycles: &[Cycle], what: &str) {
    assert!(
        cycles.is_empty(),
        "{what}:\n{}",
        cycles
            .iter()
            .map(|c| format!("  {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_files_of_jobs_import_each_other_in_one_direction() {
    assert_no_cycles(
        &dir_cycles(&src(), &src().join("jobs")),
        "server/src/jobs/ has import circles",
    );
    // Not vacuous: the graph has the files and the imports it should.
    let g = dir_graph(&src(), &src().join("jobs"));
    assert!(g.edges.len() >= 10, "{:?}", g.edges.keys());
    assert!(g.edges["mod.rs"].len() >= 5, "{:?}", g.edges["mod.rs"]);
}

#[test]
fn db_and_jobs_never_import_warp() {
    for dir in ["db", "jobs"] {
        let found = files_naming(&src(), &src().join(dir), "warp");
        assert_eq!(found, Vec::<String>::new(), "{dir}/ must not import warp");
    }
    // The check sees warp where it is used.
    assert!(!files_naming(&src(), &src(), "warp").is_empty());
}

#[test]
fn the_crate_s_top_level_modules_import_each_other_in_one_direction() {
    assert_no_cycles(
        &top_level_cycles(&src()),
        "top-level modules of server/src import each other in a circle",
    );
    // Not vacuous: the domains are in the graph with the arrows they should have.
    let g = top_level_graph(&src());
    for (from, to) in [
        ("directory", "auth"),
        ("messages", "auth"),
        ("relay", "messages"),
    ] {
        assert!(
            g.edges.get(from).is_some_and(|e| e.contains_key(to)),
            "{from} -> {to} missing: {:?}",
            g.edges.get(from)
        );
    }
    // Accounts never reach into the key directory (registration uses `keys`, a leaf).
    assert!(!g
        .edges
        .get("auth")
        .is_some_and(|e| e.contains_key("directory")));
}
