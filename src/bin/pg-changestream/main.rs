//! The `pg-changestream` command-line tool: a thin layer over the library.

fn main() {
    eprintln!("pg-changestream: the command-line tool is not built yet (see the CLI issue)");
    std::process::exit(2);
}
