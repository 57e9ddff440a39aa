//! `metaguard web password`: set the dashboard's admin password (stored as an argon2
//! hash in the state directory; a running `serve` uses it at the next login).

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};

use crate::config::Config;

/// Set the password: from stdin's first line, or a random one that is printed.
pub(crate) fn password(config: Option<&Path>, stdin: bool) -> anyhow::Result<String> {
    let (cfg, _) = Config::locate(config)?;
    let path = crate::web::password_path(&cfg.remote.state_dir);
    let (password, show) = if stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.chars().count() < 8 {
            bail!("the password must have at least 8 characters");
        }
        (p, false)
    } else {
        (crate::web::new_password(), true)
    };
    crate::web::set_password(&path, &password)?;
    Ok(if show {
        format!(
            "new dashboard password: {password}\n(stored hashed in {})\n",
            path.display()
        )
    } else {
        format!(
            "dashboard password set (stored hashed in {})\n",
            path.display()
        )
    })
}
