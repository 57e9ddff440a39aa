//! The dashboard's pages, rendered with maud (every interpolated string is escaped):
//! household, device, live, lists, status, and the login form. One stylesheet
//! (`assets/style.css`) and one small script (`assets/live.js`, the live feed only);
//! every page reads without script. The ids and classes the browser tests use are
//! listed in docs/api.md.

use hyper::StatusCode;
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};

use super::auth::Session;
use super::data::{self, DevicePage, HouseholdPage, Week};
use super::http::{App, Body, html, param};
use crate::report::charts::{colour, daily_trend, device_bars, heat_map, legend};
use crate::report::html::{change_class, pct};
use crate::report::period::{readable, rfc3339};
use crate::report::render::change;

/// The stylesheet of every page (also for the HTML report's phone layout).
pub(crate) const CSS: &str = include_str!("assets/style.css");
/// The live page's script.
pub(super) const LIVE_JS: &str = include_str!("assets/live.js");

/// Rows at most in the long tables (names of a device, live hits), to keep pages small.
const MAX_ROWS: usize = 200;
const LIVE_ROWS: usize = 100;

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light";
            title { (title) " · metaguard" }
            link rel="stylesheet" href="/static/style.css";
        }
    }
}

/// A page with the navigation; `here` is the current section.
pub(super) fn layout(title: &str, here: &str, s: &Session, body: Markup) -> String {
    let nav = [
        ("/", "Household"),
        ("/live", "Live"),
        ("/lists", "Lists"),
        ("/controls", "Controls"),
        ("/status", "Status"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header class="top" {
                    nav {
                        @for (href, label) in nav {
                            a href=(href) class=[(href == here).then_some("here")] { (label) }
                        }
                        form id="logout-form" method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button class="link" type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
    .into_string()
}

/// A page with only a message (errors, refusals).
pub(super) fn message(title: &str, text: &str) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main { h1 { (title) } p id="message" { (text) } p { a href="/" { "Back" } } } }
        }
    }
    .into_string()
}

/// The login page; `token` is the form's CSRF token (also in its cookie).
pub(super) fn login(token: &str, error: Option<&str>) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in"))
            body {
                main {
                    form id="login-form" method="post" action="/login" {
                        h1 { "metaguard" }
                        @if let Some(e) = error { p id="login-error" class="error" { (e) } }
                        input type="hidden" name="csrf" value=(token);
                        label for="password" { "Admin password" }
                        input id="password" type="password" name="password" autocomplete="current-password" required autofocus;
                        button type="submit" { "Log in" }
                        p class="muted" { "The first password is in the log of the first start; " code { "metaguard web password" } " sets another." }
                    }
                }
            }
        }
    }
    .into_string()
}

/// Previous/next links and a week form, for `base` (a path).
fn week_nav(w: &Week, base: &str) -> Markup {
    html! {
        div class="weeknav" {
            a id="week-prev" href=(format!("{base}?week={}", w.previous)) { "← " (w.previous) }
            strong id="week-label" { (w.label) }
            @if let Some(n) = &w.next { a id="week-next" href=(format!("{base}?week={n}")) { (n) " →" } }
            form id="week-form" class="inline" method="get" action=(base) {
                label for="week" class="muted" { "Week" }
                input id="week" name="week" value=(w.label) size="9" pattern="[0-9]{4}-?[Ww][0-9]{1,2}";
                button type="submit" { "Show" }
            }
        }
        p class="muted" { (w.days.first().map_or("", String::as_str)) " to " (w.days.last().map_or("", String::as_str)) " · " (w.time_zone) }
    }
}

pub(super) fn household_page(p: &HouseholdPage, s: &Session) -> String {
    let h = &p.household;
    let bars: Vec<(&str, i64, &[crate::report::model::CategoryCount])> = p
        .devices
        .iter()
        .map(|d| (d.name.as_str(), d.meta_lookups, d.categories.as_slice()))
        .collect();
    let ai: Vec<_> = p.devices.iter().filter(|d| d.meta_ai > 0).collect();
    let bypass: Vec<_> = p.devices.iter().filter(|d| d.bypass > 0).collect();
    let body = html! {
        h1 { "Household" }
        (week_nav(&p.week, "/"))
        div class="cards" id="household-cards" {
            div class="card" { b id="household-total" { (h.meta_lookups) } "Meta lookups" }
            div class="card" { b id="household-blocked" { (h.counts.blocked) } "blocked" }
            div class="card" { b id="household-logged" { (h.counts.logged) } "logged only" }
            div class="card" { b id="household-share" { (pct(h.meta_share_pct)) } "of " (h.all_lookups) " lookups" }
            div class="card" {
                b id="household-change" class=(change_class(h.change_pct, h.meta_lookups)) { (change(h.change_pct, h.meta_lookups)) }
                "vs " (p.week.previous) " (" (h.previous_meta_lookups) ")"
            }
            div class="card" { b id="household-devices" { (h.devices_seen) } "devices seen" }
        }
        h2 { "Per day" }
        p class="muted" { "Lookups that matched a list, by local day (hourly totals)." }
        (daily_trend(&p.daily))
        div class="scroll" {
            table id="daily-table" {
                thead { tr { th { "Day" } th { "Blocked" } th { "Logged" } th { "Total" } } }
                tbody { @for d in &p.daily { tr { td { (d.date) } td { (d.counts.blocked) } td { (d.counts.logged) } td { (d.total) } } } }
            }
        }
        h2 { "Devices by Meta exposure" }
        @if p.devices.is_empty() {
            p id="no-devices" { "No Meta lookups this week." }
        } @else {
            (device_bars(&bars))
            (legend(&p.categories))
            div class="scroll" {
                table id="devices" {
                    thead { tr { th { "Device" } th { "Meta" } th { "Blocked" } th { "Logged" } th { "Share" } th { "Change" } th class="text" { "Top category" } } }
                    tbody {
                        @for d in &p.devices {
                            tr class="device" data-device-id=(d.id) {
                                td class="device-name" { a href=(format!("/device/{}?week={}", d.id, p.week.label)) { (d.name) } }
                                td class="device-meta" { (d.meta_lookups) }
                                td { (d.counts.blocked) }
                                td { (d.counts.logged) }
                                td { (pct(d.meta_share_pct)) }
                                td class=(change_class(d.change_pct, d.meta_lookups)) { (change(d.change_pct, d.meta_lookups)) }
                                td class="text" { (d.top_category.as_deref().unwrap_or("–")) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Meta AI" }
        p class="note" { (crate::report::model::META_AI_NOTE) }
        @if ai.is_empty() { p id="no-meta-ai" { "No device looked up Meta AI endpoints this week." } } @else {
            div class="scroll" { table id="meta-ai" {
                thead { tr { th { "Device" } th { "Lookups" } } }
                tbody { @for d in &ai { tr { td class="device-name" { a href=(format!("/device/{}?week={}", d.id, p.week.label)) { (d.name) } } td { (d.meta_ai) } } } }
            } }
        }
        h2 { "May bypass metaguard" }
        p class="note" { (crate::report::model::BYPASS_NOTE) }
        @if bypass.is_empty() { p id="no-bypass" { "No device looked up a bypass name this week." } } @else {
            div class="scroll" { table id="bypass" {
                thead { tr { th { "Device" } th { "Lookups" } } }
                tbody { @for d in &bypass { tr { td class="device-name" { a href=(format!("/device/{}?week={}", d.id, p.week.label)) { (d.name) } } td { (d.bypass) } } } }
            } }
        }
    };
    layout("Household", "/", s, body)
}

pub(super) fn device_page(
    p: &DevicePage,
    s: &Session,
    tz: &jiff::tz::TimeZone,
    controls: Option<&super::controls::DeviceControls>,
) -> String {
    let d = &p.device;
    let base = format!("/device/{}", d.id);
    let body = html! {
        h1 id="device-title" class="device-name" { (d.name) }
        (week_nav(&p.week, &base))
        div class="scroll" {
            table id="device-info" {
                tbody {
                    tr { th { "MAC" } td class="text" id="device-mac" { (d.mac.as_deref().unwrap_or("–")) } }
                    tr { th { "Addresses" } td class="text" id="device-addrs" { (p.addrs.join(", ")) } }
                    tr { th { "Group" } td class="text" { (controls.map_or(d.group.as_deref(), |c| c.group.as_deref()).unwrap_or("–")) } }
                    tr { th { "First seen" } td class="text" { (readable(d.first_seen, tz)) } }
                    tr { th { "Last seen" } td class="text" { (readable(d.last_seen, tz)) } }
                    tr { th { "Key" } td class="text" { (d.key) } }
                }
            }
        }
        @if let Some(c) = controls { (super::controls::device_section(c, s)) }
        div class="cards" {
            div class="card" { b id="device-total" { (p.meta_lookups) } "Meta lookups" }
            div class="card" { b id="device-blocked" { (p.counts.blocked) } "blocked" }
            div class="card" { b id="device-logged" { (p.counts.logged) } "logged only" }
            div class="card" { b { (p.all_lookups) } "lookups in all" }
        }
        h2 { "Categories" }
        @if p.categories.is_empty() { p { "No Meta lookups this week." } } @else {
            div class="scroll" { table id="device-categories" {
                thead { tr { th { "Category" } th { "Lookups" } th { "Blocked" } th { "Logged" } th { "Allowed" } } }
                tbody { @for c in &p.categories {
                    tr { td { i style=(format!("display:inline-block;width:.7rem;height:.7rem;margin-right:.3rem;background:{}", colour(&c.category))) {} (c.category) }
                         td { (c.total) } td { (c.counts.blocked) } td { (c.counts.logged) } td { (c.counts.allowed) } }
                } }
            } }
        }
        h2 { "Names" }
        @if p.names_partial { p class="note" { "Raw hits of this week were trimmed (retention or size cap): the names below are partial." } }
        @if p.names.is_empty() { p { "No names this week." } } @else {
            div class="scroll" { table id="device-names" {
                thead { tr { th { "Name" } th class="text" { "Category" } th { "Blocked" } th { "Logged" } @if controls.is_some() { th {} } } }
                tbody { @for n in p.names.iter().take(MAX_ROWS) {
                    tr { td class="name" { (n.domain) } td class="text" { (n.category) } td { (n.counts.blocked) } td { (n.counts.logged + n.counts.allowed) }
                         @if controls.is_some() { td { (super::controls::name_buttons(&n.domain, &base, s)) } } }
                } }
            } }
            @if p.names.len() > MAX_ROWS { p class="muted" { (p.names.len() - MAX_ROWS) " more names not shown (the API has them all)." } }
        }
        h2 { "When (local time)" }
        p class="muted" { "Lookups that matched a list, by weekday and hour." }
        (heat_map(&p.hour_grid, &format!("{} by weekday and hour", d.name)))
        h2 { "Meta AI" }
        @if p.meta_ai.is_empty() { p { "No Meta AI lookups this week." } } @else {
            table id="device-meta-ai" { tbody { @for x in &p.meta_ai { tr { td class="name" { (x.domain) } td { (x.lookups) } } } } }
        }
        h2 { "May bypass metaguard" }
        @if p.bypass.is_empty() { p { "No bypass names this week." } } @else {
            p class="note" { (crate::report::model::BYPASS_NOTE) }
            table id="device-bypass" { tbody { @for x in &p.bypass { tr { td class="name" { (x.domain) } td { (x.lookups) } } } } }
        }
    };
    layout(&d.name, "", s, body)
}

fn live_page(
    hits: &[crate::store::read::HitRow],
    devices: &[data::DeviceInfo],
    categories: &[String],
    device: Option<&str>,
    category: Option<&str>,
    s: &Session,
    tz: &jiff::tz::TimeZone,
) -> String {
    let body = html! {
        h1 { "Live" }
        form id="live-filter" class="inline" method="get" action="/live" {
            label for="device" { "Device" }
            select id="device" name="device" {
                option value="" { "all" }
                @for d in devices {
                    option value=(d.key) selected[device == Some(d.key.as_str())] { (d.name) }
                }
            }
            label for="category" { "Category" }
            select id="category" name="category" {
                option value="" { "all" }
                @for c in categories { option value=(c) selected[category == Some(c.as_str())] { (c) } }
            }
            button type="submit" { "Filter" }
        }
        p class="muted" { "Newest first. " span id="live-status" { "Without JavaScript, reload for new hits." } }
        ul id="live-feed" {
            @for h in hits.iter().rev() {
                li class="hit" {
                    span class="hit-time muted" { (rfc3339(h.ts, tz).get(11..19).unwrap_or("")) }
                    a class="hit-name" href=(format!("/lists?name={}&client={}", urlencoding(&h.name), urlencoding(client_of(devices.iter().find(|d| d.id == h.device_id).map_or(&h.device, |d| &d.key))))) { (h.name) }
                    span class="hit-meta" {
                        span class="hit-device" { (h.device) } " · "
                        span class="hit-category" { (h.category) } " · "
                        @let a = h.action.map_or("?", |a| a.as_str());
                        span class=(format!("hit-action {}", if a == "block" { "blocked" } else { "logged" })) { (a) }
                    }
                }
            }
        }
        script src="/static/live.js" {}
    };
    layout("Live", "/live", s, body)
}

fn lists_page(
    rows: &[crate::cli::lists::ListRow],
    check: Option<&crate::check::CheckLine>,
    name: Option<&str>,
    client: Option<&str>,
    s: &Session,
) -> String {
    let body = html! {
        h1 { "Lists" }
        h2 { "Why does a name get its verdict?" }
        form id="check-form" class="inline" method="get" action="/lists" {
            label for="name" { "Name" }
            input id="name" name="name" value=(name.unwrap_or("")) placeholder="connect.facebook.net" maxlength="253";
            @if let Some(c) = client { input type="hidden" name="client" value=(c); }
            button type="submit" { "Check" }
        }
        @if let Some(c) = check {
            div id="check-result" class="note" {
                p { b class="name" { (c.name) } ": " b id="check-action" { (c.action) } }
                @if let Some(d) = &c.device { p id="check-device" { "for " (d) ", group " (c.group.as_deref().unwrap_or("none")) } }
                @if let Some(cat) = &c.category { p { "category " (cat) } }
                @if let Some(r) = &c.rule { p { "rule " code { (r) } } }
                @if let Some(l) = &c.list { p { "list " (l) @if let Some(n) = c.line { ", line " (n) } } }
                @if c.category.is_none() { p { "No list matches this name: it is answered normally." } }
                div id="check-controls" { "For the whole household: "
                    (super::controls::name_buttons(&c.name, &format!("/lists?name={}&client={}", urlencoding(&c.name), urlencoding(client.unwrap_or(""))), s)) }
            }
        }
        h2 { "Lists in force" }
        div class="scroll" { table id="lists" {
            thead { tr { th { "List" } th class="text" { "Category" } th class="text" { "Action" } th { "Rules" } th class="text" { "Source" } th class="text" { "Updated" } } }
            tbody { @for r in rows {
                tr { td { (r.name) } td class="text" { (r.category) } td class="text" { (r.action) } td { (r.rules) } td class="text" { (r.source) } td class="text" { (r.last_update.as_deref().unwrap_or("–")) } }
            } }
        } }
    };
    layout("Lists", "/lists", s, body)
}

fn status_page(
    v: &serde_json::Value,
    db: &data::DbStatus,
    cfg: &crate::config::Config,
    s: &Session,
) -> String {
    let st = &v["stats"];
    let n = |k: &str| st[k].as_u64().unwrap_or(0);
    let (hits, misses) = (n("cache_hits"), n("cache_misses"));
    let rate = if hits + misses > 0 {
        format!("{:.1}%", hits as f64 * 100.0 / (hits + misses) as f64)
    } else {
        "–".into()
    };
    let up = v["uptime_s"].as_u64().unwrap_or(0);
    let uptime = format!("{}d {}h {}m", up / 86400, up % 86400 / 3600, up % 3600 / 60);
    let upstreams: Vec<String> = cfg.upstream.servers.iter().map(|u| u.to_string()).collect();
    let rows: Vec<(&str, &str, String)> = vec![
        ("status-uptime", "Uptime", uptime),
        ("status-queries", "Queries", n("queries").to_string()),
        ("status-blocked", "Blocked", n("blocked").to_string()),
        (
            "status-logged",
            "Logged (Meta, answered)",
            n("logged").to_string(),
        ),
        ("status-cache-rate", "Cache hit rate", rate),
        (
            "status-upstreams",
            "Upstreams",
            if upstreams.is_empty() {
                "from resolv.conf".into()
            } else {
                upstreams.join(", ")
            },
        ),
        (
            "status-upstream-failures",
            "Upstream failures (SERVFAIL)",
            n("upstream_failures").to_string(),
        ),
        (
            "status-refused",
            "Refused / rate-limited",
            format!("{} / {}", n("refused"), n("rate_limited")),
        ),
        (
            "status-dropped",
            "Dropped hit events",
            n("events_dropped").to_string(),
        ),
        (
            "status-db-size",
            "Database size",
            format!("{:.1} MB", db.bytes as f64 / 1e6),
        ),
        (
            "status-db-rows",
            "Newest hit id / devices",
            format!("{} / {}", db.last_hit_id, db.devices),
        ),
        (
            "status-retention",
            "Retention",
            format!(
                "{} days raw, {} days rollups, cap {} MB",
                cfg.store.retention_days, cfg.store.rollup_retention_days, cfg.store.max_db_size_mb
            ),
        ),
    ];
    let body = html! {
        h1 { "Status" }
        div class="scroll" { table id="status" { tbody {
            @for (id, k, val) in &rows { tr { th { (k) } td id=(id) class="text" { (val) } } }
        } } }
    };
    layout("Status", "/status", s, body)
}

fn error_page(e: String) -> hyper::Response<Body> {
    tracing::warn!("dashboard: {e}");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        message("Cannot read the hit log", &e),
    )
}

/// The pages (GET, logged in).
pub(super) async fn route(
    app: &std::sync::Arc<App>,
    s: &Session,
    path: &str,
    q: &[(String, String)],
) -> hyper::Response<Body> {
    let tz = crate::report::local_tz();
    let week = param(q, "week").map(str::to_string);
    match path {
        "/" => {
            let tz2 = tz.clone();
            match app
                .read(move |c| {
                    data::household(c, Week::pick(week.as_deref(), &tz2, Timestamp::now())?)
                })
                .await
            {
                Ok(p) => html(StatusCode::OK, household_page(&p, s)),
                Err(e) => error_page(e),
            }
        }
        "/live" => {
            let device = param(q, "device").map(str::to_string);
            let category = param(q, "category").map(str::to_string);
            let (d2, c2) = (device.clone(), category.clone());
            let r = app
                .read(move |c| {
                    let f = crate::store::HitFilter {
                        device: d2,
                        category: c2,
                        since: None,
                        after_id: None,
                        limit: LIVE_ROWS,
                    };
                    Ok((
                        crate::store::read::hits(c, &f)?,
                        data::devices(c)?,
                        data::category_names(c)?,
                    ))
                })
                .await;
            match r {
                Ok((hits, devs, cats)) => html(
                    StatusCode::OK,
                    live_page(
                        &hits,
                        &devs,
                        &cats,
                        device.as_deref(),
                        category.as_deref(),
                        s,
                        &tz,
                    ),
                ),
                Err(e) => error_page(e),
            }
        }
        "/live/events" => super::api::events(app, q),
        "/lists" => {
            let name = param(q, "name")
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty() && n.len() <= 253);
            let client = param(q, "client")
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty() && n.len() <= 253);
            let (view, n2, c2) = (app.view.clone(), name.clone(), client.clone());
            let r = app
                .blocking(move || (view.lists(), n2.map(|n| view.check(&n, c2.as_deref()))))
                .await;
            match r {
                Some((rows, check)) => html(
                    StatusCode::OK,
                    lists_page(&rows, check.as_ref(), name.as_deref(), client.as_deref(), s),
                ),
                None => error_page("cannot read the lists".into()),
            }
        }
        "/status" => {
            let v = app.view.status();
            let cfg = app.view.config();
            match app.read(|c| Ok(data::db_status(c)?)).await {
                Ok(db) => html(StatusCode::OK, status_page(&v, &db, &cfg, s)),
                Err(e) => error_page(e),
            }
        }
        p if p.starts_with("/device/") => {
            let Ok(id) = p["/device/".len()..].parse::<i64>() else {
                return html(
                    StatusCode::NOT_FOUND,
                    message("Not found", "No such device."),
                );
            };
            let tz2 = tz.clone();
            match app
                .read(move |c| {
                    data::device(c, id, Week::pick(week.as_deref(), &tz2, Timestamp::now())?)
                })
                .await
            {
                Ok(Some(p)) => {
                    let cfg = app.view.config();
                    let (id, mac, addrs) = (p.device.id, p.device.mac.clone(), p.addrs.clone());
                    let c = app
                        .blocking(move || {
                            super::controls::DeviceControls::of(&cfg, id, mac.as_deref(), &addrs)
                        })
                        .await;
                    html(StatusCode::OK, device_page(&p, s, &tz, c.as_ref()))
                }
                Ok(None) => html(
                    StatusCode::NOT_FOUND,
                    message("Not found", "No such device."),
                ),
                Err(e) => error_page(e),
            }
        }
        "/controls" => {
            let cfg = app.view.config();
            let file = crate::controls::path(&cfg.remote.state_dir);
            let got = app
                .read(move |c| {
                    let changes = crate::controls::audit::read(c, 0, i64::MAX, 100)?;
                    Ok((
                        crate::controls::Controls::load(&file).unwrap_or_default(),
                        changes,
                    ))
                })
                .await;
            match got {
                Ok((controls, changes)) => html(
                    StatusCode::OK,
                    super::controls::page(&cfg, &controls, &changes, s),
                ),
                Err(e) => error_page(e),
            }
        }
        _ => html(StatusCode::NOT_FOUND, message("Not found", "No such page.")),
    }
}

/// `s` for a URL's query.
fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// What `check` takes for a device with key (or name) `label`: its address or MAC from a
/// key, else the name.
fn client_of(label: &str) -> &str {
    label
        .strip_prefix("ip:")
        .or_else(|| label.strip_prefix("mac:"))
        .unwrap_or(label)
}
