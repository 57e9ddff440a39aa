//! The verdict for names under the same config and lists as `serve`, with the rule,
//! list and line that decided it (`metaguard check` renders it in `cli/check.rs`).

use std::net::IpAddr;

use serde::Serialize;

use crate::clients::{Clients, ClientsConfig, ClientsError};
use crate::config::Config;
use crate::filter::{Filter, normalize_query};
use crate::lists::ListError;
use crate::policy::Action;

/// Why `check` could not give verdicts.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    #[error(transparent)]
    Lists(#[from] ListError),
    #[error(transparent)]
    Devices(#[from] ClientsError),
}

/// One line of `check --format json`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct CheckLine {
    pub(crate) name: String,
    pub(crate) action: &'static str,
    pub(crate) category: Option<String>,
    pub(crate) rule: Option<String>,
    pub(crate) list: Option<String>,
    pub(crate) line: Option<u32>,
}

/// The verdicts for `names`. `client` picks the device's policy: the group of the
/// `[[devices]]` entry it matches, directly or through its MAC in the lease files.
pub(crate) fn verdicts(
    config: &Config,
    names: &[String],
    client: Option<IpAddr>,
) -> Result<Vec<CheckLine>, CheckError> {
    let (filter, policy) = crate::server::compile(config)?;
    // Leases but no neighbour tables: `check` may run on another machine than `serve`,
    // and its answer should not depend on who happened to be in the ARP cache.
    let clients = Clients::new(
        &config.devices,
        &ClientsConfig {
            neighbours: false,
            ..config.clients.clone()
        },
    )?;
    clients.refresh_now();
    let device = client.map(|ip| clients.identify(ip, None));
    let actions = policy.actions(device.as_ref().and_then(|i| i.group.as_deref()));
    Ok(names
        .iter()
        .map(|raw| line(&filter, actions, raw))
        .collect())
}

/// The verdict for one name under a compiled filter and a device's actions.
pub(crate) fn line(filter: &Filter, actions: &[Action], raw: &str) -> CheckLine {
    let name = normalize_query(raw);
    let v = filter.check(&name, actions);
    let m = v.matched.as_ref();
    CheckLine {
        name: raw.to_string(),
        action: v.action.map_or("allow", |a| a.as_str()),
        category: m.map(|m| filter.categories().name(m.category).to_string()),
        rule: v.rule_text(&name),
        list: m.and_then(|m| filter.list(m.list)).map(|l| l.name.clone()),
        line: m.map(|m| m.line),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn client_in_a_group_gets_the_group_actions() {
        let dir = tempfile::tempdir().unwrap();
        let leases = dir.path().join("dnsmasq.leases");
        // The tablet is configured by MAC; its address is only in the leases.
        std::fs::write(
            &leases,
            "1718000000 aa:bb:cc:dd:ee:02 192.168.1.42 tablet *\n",
        )
        .unwrap();
        let text = format!(
            "[filter]\nlists_dir = \"{dir}/none\"\n\
             [groups.kids]\nmeta-ai = \"block\"\n\
             [[clients.leases]]\npath = \"{leases}\"\nformat = \"dnsmasq\"\n\
             [[devices]]\nname = \"phone\"\nmatch = [\"192.168.1.23\"]\ngroup = \"kids\"\n\
             [[devices]]\nname = \"tablet\"\nmatch = [\"aa:bb:cc:dd:ee:02\"]\ngroup = \"kids\"\n",
            dir = dir.path().display(),
            leases = leases.display(),
        );
        let config = Config::parse(&text, Path::new("t.toml")).unwrap();
        let names = ["meta.ai".to_string()];
        let action = |client: Option<&str>| {
            let lines = verdicts(&config, &names, client.map(|c| c.parse().unwrap())).unwrap();
            (lines[0].action, lines[0].category.clone())
        };
        let meta_ai = Some("meta-ai".to_string());
        assert_eq!(action(Some("192.168.1.23")), ("block", meta_ai.clone()));
        assert_eq!(action(Some("192.168.1.42")), ("block", meta_ai.clone()));
        assert_eq!(action(Some("192.168.1.99")), ("log", meta_ai.clone()));
        assert_eq!(action(None), ("log", meta_ai));
    }
}
