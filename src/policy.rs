//! Categories and what to do with them: the default action of each category and the
//! per-group overrides (`[categories]` and `[groups.NAME]` in the config).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// What happens to a name that a rule matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Answer it, note it in the hit log.
    Log,
    /// Answer with the blocked response, note it in the hit log.
    Block,
    /// Answer it; beats every block (user allow entries, `@@` exceptions).
    Allow,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Block => "block",
            Action::Allow => "allow",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Index of a category in [`Categories`].
pub(crate) type CategoryId = u16;

/// Category of `--blocklist` files and `filter.block` entries.
pub(crate) const CUSTOM: &str = "custom";
/// Category of `filter.allow` entries.
pub(crate) const ALLOW: &str = "allow";

/// The interned category names of one filter build.
#[derive(Debug, Default, Clone)]
pub struct Categories {
    names: Vec<Box<str>>,
}

impl Categories {
    /// Id of `name`, adding it when new.
    pub(crate) fn intern(&mut self, name: &str) -> CategoryId {
        if let Some(i) = self.names.iter().position(|n| &**n == name) {
            return i as CategoryId;
        }
        self.names.push(name.into());
        (self.names.len() - 1) as CategoryId
    }

    pub(crate) fn id(&self, name: &str) -> Option<CategoryId> {
        self.names
            .iter()
            .position(|n| &**n == name)
            .map(|i| i as CategoryId)
    }

    pub(crate) fn name(&self, id: CategoryId) -> &str {
        self.names.get(id as usize).map_or("?", |n| n)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (CategoryId, &str)> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as CategoryId, &**n))
    }
}

/// `[categories]`: action per category name, overriding the lists' own defaults.
pub(crate) type CategoryActions = BTreeMap<String, Action>;

/// `[groups.NAME]`: action per category for the devices of that group.
pub(crate) type GroupsConfig = BTreeMap<String, CategoryActions>;

/// Action tables, one per group plus the default, indexed by `CategoryId`, and one for
/// each `[[devices]]` entry with actions of its own or a pause.
#[derive(Debug, Clone)]
pub struct Policy {
    default: Vec<Action>,
    groups: HashMap<String, Vec<Action>>,
    /// By the device's index in `[[devices]]`.
    devices: Vec<Option<Box<[Action]>>>,
}

impl Policy {
    /// `list_defaults` are the actions the lists declare for their categories; the
    /// config's `[categories]` overrides them and `[groups.*]` overrides per group.
    pub fn new(
        categories: &Categories,
        list_defaults: &HashMap<CategoryId, Action>,
        config: &CategoryActions,
        groups: &GroupsConfig,
    ) -> Self {
        let default: Vec<Action> = categories
            .iter()
            .map(|(id, name)| {
                config
                    .get(name)
                    .copied()
                    .or_else(|| list_defaults.get(&id).copied())
                    .unwrap_or(match name {
                        ALLOW => Action::Allow,
                        CUSTOM => Action::Block,
                        _ => Action::Log,
                    })
            })
            .collect();
        let groups = groups
            .iter()
            .map(|(group, overrides)| {
                let table = categories
                    .iter()
                    .map(|(id, name)| overrides.get(name).copied().unwrap_or(default[id as usize]))
                    .collect();
                (group.clone(), table)
            })
            .collect();
        Policy {
            default,
            groups,
            devices: Vec::new(),
        }
    }

    /// Add the devices' own tables (their `categories` over their group's), and the
    /// pauses: while paused, every `block` of the household (`paused`) or of a device is
    /// a `log`.
    pub(crate) fn for_devices(
        mut self,
        categories: &Categories,
        devices: &[crate::clients::DeviceConfig],
        paused: bool,
    ) -> Self {
        let unblock = |t: &mut [Action]| {
            for a in t.iter_mut().filter(|a| **a == Action::Block) {
                *a = Action::Log;
            }
        };
        if paused {
            unblock(&mut self.default);
            self.groups.values_mut().for_each(|t| unblock(t));
        }
        self.devices = devices
            .iter()
            .map(|d| {
                if d.categories.is_empty() && !d.paused {
                    return None;
                }
                let mut t: Box<[Action]> = self.actions(d.group.as_deref()).into();
                for (id, name) in categories.iter() {
                    if let Some(a) = d.categories.get(name) {
                        t[id as usize] = *a;
                    }
                }
                if d.paused || paused {
                    unblock(&mut t);
                }
                Some(t)
            })
            .collect();
        self
    }

    /// The action table for `device`: its own, else its group's.
    pub(crate) fn actions_of(&self, device: &crate::clients::Device) -> &[Action] {
        device
            .configured
            .and_then(|i| self.devices.get(i as usize)?.as_deref())
            .unwrap_or_else(|| self.actions(device.group.as_deref()))
    }

    /// The action table for a device in `group` (the default table when none).
    pub fn actions(&self, group: Option<&str>) -> &[Action] {
        group
            .and_then(|g| self.groups.get(g))
            .map_or(&self.default, |t| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_beats_list_default_and_groups_override() {
        let mut cats = Categories::default();
        let pixel = cats.intern("pixel");
        let ai = cats.intern("meta-ai");
        let custom = cats.intern(CUSTOM);
        let defaults = HashMap::from([(pixel, Action::Block), (ai, Action::Log)]);
        let config = CategoryActions::from([("pixel".to_string(), Action::Log)]);
        let groups = GroupsConfig::from([(
            "kids".to_string(),
            CategoryActions::from([("meta-ai".to_string(), Action::Block)]),
        )]);
        let p = Policy::new(&cats, &defaults, &config, &groups);
        assert_eq!(p.actions(None)[pixel as usize], Action::Log);
        assert_eq!(p.actions(None)[ai as usize], Action::Log);
        assert_eq!(p.actions(None)[custom as usize], Action::Block);
        assert_eq!(p.actions(Some("kids"))[ai as usize], Action::Block);
        assert_eq!(p.actions(Some("kids"))[pixel as usize], Action::Log);
        assert_eq!(p.actions(Some("nope"))[ai as usize], Action::Log);
    }

    #[test]
    fn a_device_has_its_own_table_and_a_pause_turns_blocks_into_logs() {
        let mut cats = Categories::default();
        let pixel = cats.intern("pixel") as usize;
        let ai = cats.intern("meta-ai") as usize;
        let groups = GroupsConfig::from([(
            "kids".to_string(),
            CategoryActions::from([("meta-ai".to_string(), Action::Block)]),
        )]);
        let dev = |categories: CategoryActions, paused| crate::clients::DeviceConfig {
            name: Some("tablet".into()),
            matches: Vec::new(),
            group: Some("kids".into()),
            categories,
            paused,
        };
        let devices = [
            dev(
                CategoryActions::from([("pixel".to_string(), Action::Block)]),
                false,
            ),
            dev(CategoryActions::new(), true),
            dev(CategoryActions::new(), false),
        ];
        let p = Policy::new(&cats, &HashMap::new(), &CategoryActions::new(), &groups)
            .for_devices(&cats, &devices, false);
        let mut d = crate::clients::Device::from_addr([192, 168, 1, 2].into());
        d.group = Some("kids".into());
        d.configured = Some(0);
        assert_eq!(p.actions_of(&d)[pixel], Action::Block, "its own");
        assert_eq!(p.actions_of(&d)[ai], Action::Block, "its group's");
        d.configured = Some(1);
        assert_eq!(p.actions_of(&d)[ai], Action::Log, "paused");
        d.configured = Some(2);
        assert_eq!(p.actions_of(&d)[ai], Action::Block, "no table: the group's");
        let all = Policy::new(&cats, &HashMap::new(), &CategoryActions::new(), &groups)
            .for_devices(&cats, &devices, true);
        assert_eq!(
            all.actions(Some("kids"))[ai],
            Action::Log,
            "everyone paused"
        );
        d.configured = Some(0);
        assert_eq!(all.actions_of(&d)[pixel], Action::Log);
    }
}
