//! The dashboard's HTTP/1 server (hyper): a connection cap, header and body deadlines,
//! only clients on the DNS allow-list, the security headers on every answer, and the
//! routes (pages, `/api/v1/`, login). Database reads run off the runtime on
//! `spawn_blocking`, at most [`READERS`] at once.

use std::any::Any;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::auth::{self, Auth, Session};
use super::{LiveFeed, ServerView, WebConfig, api, data, pages};

/// The body of every answer.
pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Connections served at once; past it new ones are closed at once.
const MAX_CONNECTIONS: usize = 32;
/// Database reads at once (each on a blocking thread with its own read-only connection).
pub(super) const READERS: usize = 2;
/// Time a client has to send a request's head, and to send its body.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body read (login form).
const MAX_BODY: usize = 16 * 1024;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every request handler shares.
pub(super) struct App {
    pub(super) auth: Auth,
    pub(super) password_file: PathBuf,
    pub(super) db: PathBuf,
    pub(super) view: Arc<dyn ServerView>,
    pub(super) feed: LiveFeed,
    api_token: String,
    readers: Arc<Semaphore>,
}

impl App {
    pub(super) fn new(
        cfg: &WebConfig,
        _hash: String,
        password_file: PathBuf,
        db: PathBuf,
        view: Arc<dyn ServerView>,
        feed: LiveFeed,
    ) -> App {
        App {
            auth: Auth::new(cfg.session_lifetime),
            password_file,
            db,
            view,
            feed,
            api_token: cfg.api_token.clone(),
            readers: Arc::new(Semaphore::new(READERS)),
        }
    }

    /// Run `f` on a blocking thread once a reader slot is free. One `spawn_blocking`
    /// for every caller (the closure and its result are boxed): each instantiation of
    /// tokio's task machinery costs binary size.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let out = self
            .run_boxed(Box::new(move || Box::new(f()) as Box<dyn Any + Send>))
            .await?;
        out.downcast::<T>().ok().map(|b| *b)
    }

    async fn run_boxed(&self, f: BoxedJob) -> Option<Box<dyn Any + Send>> {
        let _permit = self.readers.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(f).await.ok()
    }

    /// Open the hit log read-only and read it with `f`, off the runtime.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, data::DataError> + Send + 'static,
    ) -> Result<T, String> {
        let db = self.db.clone();
        self.blocking(move || {
            let conn = crate::store::read::open(&db).map_err(data::DataError::from)?;
            f(&conn)
        })
        .await
        .unwrap_or_else(|| Err(data::DataError::Sqlite(rusqlite::Error::InvalidQuery)))
        .map_err(|e| e.to_string())
    }
}

type BoxedJob = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// Accept connections until `shutdown`.
pub(super) async fn serve(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!("dashboard accept: {e}");
                    // Out of files: give the others a moment rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        if !app.view.allowed(peer.ip()) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (app, shutdown) = (app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, peer, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!("dashboard connection: {e}") },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// A complete answer with the security headers.
pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    headers(&mut r, content_type);
    r
}

pub(super) fn headers(r: &mut Response<Body>, content_type: &'static str) {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(super) fn redirect(to: &str) -> Response<Body> {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub(super) fn html(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", body)
}

pub(super) fn json(status: StatusCode, v: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    respond(status, "application/json", body)
}

pub(super) fn set_cookie(r: &mut Response<Body>, cookie: String) {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The value of cookie `name`.
pub(super) fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Query or form parameters.
pub(super) fn params(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .into_owned()
        .collect()
}

pub(super) fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// The request body as form parameters; None when too big or too slow.
async fn form(req: Request<Incoming>) -> Option<Vec<(String, String)>> {
    let body = Limited::new(req.into_body(), MAX_BODY);
    let bytes = tokio::time::timeout(BODY_TIMEOUT, body.collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    Some(params(std::str::from_utf8(&bytes).ok()?))
}

pub(super) const SESSION_COOKIE: &str = "mg_session";
pub(super) const LOGIN_COOKIE: &str = "mg_login";

/// The session of the request's cookie, with its id.
fn session(app: &App, req: &Request<Incoming>) -> Option<(String, Session)> {
    let id = cookie(req, SESSION_COOKIE)?;
    app.auth.get(id).map(|s| (id.to_string(), s))
}

fn bearer_ok(app: &App, req: &Request<Incoming>) -> bool {
    if app.api_token.is_empty() {
        return false;
    }
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| auth::same(t.trim(), &app.api_token))
}

fn forbidden() -> Response<Body> {
    html(
        StatusCode::FORBIDDEN,
        pages::message(
            "Forbidden",
            "This form was not sent from this dashboard (no valid CSRF token). Reload the page and try again.",
        ),
    )
}

async fn handle(app: &Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = params(req.uri().query().unwrap_or(""));
    match (req.method(), path.as_str()) {
        (&Method::GET, "/static/style.css") => {
            let mut r = respond(StatusCode::OK, "text/css; charset=utf-8", pages::CSS);
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            );
            return r;
        }
        (&Method::GET, "/static/live.js") => {
            let mut r = respond(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                pages::LIVE_JS,
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            );
            return r;
        }
        (&Method::GET, "/favicon.ico") => {
            return html(
                StatusCode::NOT_FOUND,
                pages::message("Not found", "No favicon."),
            );
        }
        (&Method::GET, "/login") => return login_form(app, &req, None),
        (&Method::POST, "/login") => return login(app, peer.ip(), req).await,
        _ => {}
    }
    if path.starts_with("/api/") {
        if req.method() != Method::GET {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": "GET only"}),
            );
        }
        if !bearer_ok(app, &req) && session(app, &req).is_none() {
            let mut r = json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "log in, or send Authorization: Bearer <[web] api_token>"}),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        return api::route(app, &path, &query).await;
    }
    let Some((sid, s)) = session(app, &req) else {
        if req.method() == Method::POST {
            return forbidden();
        }
        return redirect("/login");
    };
    if req.method() == Method::POST {
        let Some(f) = form(req).await else {
            return forbidden();
        };
        if !param(&f, "csrf").is_some_and(|t| auth::same(t, &s.csrf)) {
            return forbidden();
        }
        return match path.as_str() {
            p if p.starts_with("/controls/") => super::controls::post(app, &sid, p, &f).await,
            "/logout" => {
                app.auth.remove(&sid);
                let mut r = redirect("/login");
                set_cookie(
                    &mut r,
                    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
                );
                r
            }
            _ => html(
                StatusCode::NOT_FOUND,
                pages::message("Not found", "No such form."),
            ),
        };
    }
    if req.method() != Method::GET {
        return html(
            StatusCode::METHOD_NOT_ALLOWED,
            pages::message("Not allowed", "GET or POST only."),
        );
    }
    pages::route(app, &s, &path, &query).await
}

fn login_form(app: &App, req: &Request<Incoming>, error: Option<&str>) -> Response<Body> {
    if error.is_none() && session(app, req).is_some() {
        return redirect("/");
    }
    // The token of the login cookie already set, if any: the browser fetches /login
    // again behind the page's back (the favicon of a logged-out page redirects here),
    // and a new token would no longer match the form shown.
    let t = cookie(req, LOGIN_COOKIE)
        .filter(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(auth::token, str::to_string);
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut r = html(status, pages::login(&t, error));
    set_cookie(
        &mut r,
        format!("{LOGIN_COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600"),
    );
    r
}

async fn login(app: &Arc<App>, ip: IpAddr, req: Request<Incoming>) -> Response<Body> {
    let pre = cookie(&req, LOGIN_COOKIE).map(str::to_string);
    let Some(f) = form(req).await else {
        return forbidden();
    };
    let csrf_ok = match (pre.as_deref(), param(&f, "csrf")) {
        (Some(c), Some(t)) => auth::same(c, t),
        _ => false,
    };
    if !csrf_ok {
        return forbidden();
    }
    if !app.auth.may_try(ip) {
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::message(
                "Too many attempts",
                "Too many login attempts: wait a minute and try again.",
            ),
        );
    }
    let password = param(&f, "password").unwrap_or("").to_string();
    let file = app.password_file.clone();
    let ok = app
        .blocking(move || auth::verify(&file, &password))
        .await
        .unwrap_or(false);
    if !ok {
        tracing::info!(client = %ip, "dashboard: failed login");
        let t = auth::token();
        let mut r = html(
            StatusCode::UNAUTHORIZED,
            pages::login(&t, Some("Wrong password.")),
        );
        set_cookie(
            &mut r,
            format!("{LOGIN_COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600"),
        );
        return r;
    }
    let (id, _) = app.auth.create();
    let mut r = redirect("/");
    set_cookie(
        &mut r,
        format!(
            "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            app.auth.lifetime().as_secs()
        ),
    );
    set_cookie(
        &mut r,
        format!("{LOGIN_COOKIE}=; HttpOnly; SameSite=Strict; Path=/login; Max-Age=0"),
    );
    r
}
