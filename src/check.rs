//! The verdict for names under the same config and lists as `serve`, with the rule,
//! list and line that decided it (`metaguard check` renders it in `cli/check.rs`).

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
    /// `--client` names no address, MAC or known device.
    #[error(
        "--client {0:?}: not an address or a MAC, and no device in [[devices]] or the leases has that name"
    )]
    NoSuchClient(String),
}

/// The device `--client` stands for, and the group whose actions decided.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct ClientLine {
    /// What was given.
    pub(crate) client: String,
    /// The device's log key (`mac:...` or `ip:...`), as `metaguard devices` shows it.
    pub(crate) key: String,
    pub(crate) name: Option<String>,
    pub(crate) mac: Option<String>,
    /// The group whose actions apply; `None`: the household defaults.
    pub(crate) group: Option<String>,
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
    /// With `--client`: the device's key and the group that decided (`None`: defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
}

/// The verdicts for `names`. `client` (an address, a MAC or a device name) picks the
/// device's policy: the group of the `[[devices]]` entry it matches, directly or through
/// its MAC in the neighbour tables or the lease files, as `serve` would see it now.
pub(crate) fn verdicts(
    config: &Config,
    names: &[String],
    client: Option<&str>,
) -> Result<(Option<ClientLine>, Vec<CheckLine>), CheckError> {
    verdicts_with(config, &config.clients, names, client)
}

/// [`verdicts`] with the device tables read as `clients` says (tests leave out the
/// machine's own neighbour tables).
fn verdicts_with(
    config: &Config,
    clients: &ClientsConfig,
    names: &[String],
    client: Option<&str>,
) -> Result<(Option<ClientLine>, Vec<CheckLine>), CheckError> {
    let (filter, policy) = crate::server::compile(config)?;
    let clients = Clients::new(&config.devices, clients)?;
    clients.refresh_now();
    let device = client
        .map(|c| {
            clients
                .lookup(c)
                .ok_or_else(|| CheckError::NoSuchClient(c.to_string()))
        })
        .transpose()?;
    let actions = match &device {
        Some(d) => policy.actions_of(d),
        None => policy.actions(None),
    };
    let who = client.zip(device.as_ref()).map(|(c, d)| ClientLine {
        client: c.to_string(),
        key: d.key.as_str().to_string(),
        name: d.name.as_deref().map(str::to_string),
        mac: d.mac.map(|m| m.to_string()),
        group: d.group.as_deref().map(str::to_string),
    });
    let lines = names
        .iter()
        .map(|raw| CheckLine {
            device: who
                .as_ref()
                .map(|w| w.name.clone().unwrap_or(w.key.clone())),
            group: who.as_ref().and_then(|w| w.group.clone()),
            ..line(&filter, actions, raw)
        })
        .collect();
    Ok((who, lines))
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
        device: None,
        group: None,
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
        let tables = ClientsConfig {
            neighbours: false,
            ..config.clients.clone()
        };
        let action = |client: Option<&str>| {
            let (_, lines) = verdicts_with(&config, &tables, &names, client).unwrap();
            (lines[0].action, lines[0].category.clone())
        };
        let meta_ai = Some("meta-ai".to_string());
        assert_eq!(action(Some("192.168.1.23")), ("block", meta_ai.clone()));
        assert_eq!(action(Some("192.168.1.42")), ("block", meta_ai.clone()));
        assert_eq!(action(Some("192.168.1.99")), ("log", meta_ai.clone()));
        assert_eq!(action(None), ("log", meta_ai.clone()));
        // By MAC (any case) and by name, configured or from the leases.
        assert_eq!(
            action(Some("AA:BB:CC:DD:EE:02")),
            ("block", meta_ai.clone())
        );
        assert_eq!(action(Some("Phone")), ("block", meta_ai.clone()));
        assert_eq!(action(Some("tablet")), ("block", meta_ai.clone()));

        // It says which device and group decided.
        let (who, lines) = verdicts_with(&config, &tables, &names, Some("tablet")).unwrap();
        let who = who.unwrap();
        assert_eq!(who.key, "mac:aa:bb:cc:dd:ee:02");
        assert_eq!(who.group.as_deref(), Some("kids"));
        assert_eq!(lines[0].device.as_deref(), Some("tablet"));
        assert_eq!(lines[0].group.as_deref(), Some("kids"));
        let (who, _) = verdicts_with(&config, &tables, &names, Some("192.168.1.99")).unwrap();
        assert_eq!(who.unwrap().group, None);
        assert!(matches!(
            verdicts_with(&config, &tables, &names, Some("nosuch")),
            Err(CheckError::NoSuchClient(c)) if c == "nosuch"
        ));
    }
}
