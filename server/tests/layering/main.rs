//! Tests of the crate's layering, read from its source: the files of a module directory (and
//! the top-level modules of the crate) must not import each other in a circle, and `db` and
//! `jobs` never import warp (ARCHITECTURE.md).

mod checker;
mod graph;
mod this_crate;
