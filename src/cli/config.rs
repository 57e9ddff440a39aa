//! `metaguard config check`: the effective config (the file, then the household controls
//! laid over it, with where they come from), or its errors with file:line:column.

use std::path::Path;

use crate::config::Config;

/// Print the effective config (exit code 0), or each error on its own line (1).
pub(crate) fn check(path: Option<&Path>) -> i32 {
    let result = match path {
        Some(p) => Config::load(p),
        None => Config::locate(None).map(|(c, _)| c),
    };
    let mut c = match result {
        Ok(c) => c,
        Err(e) => {
            // One line a problem, each with its file:line:column.
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            return 1;
        }
    };
    let file = crate::controls::path(&c.remote.state_dir);
    let controls = match crate::controls::Controls::load(&file) {
        Ok(controls) => controls,
        Err(e) => {
            eprintln!("error: household controls: {e}");
            return 1;
        }
    };
    let now = crate::controls::clock::now();
    let applied = crate::controls::overlay::apply(&mut c, &controls, now);
    print!("{}", c.to_toml());
    let tz = crate::report::local_tz();
    let lines = super::controls::describe(&controls, now, &tz);
    if lines.is_empty() && applied.skipped.is_empty() {
        return 0;
    }
    println!(
        "\n# Laid over the file above: household controls from {} (set on the dashboard \
         or with `metaguard controls`):",
        file.display()
    );
    for l in &lines {
        println!("#   {l}");
    }
    for s in &applied.skipped {
        println!("#   left out: {s}");
    }
    let changes = super::controls::read_audit(&c, 5);
    if !changes.is_empty() {
        println!("# Latest changes:");
        for e in &changes {
            println!("#   {}", super::controls::audit_line(e, &tz));
        }
    }
    0
}
