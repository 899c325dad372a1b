//! Build script of the `scent` package.
//!
//! `sqlx::migrate!("./deploy/migrations")` (in `src/archive/mod.rs`) embeds the SQL
//! migrations at compile time; Cargo does not know about that dependency, so this
//! script tells it to rebuild when a migration is added or edited.

fn main() {
    println!("cargo:rerun-if-changed=deploy/migrations");
}
