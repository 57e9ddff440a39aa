//! The snapshot: everything a query reads (settings, compiled filter, policy,
//! upstreams, access, devices), built once per (re)load and swapped whole. [`compile`]
//! is the one filter+policy compile: `serve`, `check` and `lists` all call it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::verdicts::Verdicts;
use super::{ServeError, ServerConfig};
use crate::access::{self, Access, default_allow_clients};
use crate::clients::{Clients, Device};
use crate::config::Config;
use crate::filter::{Filter, Verdict};
use crate::lists::{self, ListError};
use crate::policy::Policy;
use crate::upstream::{self, UpstreamError, Upstreams};

/// The lists of `config` compiled into the filter, and the policy (category actions,
/// groups) over its categories: what `serve` answers with, `check` explains and
/// `lists` shows.
pub(crate) fn compile(config: &Config) -> Result<(Filter, Policy), ListError> {
    let opts = crate::filter::BuildOptions {
        cache_dir: Some(config.remote.state_dir.join("compiled")),
        ..Default::default()
    };
    let filter = Filter::build_with(lists::all_sources(config)?, &opts);
    let policy = Policy::new(
        filter.categories(),
        filter.list_defaults(),
        &config.categories,
        &config.groups,
    )
    .for_devices(filter.categories(), &config.devices, config.paused);
    Ok((filter, policy))
}

/// Everything a query reads, built once per (re)load and swapped whole.
pub(crate) struct Snapshot {
    pub(crate) config: Config,
    pub(crate) filter: Filter,
    pub(crate) policy: Policy,
    pub(crate) upstreams: Upstreams,
    pub(crate) access: Access,
    pub(crate) clients: Arc<Clients>,
    pub(crate) deadline: Duration,
    /// The filter's verdicts on names already asked for.
    verdicts: Verdicts,
}

impl Snapshot {
    /// Build from a config: read the lists, compile the filter, set up upstreams.
    /// `own` are the addresses we listen on (never used as upstream).
    /// `starting`: a resolv.conf with no usable nameserver (not written yet at boot, or
    /// naming only ourselves) gives no upstream instead of an error, as dnsmasq starts
    /// and waits for one; on reload it is an error and the running snapshot stays.
    pub(crate) fn build(
        config: Config,
        own: &[SocketAddr],
        starting: bool,
    ) -> Result<Snapshot, ServeError> {
        let (filter, policy) = compile(&config)?;
        let specs = if let Some(resolv_conf) = config.upstream.resolv_conf_in_use() {
            match upstream::from_resolv_conf(resolv_conf, own) {
                Ok(specs) => specs,
                Err(e @ (UpstreamError::NoneUsable { .. } | UpstreamError::ResolvConf { .. }))
                    if starting =>
                {
                    tracing::warn!(
                        "{e}. Until it has one, blocked names are answered and the rest get \
                         SERVFAIL; the file is read again when it changes"
                    );
                    Vec::new()
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            config.upstream.servers.clone()
        };
        let upstreams = Upstreams::new(&specs, &config.upstream, &config.tls)?;
        let access = Access::new(&allowed_clients(&config.server), &config.server.rate_limit);
        let clients = Arc::new(Clients::new(&config.devices, &config.clients)?);
        Ok(Snapshot {
            clients,
            deadline: config.upstream.deadline,
            config,
            filter,
            policy,
            upstreams,
            access,
            verdicts: Verdicts::new(),
        })
    }

    /// The filter's verdict on `name` (normalized) for `device`, with its group's or its
    /// own action table; remembered for the next query of the same name.
    pub(crate) fn verdict(&self, name: &str, device: &Device) -> Verdict {
        let actions = self.policy.actions_of(device);
        self.verdicts.check(&self.filter, name, actions)
    }

    /// One INFO line with the rule counts per category.
    pub(super) fn log_loaded(&self, what: &str) {
        let mut per_cat: Vec<(String, usize)> = Vec::new();
        for l in self.filter.lists() {
            match per_cat.iter_mut().find(|(c, _)| *c == l.category) {
                Some((_, n)) => *n += l.rules,
                None => per_cat.push((l.category.clone(), l.rules)),
            }
            if l.bad_lines > 0 {
                tracing::warn!(list = %l.name, bad_lines = l.bad_lines, "skipped unreadable lines");
            }
        }
        let detail = per_cat
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let ups = self
            .upstreams
            .specs()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let ups = if ups.is_empty() { "none".into() } else { ups };
        tracing::info!(
            "{what} {} rules from {} lists ({detail}); upstream {ups}",
            self.filter.rule_count(),
            self.filter.lists().len()
        );
    }
}

/// `allow_clients` when set; else the default networks and the subnets of this host's
/// interfaces (read now: at start and on each reload), which are logged.
fn allowed_clients(server: &ServerConfig) -> Vec<IpNet> {
    if let Some(explicit) = &server.allow_clients {
        return explicit.clone();
    }
    let mut allow = default_allow_clients();
    let local = access::interface_subnets(&allow);
    if !local.is_empty() {
        let shown = local
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        tracing::info!(
            "allow_clients is not set: answering loopback, the private and link-local \
             networks, and this host's subnets {shown}"
        );
    }
    allow.extend(local);
    allow
}
