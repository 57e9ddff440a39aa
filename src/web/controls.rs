//! The dashboard's household controls: the forms on a device's page and on the Controls
//! page, and their POSTs (`/controls/...`). Each POST is one `controls::change::make`,
//! the same as `metaguard controls`, recorded under the session that made it; then the
//! running server is told, and applies it like a reload.

use hyper::StatusCode;
use maud::{Markup, html};

use super::auth::Session;
use super::http::{App, Body, html, param, redirect};
use super::pages::{layout, message};
use crate::clients::{DeviceMatch, Mac};
use crate::config::Config;
use crate::controls::change::{self, Change, NameList, Scope};
use crate::controls::{Controls, Schedule, audit, clock, pause_until};
use crate::policy::Action;

/// The pause lengths offered.
const PAUSES: [(&str, &str); 3] = [
    ("5m", "5 min"),
    ("1h", "1 hour"),
    ("tomorrow", "until tomorrow"),
];
const ACTIONS: [&str; 4] = ["default", "block", "log", "allow"];

/// What the device page needs to show its controls.
pub(super) struct DeviceControls {
    pub(super) id: i64,
    pub(super) group: Option<String>,
    pub(super) groups: Vec<String>,
    pub(super) categories: Vec<String>,
    pub(super) own: Vec<(String, Action)>,
    pub(super) paused_until: Option<i64>,
    pub(super) household_paused_until: Option<i64>,
}

impl DeviceControls {
    /// The controls of the device with `mac` and `addrs` under the running `cfg`.
    pub(super) fn of(cfg: &Config, id: i64, mac: Option<&str>, addrs: &[String]) -> Self {
        let mac = mac.and_then(|m| m.parse::<Mac>().ok());
        let ips: Vec<DeviceMatch> = addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .map(DeviceMatch::Ip)
            .collect();
        let is_it = |m: &DeviceMatch| match m {
            DeviceMatch::Mac(x) => Some(*x) == mac,
            other => ips.contains(other),
        };
        let entry = cfg.devices.iter().find(|d| d.matches.iter().any(is_it));
        let controls =
            Controls::load(&crate::controls::path(&cfg.remote.state_dir)).unwrap_or_default();
        let paused_until = controls
            .devices
            .iter()
            .find(|d| d.matches.iter().any(is_it))
            .and_then(|d| d.paused_until);
        DeviceControls {
            id,
            group: entry.and_then(|d| d.group.clone()),
            groups: cfg.groups.keys().cloned().collect(),
            categories: crate::lists::known_categories(cfg).into_iter().collect(),
            own: entry
                .map(|d| d.categories.iter().map(|(c, a)| (c.clone(), *a)).collect())
                .unwrap_or_default(),
            paused_until,
            household_paused_until: controls.paused_until,
        }
    }
}

fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// `paused until 21:00 (42 min left)`, or nothing.
fn paused_text(until: Option<i64>, now: i64) -> Option<String> {
    let t = until.filter(|t| *t > now)?;
    let at = crate::report::period::local(t, &crate::report::local_tz(), "%a %H:%M");
    Some(format!(
        "Paused until {at} ({} left)",
        crate::cli::table::ago(t - now)
    ))
}

/// The Controls part of a device's page.
pub(super) fn device_section(c: &DeviceControls, s: &Session) -> Markup {
    let now = clock::now();
    let back = format!("/device/{}", c.id);
    html! {
        h2 id="controls" { "Controls" }
        @if let Some(p) = paused_text(c.household_paused_until, now) {
            p class="note" { "Blocking is paused for everyone. " (p) "." }
        }
        form class="inline" id="group-form" method="post" action="/controls/group" {
            (csrf(s))
            input type="hidden" name="device" value=(c.id);
            input type="hidden" name="back" value=(back);
            label for="group-select" { "Group" }
            select id="group-select" name="group" {
                option value="" selected[c.group.is_none()] { "none" }
                @for g in &c.groups { option value=(g) selected[c.group.as_deref() == Some(g)] { (g) } }
            }
            button type="submit" id="group-save" { "Save group" }
        }
        form class="inline" id="rename-form" method="post" action="/controls/rename" {
            (csrf(s))
            input type="hidden" name="device" value=(c.id);
            input type="hidden" name="back" value=(back);
            label for="rename-name" { "Name" }
            input id="rename-name" name="name" required maxlength="100" size="16";
            button type="submit" { "Rename" }
        }
        form class="inline" id="merge-form" method="post" action="/controls/merge" {
            (csrf(s))
            input type="hidden" name="device" value=(c.id);
            input type="hidden" name="back" value=(back);
            label for="merge-other" { "Same device as" }
            input id="merge-other" name="other" required placeholder="id, name or MAC" size="16";
            button type="submit" { "Merge into this one" }
        }
        form class="inline" id="pause-form" method="post" action="/controls/pause" {
            (csrf(s))
            input type="hidden" name="device" value=(c.id);
            input type="hidden" name="back" value=(back);
            @match paused_text(c.paused_until, now) {
                Some(p) => {
                    span id="device-paused" { (p) }
                    button type="submit" name="length" value="off" id="resume" { "Resume blocking" }
                }
                None => {
                    span { "Pause blocking for this device:" }
                    @for (v, label) in PAUSES {
                        button type="submit" name="length" value=(v) id=(format!("pause-{v}")) { (label) }
                    }
                }
            }
        }
        form class="inline" id="device-action-form" method="post" action="/controls/action" {
            (csrf(s))
            input type="hidden" name="scope" value="device";
            input type="hidden" name="target" value=(c.id);
            input type="hidden" name="back" value=(back);
            label for="device-category" { "For this device," }
            select id="device-category" name="category" {
                @for cat in &c.categories { option value=(cat) { (cat) } }
            }
            select name="action" aria-label="action" {
                @for a in ACTIONS { option value=(a) { (a) } }
            }
            button type="submit" { "Set" }
        }
        @if !c.own.is_empty() {
            p class="muted" id="device-own-actions" {
                "Its own actions: "
                @for (i, (cat, a)) in c.own.iter().enumerate() { @if i > 0 { ", " } (cat) " " (a) }
            }
        }
    }
}

/// Allow and block buttons for one name (device page, names table).
pub(super) fn name_buttons(name: &str, back: &str, s: &Session) -> Markup {
    html! {
        form class="inline" method="post" action="/controls/name" {
            (csrf(s))
            input type="hidden" name="name" value=(name);
            input type="hidden" name="back" value=(back);
            button type="submit" name="list" value="allow" class="link" { "allow" }
            button type="submit" name="list" value="block" class="link" { "block" }
        }
    }
}

/// The Controls page: the household's pause and actions, group actions, names,
/// schedules, and the audit log.
pub(super) fn page(
    cfg: &Config,
    controls: &Controls,
    changes: &[audit::Entry],
    s: &Session,
) -> String {
    let now = clock::now();
    let tz = crate::report::local_tz();
    let categories: Vec<String> = crate::lists::known_categories(cfg).into_iter().collect();
    let groups: Vec<&String> = cfg.groups.keys().collect();
    let back = "/controls";
    let body = html! {
        h1 { "Controls" }
        p class="muted" { "Changes apply within a second, are kept across restarts, and are listed below with who made them." }
        h2 { "Pause" }
        form class="inline" id="household-pause-form" method="post" action="/controls/pause" {
            (csrf(s))
            input type="hidden" name="back" value=(back);
            @match paused_text(controls.paused_until, now) {
                Some(p) => {
                    span id="household-paused" { (p) }
                    button type="submit" name="length" value="off" { "Resume blocking" }
                }
                None => {
                    span { "Pause blocking for everyone:" }
                    @for (v, label) in PAUSES { button type="submit" name="length" value=(v) { (label) } }
                }
            }
        }
        h2 { "Actions" }
        (crate::web::controls::lines(controls, now, &tz))
        form class="inline" id="action-form" method="post" action="/controls/action" {
            (csrf(s))
            input type="hidden" name="back" value=(back);
            select name="scope" aria-label="for" {
                option value="household" { "household" }
                option value="group" { "group:" }
            }
            input name="target" placeholder="group (kids)" aria-label="group" size="10";
            select name="category" aria-label="category" { @for c in &categories { option value=(c) { (c) } } }
            select name="action" aria-label="action" { @for a in ACTIONS { option value=(a) { (a) } } }
            button type="submit" { "Set" }
        }
        p class="muted" { "Groups: " @if groups.is_empty() { "none yet (setting an action for a group makes it)." } @else { @for (i, g) in groups.iter().enumerate() { @if i > 0 { ", " } (g) } } }
        h2 { "Names" }
        @if controls.allow.is_empty() && controls.block.is_empty() { p { "No names allowed or blocked here." } } @else {
            div class="scroll" { table id="control-names" {
                thead { tr { th class="text" { "Name" } th class="text" { "List" } th {} } }
                tbody {
                    @for (n, l) in controls.allow.iter().map(|n| (n, "allowed")).chain(controls.block.iter().map(|n| (n, "blocked"))) {
                        tr { td class="name" { (n) } td class="text" { (l) }
                             td { form method="post" action="/controls/name" {
                                (csrf(s)) input type="hidden" name="name" value=(n.to_string());
                                input type="hidden" name="back" value=(back);
                                button type="submit" name="list" value="remove" class="link" { "remove" } } } }
                    }
                }
            } }
        }
        form class="inline" id="name-form" method="post" action="/controls/name" {
            (csrf(s))
            input type="hidden" name="back" value=(back);
            input name="name" placeholder="example.com" aria-label="name" required;
            button type="submit" name="list" value="allow" { "Allow" }
            button type="submit" name="list" value="block" { "Block" }
        }
        h2 { "Schedules" }
        @if controls.schedules.is_empty() { p { "No schedules." } } @else {
            ol id="schedules" { @for (i, sc) in controls.schedules.iter().enumerate() {
                li { "Group " (sc.group) ": " (change::schedule_text(sc))
                    form class="inline" method="post" action="/controls/unschedule" {
                        (csrf(s)) input type="hidden" name="number" value=(i + 1);
                        input type="hidden" name="back" value=(back);
                        button type="submit" class="link" { "remove" } } }
            } }
        }
        form class="inline" id="schedule-form" method="post" action="/controls/schedule" {
            (csrf(s))
            input type="hidden" name="back" value=(back);
            input name="group" placeholder="kids" aria-label="group" size="8" required;
            select name="category" aria-label="category" { @for c in &categories { option value=(c) selected[c == "meta-ai"] { (c) } } }
            select name="action" aria-label="action" { option { "block" } option { "log" } option { "allow" } }
            input name="days" value="sun-thu" aria-label="days" size="9";
            input name="from" value="20:00" aria-label="from" size="5";
            input name="to" value="07:00" aria-label="to" size="5";
            button type="submit" { "Add" }
        }
        h2 { "Changes" }
        @if changes.is_empty() { p { "No changes yet." } } @else {
            div class="scroll" { table id="audit" {
                thead { tr { th class="text" { "When" } th class="text" { "Who" } th class="text" { "What" } th class="text" { "Before" } th class="text" { "After" } } }
                tbody { @for e in changes { tr {
                    td class="text" { (crate::report::period::readable(e.ts, &tz)) } td class="text" { (e.actor) }
                    td class="text" { (e.what) } td class="text" { (e.old) } td class="text" { (e.new) } } } }
            } }
        }
    };
    layout("Controls", "/controls", s, body)
}

/// The controls in force as a list.
fn lines(c: &Controls, now: i64, tz: &jiff::tz::TimeZone) -> Markup {
    let lines = crate::cli::controls::describe(c, now, tz);
    html! {
        @if lines.is_empty() { p { "Nothing set here: the config file decides." } }
        @else { ul id="control-lines" { @for l in &lines { li { (l) } } } }
    }
}

/// A form's POST to `/controls/...`: made, then the server told; refused with the reason.
pub(super) async fn post(
    app: &App,
    sid: &str,
    path: &str,
    f: &[(String, String)],
) -> hyper::Response<Body> {
    let back = param(f, "back")
        .filter(|b| b.starts_with('/') && !b.starts_with("//"))
        .unwrap_or("/controls")
        .to_string();
    let now = clock::now();
    let actor = format!("dashboard (session {})", &sid[..sid.len().min(8)]);
    if let Some(r) = device_edit(app, path, f, &actor).await {
        return r;
    }
    let change = match to_change(path, f, now) {
        Ok(c) => c,
        Err(why) => return refused(&why),
    };
    let cfg = app.view.config();
    let made = app
        .blocking(move || change::make(&cfg, &change, &actor, now))
        .await;
    match made {
        Some(Ok(_)) => {
            // The page the browser goes back to shows the change: wait (a little) for
            // the server to apply it. A change that alters nothing in force is not
            // reloaded, hence the bound.
            let reloaded = app.view.reloaded();
            let applied = reloaded.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            app.view.controls_changed();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), applied).await;
            redirect(&back)
        }
        Some(Err(e)) => refused(&e.to_string()),
        None => refused("the server is shutting down"),
    }
}

/// Rename and merge: edits of the hit log's device table (`metaguard devices rename|merge`),
/// recorded in the audit log the same way. `None` for the other forms.
async fn device_edit(
    app: &App,
    path: &str,
    f: &[(String, String)],
    actor: &str,
) -> Option<hyper::Response<Body>> {
    let get = |k: &str| param(f, k).map(str::trim).unwrap_or("").to_string();
    let (device, db, actor) = (get("device"), app.db.clone(), actor.to_string());
    let edit: Box<dyn FnOnce() -> Result<String, crate::store::StoreError> + Send> = match path {
        "/controls/rename" => {
            let name = get("name");
            if name.is_empty() || name.chars().count() > 100 {
                return Some(refused("a name of 1 to 100 characters"));
            }
            Box::new(move || {
                crate::store::edit::rename(&db, &device, &name, &actor).map(|_| back_to(&device))
            })
        }
        "/controls/merge" => {
            let other = get("other");
            Box::new(move || {
                crate::store::edit::merge(&db, &device, &other, &actor)
                    .map(|(a, _)| back_to(&a.id.to_string()))
            })
        }
        _ => return None,
    };
    Some(match app.blocking(edit).await {
        Some(Ok(to)) => redirect(&to),
        Some(Err(e)) => refused(&e.to_string()),
        None => refused("the server is shutting down"),
    })
}

fn back_to(device: &str) -> String {
    format!("/device/{device}")
}

fn refused(why: &str) -> hyper::Response<Body> {
    html(
        StatusCode::BAD_REQUEST,
        message("Not changed", &format!("Nothing was changed: {why}")),
    )
}

fn to_change(path: &str, f: &[(String, String)], now: i64) -> Result<Change, String> {
    let get = |k: &str| param(f, k).map(str::trim).unwrap_or("").to_string();
    let action = |s: &str| -> Result<Option<Action>, String> {
        crate::cli::controls::parse_action(s).map_err(|e| e.to_string())
    };
    let device = || Some(get("device")).filter(|d| !d.is_empty());
    Ok(match path {
        "/controls/group" => Change::Group {
            device: device().ok_or("no device")?,
            group: Some(get("group")).filter(|g| !g.is_empty()),
        },
        "/controls/action" => Change::Action {
            scope: match get("scope").as_str() {
                "household" => Scope::Household,
                "group" if !get("target").is_empty() => Scope::Group(get("target")),
                "device" if !get("target").is_empty() => Scope::Device(get("target")),
                _ => return Err("say whose action: the household, a group or a device".into()),
            },
            category: get("category"),
            action: action(&get("action"))?,
        },
        "/controls/name" => Change::Name {
            name: get("name"),
            list: match get("list").as_str() {
                "allow" => Some(NameList::Allow),
                "block" => Some(NameList::Block),
                _ => None,
            },
        },
        "/controls/pause" => Change::Pause {
            device: device(),
            until: pause_until(&get("length"), now)?,
        },
        "/controls/schedule" => Change::AddSchedule(Schedule {
            group: Some(get("group"))
                .filter(|g| !g.is_empty())
                .ok_or("no group")?,
            days: crate::controls::parse_days(&get("days"))?,
            from: get("from").parse()?,
            to: get("to").parse()?,
            categories: [(get("category"), action(&get("action"))?.ok_or("no action")?)]
                .into_iter()
                .collect(),
        }),
        "/controls/unschedule" => {
            Change::RemoveSchedule(get("number").parse().map_err(|_| "no schedule number")?)
        }
        _ => return Err("no such form".into()),
    })
}
