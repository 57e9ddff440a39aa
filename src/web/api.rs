//! The JSON API under `/api/v1/` (a session or `[web] api_token` as a bearer token;
//! docs/api.md), and the live page's server-sent events.

use std::sync::Arc;

use futures_util::stream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use jiff::Timestamp;
use tokio::sync::broadcast::error::RecvError;

use super::data::{self, Week};
use super::http::{App, Body, headers, json, param};

fn err(status: StatusCode, e: impl std::fmt::Display) -> Response<Body> {
    json(status, &serde_json::json!({ "error": e.to_string() }))
}

fn done<T: serde::Serialize>(r: Result<T, String>) -> Response<Body> {
    match r {
        Ok(v) => pretty(&v),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Pretty JSON, as the report writes it: the report's types then share its code.
fn pretty<T: serde::Serialize>(v: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(v) {
        Ok(body) => super::http::respond(StatusCode::OK, "application/json", body),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `/api/v1/...` (GET, authorised).
pub(super) async fn route(app: &Arc<App>, path: &str, q: &[(String, String)]) -> Response<Body> {
    let tz = crate::report::local_tz();
    let week = param(q, "week").map(str::to_string);
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return err(StatusCode::NOT_FOUND, "no such API version");
    };
    match rest {
        "household" => done(
            app.read(move |c| {
                data::household(c, Week::pick(week.as_deref(), &tz, Timestamp::now())?)
            })
            .await,
        ),
        "devices" => done(app.read(|c| Ok(data::devices(c)?)).await),
        "controls" => {
            let file = crate::controls::path(&app.view.config().remote.state_dir);
            done(
                app.read(move |c| {
                    let changes = crate::controls::audit::read(c, 0, i64::MAX, 100)?;
                    let controls = crate::controls::Controls::load(&file).unwrap_or_default();
                    Ok(serde_json::json!({ "controls": controls, "changes": changes }))
                })
                .await,
            )
        }
        "hits" => {
            let f = crate::store::HitFilter {
                device: param(q, "device").map(str::to_string),
                category: param(q, "category").map(str::to_string),
                since: param(q, "since").and_then(|s| s.parse().ok()),
                after_id: param(q, "after_id").and_then(|s| s.parse().ok()),
                limit: param(q, "limit")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(100)
                    .min(1000),
            };
            done(
                app.read(move |c| Ok(crate::store::read::hits(c, &f)?))
                    .await,
            )
        }
        "status" => {
            let server = app.view.status();
            done(
                app.read(move |c| {
                    Ok(serde_json::json!({ "server": server, "database": data::db_status(c)? }))
                })
                .await,
            )
        }
        "lists" => {
            let view = app.view.clone();
            match app.blocking(move || view.lists()).await {
                Some(rows) => json(StatusCode::OK, &rows),
                None => err(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the lists"),
            }
        }
        "check" => {
            let Some(name) = param(q, "name")
                .map(str::to_string)
                .filter(|n| n.len() <= 253)
            else {
                return err(StatusCode::BAD_REQUEST, "give ?name=");
            };
            let client = param(q, "client").map(str::to_string);
            let view = app.view.clone();
            match app
                .blocking(move || view.check(&name, client.as_deref()))
                .await
            {
                Some(line) => json(StatusCode::OK, &line),
                None => err(StatusCode::INTERNAL_SERVER_ERROR, "cannot check"),
            }
        }
        "report" => {
            let cfg = app.view.config();
            let req = crate::report::ReportRequest {
                dbs: vec![app.db.clone()],
                config: cfg.report.clone(),
                when: week.map_or(crate::report::When::LastWeek, crate::report::When::Week),
                tz,
                now: Timestamp::now(),
                device: param(q, "device").map(str::to_string),
                format: crate::report::Format::Json,
                out: None,
                email: false,
                deliver: false,
                webhook: None,
                tls: Default::default(),
                color: false,
            };
            match app.blocking(move || crate::report::model(&req)).await {
                // The report's own JSON (pretty, as `report --format json`).
                Some(Ok(m)) => match crate::report::render::json(&m) {
                    Ok(body) => super::http::respond(StatusCode::OK, "application/json", body),
                    Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
                },
                Some(Err(crate::report::ReportError::BadWeek(w))) => {
                    err(StatusCode::BAD_REQUEST, format!("cannot read week {w:?}"))
                }
                Some(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
                None => err(StatusCode::INTERNAL_SERVER_ERROR, "cannot build the report"),
            }
        }
        d if d.starts_with("devices/") => {
            let Ok(id) = d["devices/".len()..].parse::<i64>() else {
                return err(StatusCode::NOT_FOUND, "no such device");
            };
            match app
                .read(move |c| {
                    data::device(c, id, Week::pick(week.as_deref(), &tz, Timestamp::now())?)
                })
                .await
            {
                Ok(Some(p)) => pretty(&p),
                Ok(None) => err(StatusCode::NOT_FOUND, "no such device"),
                Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }
        _ => err(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// `/live/events`: the hits as they happen (server-sent events, `event: hit`, JSON
/// data), only those of `device` (key or name) and `category` when given.
pub(super) fn events(app: &Arc<App>, q: &[(String, String)]) -> Response<Body> {
    let device = param(q, "device").map(str::to_string);
    let category = param(q, "category").map(str::to_string);
    let watch = app.feed.watch();
    let first = stream::once(async { Ok(Frame::data(Bytes::from_static(b": connected\n\n"))) });
    let hits = stream::unfold(
        (watch, device, category),
        |(mut w, device, category)| async move {
            loop {
                match w.rx.recv().await {
                    Ok(h) => {
                        if device
                            .as_deref()
                            .is_some_and(|d| d != h.key && d != h.device)
                            || category.as_deref().is_some_and(|c| c != h.category)
                        {
                            continue;
                        }
                        let data = serde_json::to_string(&*h).unwrap_or_default();
                        let frame =
                            Frame::data(Bytes::from(format!("event: hit\ndata: {data}\n\n")));
                        return Some((Ok(frame), (w, device, category)));
                    }
                    // A watcher that fell behind loses the oldest hits, and goes on.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    use futures_util::StreamExt;
    let body = StreamBody::new(first.chain(hits)).boxed_unsync();
    let mut r = Response::new(body);
    headers(&mut r, "text/event-stream");
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
